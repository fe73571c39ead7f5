"""What the local stack tells Prometheus to scrape, and where it finds Prometheus's file_sd directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from immune_suite.stack_config import LocalTargetConfig, load_stack
from immune_suite.state_dir import write_json_atomic
from immune_suite.targets.base import Color, TargetError, TrafficState
from immune_suite.targets.local import LocalTarget
from immune_suite.targets.local.haproxy import render_config
from immune_suite.targets.local.layout import StackLayout
from immune_suite.targets.local.scrape import SCRAPE_JOB, file_sd_dir, render_targets, selectors
from tests.suite.metrics.fake_prometheus import FakePrometheus, serving

CONFIG = f"""
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:19090"]}}]
  - job_name: {SCRAPE_JOB}
    file_sd_configs:
      - files: ["/var/state/prometheus/file_sd/*.json"]
"""


def layout(router_port: int | None = 18085) -> StackLayout:
    ports = LocalTargetConfig(instance_base_port=18100, router_metrics_port=router_port)
    return StackLayout(Path("/tmp/x"), ports, replicas=2)


def test_the_file_sd_directory_comes_from_the_loaded_configuration() -> None:
    assert file_sd_dir(CONFIG) == Path("/var/state/prometheus/file_sd")


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ("scrape_configs: [{job_name: prometheus}]\n", "no scrape job"),
        (f"scrape_configs: [{{job_name: {SCRAPE_JOB}, static_configs: []}}]\n", "reads no"),
        (
            f"scrape_configs: [{{job_name: {SCRAPE_JOB}, file_sd_configs: [{{files: [targets.yml]}}]}}]\n",
            "reads no",
        ),
        ("scrape_configs: [\n", "not YAML"),
    ],
)
def test_a_prometheus_that_cannot_see_the_stack_is_a_clear_error(config: str, reason: str) -> None:
    with pytest.raises(TargetError, match=reason):
        file_sd_dir(config)


def test_every_replica_is_a_target_labelled_by_colour_and_release_and_the_router_too() -> None:
    groups = render_targets(layout(), "local", {"blue": "v1", "green": "v2", "baseline": "v1"})
    by_replica = {g["labels"].get("replica", "router"): g for g in groups}
    assert set(by_replica) == {"blue-0", "blue-1", "green-0", "green-1", "baseline-0", "baseline-1", "router"}
    assert by_replica["green-1"] == {
        "targets": ["127.0.0.1:18121"],
        "labels": {
            "stack": "local",
            "component": "app",
            "color": "green",
            "release": "v2",
            "replica": "green-1",
        },
    }
    assert by_replica["baseline-0"]["labels"]["release"] == "v1"
    assert by_replica["router"] == {
        "targets": ["127.0.0.1:18085"],
        "labels": {"stack": "local", "component": "router"},
    }
    assert all(
        g["labels"].get("color") != "green" for g in render_targets(layout(None), "local", {"blue": "v1"})
    )
    assert len(render_targets(layout(None), "local", {"blue": "v1"})) == 2  # no router without its port


def test_selectors_pick_one_colours_release_and_its_router_servers() -> None:
    chosen = selectors("local", "green", "v2", router=True)
    assert chosen.app == f'job="{SCRAPE_JOB}",stack="local",component="app",color="green",release="v2"'
    assert (
        chosen.router is not None
        and 'server=~"green-[0-9]+"' in chosen.router
        and 'proxy="ingress"' in chosen.router
    )
    assert chosen.targets == (chosen.app, f'job="{SCRAPE_JOB}",stack="local",component="router"')
    assert selectors("local", "blue", "v1", router=False).router is None


def test_haproxy_serves_its_exporter_only_when_a_port_is_configured() -> None:
    traffic = TrafficState(Color.BLUE, 10)
    with_port = render_config(layout(18085), traffic)
    assert "bind 127.0.0.1:18085" in with_port and "use-service prometheus-exporter" in with_port
    assert "prometheus-exporter" not in render_config(layout(None), traffic)


def target_with_metrics(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalTarget:
    monkeypatch.setenv("IMMUNE_STATE_DIR", str(tmp_path / "state"))
    stack = load_stack("local").with_overrides(name="scrape-test", metrics={"url": url, "attempts": 1})
    target = LocalTarget(stack)
    target.layout.root.mkdir(parents=True)
    write_json_atomic(
        target.layout.colors_file,
        {"blue": {"release": {"version": "v1", "ref": "r", "digest": "d"}, "running": True}},
    )
    return target


def test_the_target_publishes_what_runs_where_prometheus_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "file_sd"
    discovery = f"file_sd_configs: [{{files: ['{directory}/*.json']}}]"
    config = f"scrape_configs: [{{job_name: {SCRAPE_JOB}, {discovery}}}]\n"
    published = directory / "scrape-test.json"
    with serving(FakePrometheus(config_yaml=config)) as fake:
        target = target_with_metrics(fake.url, tmp_path, monkeypatch)
        target._publish_scrape_targets(strict=True)
        groups = json.loads(published.read_text())
        assert {g["labels"].get("replica") for g in groups} == {"blue-0", "blue-1", None}  # None: router
        assert published.stat().st_mode & 0o777 == 0o644  # Prometheus may run as another user
        target._publish_scrape_targets(strict=True, running={})  # what `down` publishes
    assert json.loads(published.read_text()) == []  # not even the router: nothing left to scrape


def test_a_deploy_fails_when_prometheus_cannot_see_the_stack_and_a_rollback_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(FakePrometheus(config_yaml="scrape_configs: []\n")) as fake:
        target = target_with_metrics(fake.url, tmp_path, monkeypatch)
        with pytest.raises(TargetError, match=r"cannot publish.*no scrape job"):
            target._publish_scrape_targets(strict=True)
        target._publish_scrape_targets(strict=False)  # the way down never waits on Prometheus
    with pytest.raises(TargetError, match="unreachable"):
        target._publish_scrape_targets(strict=True)  # the fake is gone: Prometheus down
