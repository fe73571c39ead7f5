"""The rendered Prometheus configuration and SLO rules, checked and unit-tested with promtool.

`promtool test rules` evaluates the real rule file against synthetic series: each SLO alert fires
when its condition holds for its `for` duration, and stays silent otherwise.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from immune_infra.render import RenderedStack


def _rules(stack: RenderedStack) -> dict[str, Any]:
    text = stack.find("ConfigMap", "prometheus-rules")["data"]["immune-core-slo.yaml"]
    rules: dict[str, Any] = yaml.safe_load(text)
    return rules


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False)


def test_prometheus_config_and_rules_pass_promtool_check(
    stack: RenderedStack, promtool: str, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(_rules(stack)))
    config = yaml.safe_load(stack.find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yaml"]
    config["rule_files"] = [str(rules_file)]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    checked = _run(promtool, "check", "config", str(config_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "14 rules found" in checked.stdout


def _alert(stack: RenderedStack, name: str) -> dict[str, Any]:
    for rule in (r for group in _rules(stack)["groups"] for r in group["rules"]):
        if rule["alert"] == name:
            return dict(rule)
    raise KeyError(name)


def _expect(stack: RenderedStack, name: str, fires: bool, **extra_labels: str) -> dict[str, Any]:
    rule = _alert(stack, name)
    labels = {**rule["labels"], **extra_labels}
    expected = [{"exp_labels": labels, "exp_annotations": rule["annotations"]}] if fires else []
    return {"eval_time": "20m", "alertname": name, "exp_alerts": expected}


def _histogram(namespace: str, route: str, status: str, per_minute: dict[str, int]) -> list[dict[str, str]]:
    """Cumulative buckets growing by `per_minute[le]` observations each minute."""
    labels = f'namespace="{namespace}",route="{route}",method="POST",status="{status}"'
    return [
        {
            "series": f'immune_http_request_duration_seconds_bucket{{{labels},le="{le}"}}',
            "values": f"0+{count}x30",
        }
        for le, count in per_minute.items()
    ] + [
        {
            "series": f"immune_http_request_duration_seconds_count{{{labels}}}",
            "values": f"0+{per_minute['+Inf']}x30",
        }
    ]


def _series(name: str, namespace: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f'{name}{{namespace="{namespace}",{labels}}}', "values": values}


def _rule_tests(stack: RenderedStack) -> list[dict[str, Any]]:
    ns = stack.exports["namespace"]
    slow_api = {"0.25": 0, "0.5": 0, "1.0": 60, "2.5": 60, "+Inf": 60}
    # 100x the API traffic: were probes counted, the p95 would sit in the fastest bucket.
    fast = {"0.25": 6000, "0.5": 6000, "1.0": 6000, "2.5": 6000, "+Inf": 6000}
    fast_api = {"0.25": 60, "0.5": 60, "1.0": 60, "2.5": 60, "+Inf": 60}
    return [
        {  # Slow API under a flood of fast health checks: the p95 alert must still fire.
            "interval": "1m",
            "input_series": _histogram(ns, "/api/v1/events", "202", slow_api)
            + _histogram(ns, "/health/ready", "200", fast),
            "alert_rule_test": [_expect(stack, "ImmuneLatencyP95High", True)],
        },
        {
            "interval": "1m",
            "input_series": _histogram(ns, "/api/v1/events", "202", fast_api),
            "alert_rule_test": [
                _expect(stack, "ImmuneLatencyP95High", False),
                _expect(stack, "ImmuneErrorRatioHigh", False),
            ],
        },
        {  # 10 % of API requests answer 500.
            "interval": "1m",
            "input_series": _histogram(ns, "/api/v1/events", "202", {**fast_api, "+Inf": 54})
            + _histogram(ns, "/api/v1/events", "500", {"0.25": 6, "0.5": 6, "1.0": 6, "2.5": 6, "+Inf": 6}),
            "alert_rule_test": [_expect(stack, "ImmuneErrorRatioHigh", True)],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": f'immune_leader{{namespace="{ns}",instance="a"}}', "values": "0x30"},
                {"series": f'immune_leader{{namespace="{ns}",instance="b"}}', "values": "0x30"},
                {"series": f'immune_outbox_depth{{namespace="{ns}",instance="a"}}', "values": "100000x30"},
                {"series": f'immune_consumer_lag{{namespace="{ns}",topic="t"}}', "values": "1000000x30"},
            ],
            "alert_rule_test": [
                _expect(stack, "ImmuneNoLeader", True),
                _expect(stack, "ImmuneSplitBrain", False),
                _expect(stack, "ImmuneOutboxBacklog", True),
                _expect(stack, "ImmuneConsumerLagHigh", True),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": f'immune_leader{{namespace="{ns}",instance="a"}}', "values": "1x30"},
                {"series": f'immune_leader{{namespace="{ns}",instance="b"}}', "values": "0x30"},
                {"series": f'immune_outbox_depth{{namespace="{ns}",instance="a"}}', "values": "0x30"},
                {"series": f'immune_consumer_lag{{namespace="{ns}",topic="t"}}', "values": "0x30"},
            ],
            "alert_rule_test": [
                _expect(stack, "ImmuneNoLeader", False),
                _expect(stack, "ImmuneSplitBrain", False),
                _expect(stack, "ImmuneOutboxBacklog", False),
                _expect(stack, "ImmuneConsumerLagHigh", False),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": f'immune_leader{{namespace="{ns}",instance="a"}}', "values": "1x30"},
                {"series": f'immune_leader{{namespace="{ns}",instance="b"}}', "values": "1x30"},
            ],
            "alert_rule_test": [
                _expect(stack, "ImmuneSplitBrain", True),
                _expect(stack, "ImmuneNoLeader", False),
            ],
        },
        {  # Replica a crash-loops and sits on a backlog; replica b makes progress.
            "interval": "1m",
            "input_series": [
                _series("immune_consumer_restarts_total", ns, 'instance="a"', "0+1x30"),
                _series("immune_consumer_restarts_total", ns, 'instance="b"', "0x30"),
                _series("immune_consumer_lag", ns, 'instance="a",topic="t"', "500x30"),
                _series("immune_consumer_lag", ns, 'instance="b",topic="t"', "500x30"),
                # a's last progress stays at t=0; b's follows the clock (60 s per 1m step).
                _series("immune_consumer_last_progress_timestamp_seconds", ns, 'instance="a"', "0x30"),
                _series("immune_consumer_last_progress_timestamp_seconds", ns, 'instance="b"', "0+60x30"),
                _series("immune_events_unprocessed", ns, 'instance="a"', "0x5 7x25"),
                _series(
                    "immune_dlq_messages_total", ns, 'instance="a",reason="detection_error"', "0x15 1x15"
                ),
                _series("immune_dlq_messages_total", ns, 'instance="a",reason="invalid_event"', "0+5x30"),
            ],
            "alert_rule_test": [
                _expect(stack, "ImmuneConsumerCrashLooping", True, instance="a"),
                _expect(stack, "ImmuneConsumerStalled", True, instance="a"),
                _expect(stack, "ImmuneEventsUnprocessed", True),
                _expect(stack, "ImmuneDetectionErrors", True),
            ],
        },
        {  # Healthy consumers: progress, no restarts, nothing unprocessed; invalid input alone is no alert.
            "interval": "1m",
            "input_series": [
                _series("immune_consumer_restarts_total", ns, 'instance="a"', "1x30"),
                _series("immune_consumer_lag", ns, 'instance="a",topic="t"', "500x30"),
                _series("immune_consumer_last_progress_timestamp_seconds", ns, 'instance="a"', "0+60x30"),
                _series("immune_events_unprocessed", ns, 'instance="a"', "0x30"),
                _series("immune_dlq_messages_total", ns, 'instance="a",reason="invalid_event"', "0+5x30"),
            ],
            "alert_rule_test": [
                _expect(stack, "ImmuneConsumerCrashLooping", False),
                _expect(stack, "ImmuneConsumerStalled", False),
                _expect(stack, "ImmuneEventsUnprocessed", False),
                _expect(stack, "ImmuneDetectionErrors", False),
            ],
        },
        {  # Token guessing from several addresses: 15 wrong tokens a minute over two replicas.
            "interval": "1m",
            "input_series": [
                _series("immune_auth_failures_total", ns, 'instance="a",reason="unknown_token"', "0+10x30"),
                _series("immune_auth_failures_total", ns, 'instance="b",reason="unknown_token"', "0+5x30"),
            ],
            "alert_rule_test": [_expect(stack, "ImmuneApiTokenGuessing", True)],
        },
        {  # A client with a stale token (2 a minute) and tokens lacking a role: no alert.
            "interval": "1m",
            "input_series": [
                _series("immune_auth_failures_total", ns, 'instance="a",reason="unknown_token"', "0+2x30"),
                _series("immune_auth_failures_total", ns, 'instance="a",reason="missing_role"', "0+50x30"),
            ],
            "alert_rule_test": [_expect(stack, "ImmuneApiTokenGuessing", False)],
        },
        {  # RTE's circuit stays open; IP intel fails 3 calls in 4; Ethical AI's circuit opens.
            "interval": "1m",
            "input_series": [
                _series("immune_dependency_circuit_state", ns, 'instance="a",dependency="rte"', "2x30"),
                _series("immune_dependency_circuit_state", ns, 'instance="a",dependency="treg"', "0x30"),
                _series(
                    "immune_dependency_circuit_state", ns, 'instance="a",dependency="ethical_ai"', "0x5 2x25"
                ),
                _series(
                    "immune_dependency_calls_total",
                    ns,
                    'instance="a",dependency="ip_intel",operation="lookup",outcome="failed"',
                    "0+30x30",
                ),
                _series(
                    "immune_dependency_calls_total",
                    ns,
                    'instance="a",dependency="ip_intel",operation="lookup",outcome="ok"',
                    "0+10x30",
                ),
                _series(
                    "immune_dependency_calls_total",
                    ns,
                    'instance="a",dependency="treg",operation="suppression",outcome="ok"',
                    "0+60x30",
                ),
            ],
            "alert_rule_test": [
                _expect(stack, "ImmuneDependencyCircuitOpen", True, dependency="rte"),
                _expect(stack, "ImmuneDependencyFailing", True, dependency="ip_intel"),
                _expect(stack, "ImmuneActionValidationUnavailable", True),
            ],
        },
        {  # Closed circuits, a rare failure, Ethical AI half-open a moment: no alert.
            "interval": "1m",
            "input_series": [
                _series("immune_dependency_circuit_state", ns, 'instance="a",dependency="rte"', "0x30"),
                _series(
                    "immune_dependency_circuit_state",
                    ns,
                    'instance="a",dependency="ethical_ai"',
                    "0x10 1 0x19",
                ),
                _series(
                    "immune_dependency_calls_total",
                    ns,
                    'instance="a",dependency="ip_intel",operation="lookup",outcome="failed"',
                    "0+1x30",
                ),
                _series(
                    "immune_dependency_calls_total",
                    ns,
                    'instance="a",dependency="ip_intel",operation="lookup",outcome="ok"',
                    "0+60x30",
                ),
            ],
            "alert_rule_test": [
                _expect(stack, "ImmuneDependencyCircuitOpen", False),
                _expect(stack, "ImmuneDependencyFailing", False),
                _expect(stack, "ImmuneActionValidationUnavailable", False),
            ],
        },
        {  # No instance reports at all (all pods down): still "no leader".
            "interval": "1m",
            "input_series": [
                {"series": 'immune_leader{namespace="elsewhere",instance="x"}', "values": "1x30"}
            ],
            # absent() carries the selector's namespace label.
            "alert_rule_test": [_expect(stack, "ImmuneNoLeader", True, namespace=ns)],
        },
    ]


def test_slo_alerts_fire_exactly_when_their_condition_holds(
    stack: RenderedStack, promtool: str, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules(stack)))
    suite = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": _rule_tests(stack)}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
