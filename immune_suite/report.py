# ruff: noqa: E501 - the HTML template reads better with its lines whole
"""The human report: one self-contained HTML file (plots inlined as PNG) per promotion record.

Sections: the outcome and why; latency percentiles and error ratio per canary step, canary against
the reference it was judged with (the fresh baseline, else stable); the chaos timeline with recovery times; the security findings; every verdict's values
against thresholds; the timeline.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} .pass{color:#137333} .fail{color:#b3261e} .warn{color:#b06000}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem;width:100%}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} code{font-size:.85rem} img{max-width:100%} .muted{color:#666}
"""


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _esc(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _canary_steps(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in record.get("stages", []) if s.get("kind") == "canary" and s.get("verdict")]


def step_reference(step: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The reference a canary step was judged against: `("baseline" | "stable", its summary)`.

    The analysis (immune_suite/analysis.py) names it in `details["reference"]` and keeps its figures
    under that key: the fresh baseline when the window had one, else stable. Older records without
    the name were always judged against stable.
    """
    details = step["verdict"].get("details", {})
    name = str(details.get("reference") or "stable")
    return name, details.get(name) or {}


def _figure(summary: dict[str, Any], key: str) -> float:
    # A figure the record does not hold is NaN (no bar drawn, "n/a" in the table), never a zero that
    # would read as a measured 0 ms or 0 % errors.
    if key == "error_ratio":
        value = summary.get("error_ratio")
        return float(value) * 100 if value is not None else math.nan
    value = (summary.get("percentiles_ms") or {}).get(key)
    return float(value) if value is not None else math.nan


def _reference_label(steps: list[dict[str, Any]]) -> str:
    names = {step_reference(s)[0] for s in steps}
    return names.pop() if len(names) == 1 else "reference"


def canary_table(steps: list[dict[str, Any]]) -> str:
    """Per step: canary and the reference actually used, p50/p95/p99 (ms) and errors (%)."""
    rows = []
    for step in steps:
        name, reference = step_reference(step)
        canary = step["verdict"].get("details", {}).get("canary") or {}
        for who, summary in (("canary", canary), (name, reference)):
            cells = "".join(
                f"<td>{'n/a' if math.isnan(v) else _esc(v)}</td>"
                for v in (_figure(summary, k) for k in ("p50", "p95", "p99", "error_ratio"))
            )
            rows.append(
                f"<tr><td>{_esc(step['params'].get('percent'))}%</td><td>{_esc(who)}</td>"
                f"<td>{_esc(summary.get('count', 'n/a'))}</td>{cells}</tr>"
            )
    return (
        "<table><tr><th>step</th><th>who</th><th>requests</th><th>p50 ms</th><th>p95 ms</th>"
        f"<th>p99 ms</th><th>errors %</th></tr>{''.join(rows)}</table>"
    )


def canary_plots(record: dict[str, Any]) -> str:
    steps = _canary_steps(record)
    if not steps:
        return "<p class=muted>No canary steps ran (first promotion, or stopped before).</p>"
    reference_label = _reference_label(steps)
    labels = [f"{s['params'].get('percent')}%\nvs {step_reference(s)[0]}" for s in steps]
    figure, (latency_ax, error_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.13
    for offset, (who, pct, colour) in enumerate(
        [
            ("canary", "p50", "#f28b82"),
            ("canary", "p95", "#d93025"),
            ("canary", "p99", "#8c1d18"),
            ("reference", "p50", "#8ab4f8"),
            ("reference", "p95", "#1a73e8"),
            ("reference", "p99", "#174ea6"),
        ]
    ):
        values = [_figure(_summary_of(s, who), pct) for s in steps]
        positions = [i + (offset - 2.5) * width for i in range(len(steps))]
        label = reference_label if who == "reference" else who
        latency_ax.bar(positions, values, width, label=f"{label} {pct}", color=colour)
    slo = record.get("config", {}).get("slo", {})
    for key, style in (("p95_ms", "--"), ("p99_ms", ":")):
        if key in slo:
            latency_ax.axhline(slo[key], color="#555", linestyle=style, linewidth=1, label=f"SLO {key}")
    latency_ax.set_xticks(range(len(steps)), labels)
    latency_ax.set_ylabel("latency (ms)")
    latency_ax.set_title("latency per canary step")
    latency_ax.legend(fontsize=7, ncol=2)
    for who, colour, shift in (("canary", "#d93025", -0.15), ("reference", "#1a73e8", 0.15)):
        ratios = [_figure(_summary_of(s, who), "error_ratio") for s in steps]
        label = reference_label if who == "reference" else who
        error_ax.bar([i + shift for i in range(len(steps))], ratios, 0.3, label=label, color=colour)
    if "error_ratio" in slo:
        error_ax.axhline(slo["error_ratio"] * 100, color="#555", linestyle="--", linewidth=1, label="SLO")
    error_ax.set_xticks(range(len(steps)), labels)
    error_ax.set_ylabel("errors (%)")
    error_ax.set_title("error ratio per canary step")
    error_ax.legend(fontsize=7)
    return _png(figure) + canary_table(steps)


def _summary_of(step: dict[str, Any], who: str) -> dict[str, Any]:
    if who == "reference":
        return step_reference(step)[1]
    summary: dict[str, Any] = step["verdict"].get("details", {}).get(who) or {}
    return summary


def _seconds_since(start: str, moment: str) -> float:
    return (datetime.fromisoformat(moment) - datetime.fromisoformat(start)).total_seconds()


def timeline_plot(record: dict[str, Any]) -> str:
    stages = [s for s in record.get("stages", []) if s.get("started_at") and s.get("finished_at")]
    if not stages:
        return ""
    start = record["started_at"]
    figure, axis = plt.subplots(figsize=(11, 0.45 * len(stages) + 1))
    for row, stage in enumerate(stages):
        left = _seconds_since(start, stage["started_at"])
        length = max(_seconds_since(stage["started_at"], stage["finished_at"]), 0.05)
        colour = {"passed": "#34a853", "failed": "#ea4335"}.get(stage["status"], "#9aa0a6")
        axis.barh(row, length, left=left, color=colour)
        axis.text(left + length, row, f" {length:.1f}s", va="center", fontsize=8)
    axis.set_yticks(range(len(stages)), [s["id"] for s in stages])
    axis.invert_yaxis()
    axis.set_xlabel("seconds since start")
    axis.set_title("pipeline timeline")
    return _png(figure)


def chaos_section(record: dict[str, Any]) -> str:
    chaos = next((s for s in record.get("stages", []) if s.get("kind") == "chaos" and s.get("verdict")), None)
    if chaos is None:
        return "<p class=muted>The chaos gate did not run.</p>"
    verdict = chaos["verdict"]
    timed = [
        m for m in verdict.get("measurements", []) if m.get("unit") == "s" and m.get("value") is not None
    ]
    parts = [f"<p>{_esc(verdict.get('summary'))}</p>"]
    if timed:
        figure, axis = plt.subplots(figsize=(11, 0.4 * len(timed) + 1))
        names = [m["name"] for m in timed]
        axis.barh(
            names, [m["value"] for m in timed], color=["#34a853" if m["passed"] else "#ea4335" for m in timed]
        )
        for row, m in enumerate(timed):
            if m.get("threshold") is not None:
                axis.plot([m["threshold"]] * 2, [row - 0.4, row + 0.4], color="#555", linestyle="--")
        axis.invert_yaxis()
        axis.set_xlabel("seconds (dashed: limit)")
        axis.set_title("chaos: recovery times")
        parts.append(_png(figure))
    events = verdict.get("details", {}).get("timeline") or verdict.get("details", {}).get("experiments")
    if events:
        parts.append(
            f"<details><summary>chaos details</summary><pre>{_esc(json.dumps(events, indent=1))[:20000]}</pre></details>"
        )
    return "".join(parts)


def _finding_rows(items: list[Any]) -> str:
    rows = []
    for item in items[:200]:
        if isinstance(item, dict):
            text = ", ".join(f"{k}={v}" for k, v in item.items())
        else:
            text = str(item)
        rows.append(f"<li><code>{_esc(text)[:400]}</code></li>")
    return "<ul>" + "".join(rows) + "</ul>"


def security_section(record: dict[str, Any]) -> str:
    stages = [
        s for s in record.get("stages", []) if s.get("kind") in ("security", "api_fuzz") and s.get("verdict")
    ]
    if not stages:
        return "<p class=muted>The security gate did not run.</p>"
    parts = []
    for stage in stages:
        verdict = stage["verdict"]
        parts.append(f"<h3>{_esc(stage['id'])}</h3><p>{_esc(verdict.get('summary'))}</p>")
        rows = []
        for tool, info in (verdict.get("details", {}).get("tools") or {}).items():
            findings = info.get("findings")
            lists = {k: v for k, v in info.items() if isinstance(v, list) and v}
            detail = "".join(f"<b>{_esc(k)}</b>{_finding_rows(v)}" for k, v in lists.items())
            state = "pass" if not info.get("error") and not findings else "fail"
            rows.append(
                f"<tr><td>{_esc(tool)}</td><td class={state}>{_esc(findings if findings is not None else 'error')}</td>"
                f"<td>{_esc(info.get('summary', ''))}{('<br>' + _esc(info['error'])) if info.get('error') else ''}{detail}</td></tr>"
            )
        if rows:
            parts.append(
                "<table><tr><th>tool</th><th>findings</th><th>details</th></tr>" + "".join(rows) + "</table>"
            )
    return "".join(parts)


def verdict_table(stage: dict[str, Any]) -> str:
    verdict = stage.get("verdict") or {}
    rows = "".join(
        f"<tr><td>{_esc(m['name'])}</td><td>{_esc(m['value'])} {_esc(m.get('unit', ''))}</td>"
        f"<td>{_esc(m['comparator'])} {_esc(m['threshold'])}</td>"
        f"<td class={'pass' if m['passed'] else 'fail'}>{'ok' if m['passed'] else 'FAIL'}</td></tr>"
        for m in verdict.get("measurements", [])
    )
    artifacts = "".join(
        f"<li><code>{_esc(a['path'])}</code> sha256 <code>{_esc(a['sha256'][:16])}…</code></li>"
        for a in verdict.get("artifacts", [])
    )
    status = stage.get("status", "")
    head = f"<h3>{_esc(stage['id'])} <span class={'pass' if status == 'passed' else 'fail'}>{_esc(status)}</span></h3>"
    summary = f"<p>{_esc(stage.get('reason') or verdict.get('summary') or '')}</p>"
    table = (
        f"<table><tr><th>measure</th><th>value</th><th>threshold</th><th></th></tr>{rows}</table>"
        if rows
        else ""
    )
    return head + summary + table + (f"<ul>{artifacts}</ul>" if artifacts else "")


def rollback_failed_rows(failure: dict[str, Any]) -> str:
    """After a failed rollback: why, and what was where (as read back from the target) at the end."""
    if not failure.get("rollback_error"):
        return ""
    where = failure.get("where") or {}
    shares = where.get("live_shares", where.get("shares"))
    serving = ", ".join(f"{share}% {colour}" for colour, share in sorted((shares or {}).items()))
    colours = "; ".join(
        f"{colour}: {info.get('release') or '-'}, {info.get('live_replicas', '?')} live"
        if "error" not in info
        else f"{colour}: unreadable ({info['error']})"
        for colour, info in sorted((where.get("colours") or {}).items())
    )
    return (
        f"<tr><th>ROLLBACK FAILED</th><td class=fail>{_esc(failure['rollback_error'])}</td></tr>"
        f"<tr><th>where, read back at {_esc(where.get('read_at', '?'))}</th>"
        f"<td>ingress: {_esc(serving or where.get('traffic_error', 'unknown'))}; {_esc(colours)}</td></tr>"
    )


def render_report(record: dict[str, Any]) -> str:
    outcome = record.get("outcome", "")
    candidate = record.get("candidate") or {}
    stable = record.get("stable") or {}
    failure = record.get("failure") or {}
    metrics = record.get("metrics", {})
    approvals = (
        ", ".join(f"{a['by']} ({a['at']})" for a in record.get("approvals", [])) or "none required/given"
    )
    timeline_rows = "".join(
        f"<tr><td>{_esc(e['at'])}</td><td>{_esc(e['event'])}</td>"
        f"<td>{_esc(json.dumps({k: v for k, v in e.items() if k not in ('at', 'event')}))}</td></tr>"
        for e in record.get("timeline", [])
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Promotion {_esc(record.get("run_id"))} - {_esc(outcome)}</title><style>{STYLE}</style></head><body>
<h1>Promotion {_esc(record.get("run_id"))}: <span class={"pass" if outcome == "promoted" else "fail"}>{_esc(outcome)}</span></h1>
<p class=muted>stack <b>{_esc(record.get("stack"))}</b> ({_esc(record.get("target"))}), {_esc(record.get("started_at"))} → {_esc(record.get("finished_at"))}</p>
<table>
<tr><th>candidate</th><td>{_esc(candidate.get("version"))} on {_esc(candidate.get("color"))}, digest <code>{_esc(candidate.get("digest"))}</code>, ref {_esc(candidate.get("ref"))}</td></tr>
<tr><th>stable</th><td>{_esc(stable.get("version", "none (first promotion)"))} {("on " + _esc(stable.get("color"))) if stable else ""}</td></tr>
<tr><th>failure</th><td>{_esc(failure.get("reason", "-"))} {("(step " + _esc(failure.get("step")) + ")") if failure else ""}</td></tr>
{rollback_failed_rows(failure)}
<tr><th>approved by</th><td>{_esc(approvals)}</td></tr>
<tr><th>measured</th><td>{_esc(json.dumps(metrics))}</td></tr>
<tr><th>signature</th><td>{_esc((record.get("signature") or {}).get("algorithm", "unsigned"))} key {_esc((record.get("signature") or {}).get("key_id", "-"))}</td></tr>
</table>
<h2>Canary analysis: canary vs its reference (fresh baseline, else stable), same window</h2>{canary_plots(record)}
<h2>Timeline</h2>{timeline_plot(record)}
<h2>Chaos</h2>{chaos_section(record)}
<h2>Security</h2>{security_section(record)}
<h2>Every verdict</h2>{"".join(verdict_table(s) for s in record.get("stages", []))}
<h2>Events</h2><table><tr><th>at</th><th>event</th><th>detail</th></tr>{timeline_rows}</table>
</body></html>
"""


def write_report(record_path: Path, out: Path | None = None) -> Path:
    record = json.loads(record_path.read_text(encoding="utf-8"))
    out = out or record_path.with_suffix(".html")
    out.write_text(render_report(record), encoding="utf-8")
    return out
