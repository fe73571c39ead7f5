"""Smoke and post-promotion checks: short, exact HTTP checks against one endpoint.

The smoke test proves the preview endpoint reaches the candidate (colour and version headers),
that it is live and ready, that an authenticated write is accepted and shows in the stats.
The post-promotion check proves the stable endpoint now serves the candidate and only it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from immune_suite.gates.sample_events import generate
from immune_suite.targets.base import Color, Release
from immune_suite.verdict import Measurement, Verdict

COLOR_HEADER = "X-Immune-Color"
VERSION_HEADER = "X-Immune-Version"


def _check(
    name: str, passed: bool, value: float | None = None, threshold: float | None = None
) -> Measurement:
    return Measurement(name, value if value is not None else float(passed), threshold, "==", passed)


def _wait_live(client: httpx.Client, timeout_s: float) -> httpx.Response | None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = client.get("/health/ready")
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.3)


def smoke_test(
    url: str, token: str, color: Color, release: Release, timeout_s: float, progress: Callable[..., None]
) -> Verdict:
    headers = {"Authorization": f"Bearer {token}"}
    measurements: list[Measurement] = []
    details: dict[str, Any] = {"url": url}
    with httpx.Client(base_url=url, timeout=5.0) as client:
        ready = _wait_live(client, timeout_s)
        measurements.append(_check("ready", ready is not None))
        if ready is not None:
            live = client.get("/health/live")
            measurements.append(_check("live_status_200", live.status_code == 200, live.status_code, 200))
            measurements.append(_check("color_header", live.headers.get(COLOR_HEADER) == color.value))
            measurements.append(_check("version_header", live.headers.get(VERSION_HEADER) == release.version))
            details["live"] = live.json() if live.status_code == 200 else live.text[:500]
            before = client.get("/api/v1/stats", headers=headers)
            measurements.append(
                _check("stats_status_200", before.status_code == 200, before.status_code, 200)
            )
            unauthenticated = client.get("/api/v1/stats")
            measurements.append(
                _check(
                    "stats_requires_token",
                    unauthenticated.status_code in (401, 403),
                    unauthenticated.status_code,
                )
            )
            events = generate(3, random.Random())  # noqa: S311 - test traffic, fresh ids every time
            posted = client.post("/api/v1/events", json={"events": events}, headers=headers)
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
    status = Verdict.status_from(measurements)
    failed = [m.name for m in measurements if not m.passed]
    summary = f"smoke on {url}: " + ("all checks passed" if not failed else "failed " + ", ".join(failed))
    progress(summary, stage="smoke")
    return Verdict(gate="smoke", status=status, summary=summary, measurements=measurements, details=details)


def post_promotion_check(
    url: str, color: Color, release: Release, requests: int, progress: Callable[..., None]
) -> Verdict:
    """Every one of `requests` calls on the stable endpoint answers 200 from the new colour and version."""
    wrong: list[str] = []
    failures = 0
    with httpx.Client(base_url=url, timeout=5.0) as client:
        for _ in range(requests):
            try:
                response = client.get("/health/live")
            except httpx.HTTPError as error:
                failures += 1
                wrong.append(type(error).__name__)
                continue
            if response.status_code != 200:
                failures += 1
            served = (response.headers.get(COLOR_HEADER), response.headers.get(VERSION_HEADER))
            if served != (color.value, release.version):
                wrong.append(f"{served[0]}/{served[1]}")
    measurements = [
        Measurement("requests", requests, None, "info", True),
        Measurement("failed_requests", failures, 0, "==", failures == 0),
        Measurement("served_by_other_version", len(wrong), 0, "==", not wrong),
    ]
    status = Verdict.status_from(measurements)
    summary = (
        f"stable endpoint serves {color.value}/{release.version} on {requests}/{requests} requests"
        if not wrong and not failures
        else f"stable endpoint: {failures} failed, {len(wrong)} answered by others ({sorted(set(wrong))})"
    )
    progress(summary, stage="post_check")
    return Verdict(gate="post-check", status=status, summary=summary, measurements=measurements)
