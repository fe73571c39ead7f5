"""What Prometheus scrapes of a local stack: every replica, labelled by colour and release, and the router.

The Prometheus of scripts/services/prometheus.sh has one job, `immune-local-stacks`, that reads its
targets from a file_sd directory (Prometheus docs, "file_sd_config": JSON files of
`[{"targets": [...], "labels": {...}}]`, re-read when they change). A stack writes its own file there,
`<stack>.json`, whenever a colour starts or stops; where that directory is, it asks the running
Prometheus (its loaded configuration), so a private Prometheus in a test works the same way.

Labels on every target: `stack`, `component` (`app` or `router`); app targets also `color` (blue,
green or baseline), `release` (the version it runs) and `replica`. The canary's metric checks
(immune_suite/metrics/checks.py) select one colour's release by them; the router's series name the
server (`<colour>-<n>`), so its per-colour selector is a regular expression on that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from immune_suite.metrics.checks import ColorSelectors, label_value
from immune_suite.targets.base import TargetError
from immune_suite.targets.local.haproxy import INGRESS_BACKEND
from immune_suite.targets.local.layout import StackLayout

SCRAPE_JOB = "immune-local-stacks"  # the job in scripts/services/prometheus.sh's generated config


def file_sd_dir(config_yaml: str, job: str = SCRAPE_JOB) -> Path:
    """The directory whose `*.json` files the Prometheus configuration `config_yaml` reads for `job`."""
    try:
        config = yaml.safe_load(config_yaml) or {}
    except yaml.YAMLError as error:
        raise TargetError(f"Prometheus returned a configuration that is not YAML: {error}") from error
    for scrape in config.get("scrape_configs") or []:
        if scrape.get("job_name") != job:
            continue
        for discovery in scrape.get("file_sd_configs") or []:
            for pattern in discovery.get("files") or []:
                path = Path(pattern)
                if path.is_absolute() and path.name == "*.json":
                    return path.parent
        raise TargetError(f"Prometheus job {job!r} reads no `<dir>/*.json` file_sd files")
    raise TargetError(
        f"Prometheus has no scrape job {job!r}: it cannot see the local stack's replicas "
        "(start it with scripts/services/prometheus.sh, whose generated config has that job)"
    )


def render_targets(layout: StackLayout, stack: str, running: dict[str, str]) -> list[dict[str, Any]]:
    """file_sd groups: one per replica of each running group (group -> release version), and the router."""
    groups: list[dict[str, Any]] = []
    for group, release in sorted(running.items()):
        names = (
            layout.baseline_names()
            if group == "baseline"
            else [f"{group}-{i}" for i in range(layout.replicas)]
        )
        for name in names:
            labels = {"stack": stack, "component": "app", "color": group, "release": release, "replica": name}
            groups.append({"targets": [f"127.0.0.1:{layout.instance_port(name)}"], "labels": labels})
    if layout.ports.router_metrics_port is not None:
        groups.append(
            {
                "targets": [f"127.0.0.1:{layout.ports.router_metrics_port}"],
                "labels": {"stack": stack, "component": "router"},
            }
        )
    return groups


def selectors(stack: str, color: str, release: str, router: bool) -> ColorSelectors:
    """The label matchers of one colour's release on stack `stack` (see the module docstring)."""
    scope = f"job={label_value(SCRAPE_JOB)},stack={label_value(stack)}"
    app = f'{scope},component="app",color={label_value(color)},release={label_value(release)}'
    if not router:
        return ColorSelectors(color=color, release=release, app=app, targets=(app,))
    server = f"proxy={label_value(INGRESS_BACKEND)},server=~{label_value(color + '-[0-9]+')}"
    router_scope = f'{scope},component="router"'
    return ColorSelectors(
        color=color,
        release=release,
        app=app,
        targets=(app, router_scope),  # both must have been scraped after the window
        router=f"{router_scope},{server}",
    )
