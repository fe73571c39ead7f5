"""``immune-core simulate``: write the simulator's events to a file, a service's HTTP API, or Kafka."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx

from immune_core.events.models import TOPIC_BY_KIND, parse_event, partition_key
from immune_core.settings import Settings
from immune_core.simulator import SCENARIOS, LabelledEvent, generate
from immune_core.simulator.scenarios import scenario_duration


def _start_time(duration_s: float) -> datetime:
    # End "now": recent timestamps keep wall-clock TTLs (cytokines, dashboards) meaningful.
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=duration_s)


@contextmanager
def _open_output(target: str) -> Iterator[TextIO]:
    if target == "-":
        yield sys.stdout
        return
    with Path(target).open("w", encoding="utf-8") as handle:
        yield handle


def _batches(items: Sequence[LabelledEvent], size: int) -> Iterator[list[dict[str, Any]]]:
    for index in range(0, len(items), size):
        yield [labelled.event for labelled in items[index : index + size]]


def send_http(
    url: str, token: str | None, events: Sequence[LabelledEvent], batch_size: int
) -> dict[str, int]:
    endpoint = url.rstrip("/") + "/api/v1/events"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    totals = {"accepted": 0, "duplicates": 0}
    with httpx.Client(timeout=30.0, headers=headers) as client:
        for batch in _batches(events, batch_size):
            response = client.post(endpoint, json={"events": batch})
            if response.status_code != 202:
                raise SystemExit(f"{endpoint} answered {response.status_code}: {response.text[:500]}")
            body = response.json()
            totals["accepted"] += int(body["accepted"])
            totals["duplicates"] += int(body["duplicates"])
    return totals


async def send_kafka(bootstrap: str, events: Sequence[LabelledEvent]) -> dict[str, int]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for labelled in events:
            event = parse_event(labelled.event)
            value = json.dumps(labelled.event, separators=(",", ":")).encode()
            futures.append(
                await producer.send(TOPIC_BY_KIND[event.kind], value, key=partition_key(event).encode())
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {"sent": len(events)}


def run_simulation(args: argparse.Namespace) -> int:
    if args.scenario not in SCENARIOS:
        known = "\n".join(f"  {name}: {text}" for name, text in SCENARIOS.items())
        print(f"unknown scenario {args.scenario!r}; known scenarios:\n{known}", file=sys.stderr)
        return 2
    events = generate(args.scenario, seed=args.seed, start=_start_time(scenario_duration(args.scenario)))
    attacks = sum(1 for e in events if e.label)
    if args.output or not args.target:
        with _open_output(args.output or "-") as handle:
            for labelled in events:
                record = (
                    {"event": labelled.event, "label": labelled.label, "antigen": labelled.antigen}
                    if args.labels
                    else labelled.event
                )
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    if args.target:
        settings = Settings()
        if args.target == "kafka":
            if not settings.kafka_bootstrap_servers:
                print("--target kafka needs IMMUNE_KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
                return 2
            totals = asyncio.run(send_kafka(settings.kafka_bootstrap_servers, events))
        else:
            token = args.token or (settings.token_values()[0] if settings.api_tokens else None)
            totals = send_http(args.target, token, events, args.batch_size)
        summary = {
            "scenario": args.scenario,
            "seed": args.seed,
            "events": len(events),
            "attack_events": attacks,
        }
        print(json.dumps({**summary, **totals}), file=sys.stderr)
    return 0
