"""SQL for the adaptive layer: memory detectors, self samples and response decisions (``repository`` pattern).

Every function takes an open ``Connection``: the caller's transaction stores a batch's detectors and
decisions with the events and threats they came from, so they commit (or roll back) together.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from immune_core.adaptive.clonalg import MemoryDetector
from immune_core.adaptive.features import FEATURES_BY_SPACE
from immune_core.adaptive.state import SelfSample
from immune_core.responses.proposals import Decision
from immune_core.storage.database import Connection, Row


async def upsert_detectors(conn: Connection, detectors: Sequence[MemoryDetector]) -> None:
    """Store detectors learned or changed (a later version of one id replaces the earlier one)."""
    now = time.time()
    for d in detectors:
        await conn.execute(
            "INSERT INTO memory_detectors (detector_id, antigen_type, space, category, features, radius,"
            " stimulations, severity, origin, created_at, updated_at, stored_at, deleted)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            " ON CONFLICT (detector_id) DO UPDATE SET features = excluded.features, radius = excluded.radius,"
            " stimulations = CASE WHEN excluded.stimulations > memory_detectors.stimulations"
            " THEN excluded.stimulations ELSE memory_detectors.stimulations END,"
            " severity = excluded.severity, updated_at = excluded.updated_at, stored_at = excluded.stored_at",
            d.detector_id,
            d.antigen_type,
            d.space,
            d.category,
            json.dumps([round(float(x), 6) for x in d.features]),
            float(d.radius),
            int(d.stimulations),
            d.severity,
            d.origin,
            d.created_at.timestamp(),
            d.updated_at.timestamp(),
            now,
            False,
        )


async def delete_detectors(conn: Connection, detector_ids: Sequence[str]) -> None:
    """Mark detectors tolerance deleted; the row stays so every replica learns of the deletion."""
    now = time.time()
    for detector_id in detector_ids:
        await conn.execute(
            "UPDATE memory_detectors SET deleted = $1, stored_at = $2 WHERE detector_id = $3",
            True,
            now,
            detector_id,
        )


async def detectors_since(conn: Connection, since: float) -> list[Row]:
    """Rows stored at or after ``since`` (wall clock), oldest first, deleted ones included."""
    return await conn.fetch(
        "SELECT detector_id, antigen_type, space, category, features, radius, stimulations, severity, origin,"
        " created_at, updated_at, stored_at, deleted FROM memory_detectors WHERE stored_at >= $1"
        " ORDER BY stored_at",
        since,
    )


def detector_from_row(row: Row) -> MemoryDetector | None:
    """The detector a row holds, or None for a row that is not a usable detector (wrong shape)."""
    space = str(row["space"])
    names = FEATURES_BY_SPACE.get(space)
    features = json.loads(str(row["features"]))
    if names is None or not isinstance(features, list) or len(features) != len(names):
        return None
    vector = np.clip(np.asarray(features, dtype=np.float64), 0.0, 1.0)
    radius = float(row["radius"])
    return MemoryDetector(
        detector_id=str(row["detector_id"]),
        antigen_type=str(row["antigen_type"]),
        space=space,
        category=row["category"],
        features=vector,
        radius=radius,
        stimulations=int(row["stimulations"]),
        severity=row["severity"],
        origin=str(row["origin"]),
        created_at=datetime.fromtimestamp(float(row["created_at"]), UTC),
        updated_at=datetime.fromtimestamp(float(row["updated_at"]), UTC),
        base_radius=radius,
    )


class SelfSampleRefused(ValueError):
    """A stored self sample that is not one (unknown space, wrong shape, out of range): it is skipped."""


async def store_self_samples(conn: Connection, samples: Sequence[SelfSample]) -> None:
    """Store self samples learned in a training window; one already stored keeps its first row."""
    now = time.time()
    for sample in samples:
        await conn.execute(
            "INSERT INTO self_samples (space, vector, training_started_at, stored_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (space, vector) DO NOTHING",
            sample.space,
            json.dumps([round(float(x), 2) for x in sample.vector]),
            sample.training_started.timestamp(),
            now,
        )


async def self_samples_since(conn: Connection, since: float) -> list[Row]:
    """Self-sample rows stored at or after ``since`` (wall clock, epoch s), oldest first."""
    return await conn.fetch(
        "SELECT space, vector, training_started_at, stored_at FROM self_samples WHERE stored_at >= $1"
        " ORDER BY stored_at",
        since,
    )


def self_sample_from_row(row: Row) -> SelfSample:
    """The self sample a row holds.

    Raises ``SelfSampleRefused`` naming the reason for a row that is not one: a feature space this
    release does not know (written by another release, or by hand), a vector that is not a JSON list of
    that space's width, a feature outside [0, 1] or not finite, a training start that is not a time.
    Loading it anyway would widen tolerance to points that were never self.
    """
    space = str(row["space"])
    names = FEATURES_BY_SPACE.get(space)
    if names is None:
        raise SelfSampleRefused(f"self sample of unknown feature space {space[:60]!r}")
    try:
        vector = json.loads(str(row["vector"]))
    except json.JSONDecodeError as exc:
        raise SelfSampleRefused(f"self sample of {space}: vector is not JSON ({exc.msg})") from None
    if not isinstance(vector, list) or len(vector) != len(names):
        raise SelfSampleRefused(f"self sample of {space}: vector is not a list of {len(names)} features")
    if not all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1
        for x in vector
    ):
        raise SelfSampleRefused(f"self sample of {space}: a feature is not a number in [0, 1]")
    try:
        started = float(row["training_started_at"])
    except (TypeError, ValueError):
        started = math.nan
    if not math.isfinite(started) or not 0 <= started < 1e11:
        raise SelfSampleRefused(f"self sample of {space}: the training start is not a time")
    return SelfSample(space, tuple(float(x) for x in vector), datetime.fromtimestamp(started, UTC))


async def record_decisions(conn: Connection, decisions: Sequence[Decision]) -> None:
    """Every proposed action and its verdict; the first decision on an action id stands."""
    now = time.time()
    for decision in decisions:
        action, verdict = decision.action, decision.verdict
        await conn.execute(
            "INSERT INTO response_actions (action_id, threat_id, kind, target, critical, decision, reason,"
            " validator, degraded, payload, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (action_id) DO NOTHING",
            str(action.action_id),
            str(action.threat_id),
            action.kind,
            action.target,
            action.critical,
            verdict.decision,
            verdict.reason,
            verdict.validator,
            verdict.degraded,
            action.model_dump_json(),
            now,
        )
