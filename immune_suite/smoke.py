"""Smoke and post-promotion checks: short, exact HTTP checks against one endpoint.

The smoke test proves the preview endpoint reaches the candidate, that it is live and ready, that
an authenticated write is accepted and shows in the stats. The post-promotion check proves the
stable endpoint now serves the candidate and only it.

Both run right after routing changed, so both first wait until the endpoint serves the expected
release (retried until `timeout_s`: a Service selector or a proxy map takes effect a moment later),
and from then on every response must come from it: the colour the ingress names
(`X-Immune-Served-By`, see gates/attribution.py; the service's own `X-Immune-Color` only where the
target has no ingress attribution) and the version the service reports. A response from the old
colour is never accepted as a pass, and a switch that leaves the old colour serving fails.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from immune_suite.gates.attribution import Attribution
from immune_suite.gates.sample_events import generate
from immune_suite.targets.base import Color, Release
from immune_suite.verdict import Measurement, Verdict

COLOR_HEADER = "X-Immune-Color"
VERSION_HEADER = "X-Immune-Version"


def _check(
    name: str, passed: bool, value: float | None = None, threshold: float | None = None
) -> Measurement:
    return Measurement(name, value if value is not None else float(passed), threshold, "==", passed)


def served_by(response: httpx.Response, attribution: Attribution | None) -> tuple[str, str | None]:
    """(colour, version) of a response: the colour from the ingress when it can say, else the service's."""
    color = attribution.color_of(response.headers) if attribution else response.headers.get(COLOR_HEADER)
    return color or "unknown", response.headers.get(VERSION_HEADER)


def _label(identity: tuple[str, str | None]) -> str:
    return f"{identity[0]}/{identity[1] or '-'}"


def wait_for_release(
    client: httpx.Client,
    path: str,
    expected: tuple[str, str],
    attribution: Attribution | None,
    timeout_s: float,
) -> tuple[httpx.Response | None, dict[str, int]]:
    """Retry `GET path` every 0.3 s until it answers 200 from `expected` (colour, version), or `timeout_s`
    seconds pass.

    Returns the first such response (None on timeout) and what answered meanwhile ("colour/version"
    or the error's name -> count), so a failure says who was still serving.
    """
    others: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = client.get(path)
            identity = served_by(response, attribution)
            if response.status_code == 200 and identity == expected:
                return response, others
            key = f"{_label(identity)} HTTP {response.status_code}"
        except httpx.HTTPError as error:
            key = type(error).__name__
        others[key] = others.get(key, 0) + 1
        if time.monotonic() > deadline:
            return None, others
        time.sleep(0.3)


def smoke_test(
    url: str,
    token: str,
    color: Color,
    release: Release,
    timeout_s: float,
    progress: Callable[..., None],
    attribution: Attribution | None = None,
) -> Verdict:
    """The smoke gate: the candidate at `url` serves `color`/`release` and its main operations work.

    Waits up to `timeout_s` seconds for /health/ready to answer 200 from the expected release, then checks
    /health/live, /api/v1/stats with and without the bearer `token` (401/403 expected without), and a POST
    of 3 events, all acknowledged; every answer must come from that release. Measurements are checks
    (value: the status code, or 1.0/0.0); a release that never becomes ready fails the verdict. Raises
    httpx.HTTPError when the service stops answering after it was ready (5 s per request).
    """
    headers = {"Authorization": f"Bearer {token}"}
    expected = (color.value, release.version)
    measurements: list[Measurement] = []
    details: dict[str, Any] = {"url": url, "expected": _label(expected)}
    wrong: list[str] = []

    def from_expected(response: httpx.Response) -> httpx.Response:
        identity = served_by(response, attribution)
        if identity != expected:
            wrong.append(f"{response.request.method} {response.request.url.path}: {_label(identity)}")
        return response

    with httpx.Client(base_url=url, timeout=5.0) as client:
        ready, others = wait_for_release(client, "/health/ready", expected, attribution, timeout_s)
        details["before_ready"] = others
        measurements.append(_check("ready_from_expected_release", ready is not None))
        if ready is not None:
            live = from_expected(client.get("/health/live"))
            measurements.append(_check("live_status_200", live.status_code == 200, live.status_code, 200))
            details["live"] = live.json() if live.status_code == 200 else live.text[:500]
            before = from_expected(client.get("/api/v1/stats", headers=headers))
            measurements.append(
                _check("stats_status_200", before.status_code == 200, before.status_code, 200)
            )
            unauthenticated = from_expected(client.get("/api/v1/stats"))
            measurements.append(
                _check(
                    "stats_requires_token",
                    unauthenticated.status_code in (401, 403),
                    unauthenticated.status_code,
                )
            )
            events = generate(3, random.Random())  # noqa: S311 - test traffic, fresh ids every time
            posted = from_expected(client.post("/api/v1/events", json={"events": events}, headers=headers))
            measurements.append(
                _check("post_events_2xx", 200 <= posted.status_code < 300, posted.status_code)
            )
            details["post_events"] = posted.text[:500]
            # Stats are per process (the preview has several replicas), so the write is checked by
            # its own acknowledgement: every event accepted, none silently dropped.
            reply = posted.json() if posted.status_code < 300 else {}
            accepted = reply.get("accepted", 0) + reply.get("duplicates", 0) if reply else None
            measurements.append(_check("events_acknowledged", accepted == len(events), accepted, len(events)))
            if before.status_code == 200:
                body = before.json()
                measurements.append(_check("stats_shape", {"events_accepted", "events_stored"} <= set(body)))
            measurements.append(_check("responses_from_other_release", not wrong, len(wrong), 0))
            details["from_other_release"] = wrong
    status = Verdict.status_from(measurements)
    failed = [m.name for m in measurements if not m.passed]
    summary = f"smoke on {url}: " + ("all checks passed" if not failed else "failed " + ", ".join(failed))
    if ready is None:
        summary += f" ({_label(expected)} never answered within {timeout_s:.0f}s; meanwhile: {others})"
    elif wrong:
        summary += f" (answered by another release: {wrong[:3]})"
    progress(summary, stage="smoke")
    return Verdict(gate="smoke", status=status, summary=summary, measurements=measurements, details=details)


def post_promotion_check(
    url: str,
    color: Color,
    release: Release,
    requests: int,
    progress: Callable[..., None],
    attribution: Attribution | None = None,
    timeout_s: float = 30.0,
) -> Verdict:
    """The stable endpoint serves the new colour and version, and then only it, on `requests` calls.

    Waits (up to `timeout_s` seconds) for the first answer from the new release; after that every one of
    `requests` calls must answer 200 from it: one from the old colour, or a failure, fails the check.
    """
    expected = (color.value, release.version)
    wrong: list[str] = []
    failures = 0
    with httpx.Client(base_url=url, timeout=5.0) as client:
        first, before = wait_for_release(client, "/health/live", expected, attribution, timeout_s)
        if first is not None:
            for _ in range(requests):
                try:
                    response = client.get("/health/live")
                except httpx.HTTPError as error:
                    failures += 1
                    wrong.append(type(error).__name__)
                    continue
                if response.status_code != 200:
                    failures += 1
                identity = served_by(response, attribution)
                if identity != expected:
                    wrong.append(_label(identity))
    switched = first is not None
    measurements = [
        Measurement("requests", requests, None, "info", True),
        _check("new_release_serves", switched),
        Measurement("failed_requests", failures, 0, "==", switched and failures == 0),
        Measurement("served_by_other_version", len(wrong), 0, "==", switched and not wrong),
    ]
    status = Verdict.status_from(measurements)
    if not switched:
        summary = (
            f"stable endpoint never served {_label(expected)} within {timeout_s:.0f}s; it answered: {before}"
        )
    elif not wrong and not failures:
        summary = f"stable endpoint serves {_label(expected)} on {requests}/{requests} requests"
    else:
        summary = (
            f"stable endpoint: {failures} failed, {len(wrong)} answered by others ({sorted(set(wrong))})"
        )
    progress(summary, stage="post_check")
    return Verdict(
        gate="post-check",
        status=status,
        summary=summary,
        measurements=measurements,
        details={"expected": _label(expected), "before_switch_took_effect": before},
    )
