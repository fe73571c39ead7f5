"""The homeostatic loop (a singleton duty on the leader) and the state every replica can read."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from immune_core.clients.treg import TregClient
from immune_core.coordination.lease import DatabaseLease
from immune_core.detection.threat import SEVERITIES
from immune_core.homeostasis.levels import BASELINE, level_for, level_name, threat_score
from immune_core.hormones.signal import Hormones, HormonesUnavailable
from immune_core.observability.logging import get_logger
from immune_core.observability.metrics import Metrics
from immune_core.storage import repository as repo
from immune_core.storage.database import Connection, Database

log = get_logger(__name__)
THREAT_LEVEL_HORMONE = "threat_level"
_REPUBLISH_EVERY_S = 15.0  # re-broadcast so a restarted Redis or a late replica converges
_LEDGER_RETENTION_S = 3600.0


@dataclass(frozen=True)
class HomeostasisState:
    level: int
    score: float
    updated_at: float
    token: int
    override_level: int | None
    override_until: float | None
    override_reason: str | None

    def effective_override(self, now: float) -> int | None:
        if self.override_level is not None and self.override_until is not None and self.override_until > now:
            return self.override_level
        return None

    def as_dict(self, now: float) -> dict[str, Any]:
        override = self.effective_override(now)
        return {
            "level": self.level,
            "level_name": level_name(self.level),
            "score": round(self.score, 4),
            "source": "override" if override is not None else "computed",
            "updated_at": self.updated_at,
            "term": self.token,
            "override": None
            if override is None
            else {"level": override, "until": self.override_until, "reason": self.override_reason},
        }


async def read_state(conn: Connection) -> HomeostasisState | None:
    row = await conn.fetchrow(
        "SELECT level, score, updated_at, token, override_level, override_until, override_reason"
        " FROM homeostasis WHERE id = 1"
    )
    if row is None:
        return None
    return HomeostasisState(
        level=int(row["level"]),
        score=float(row["score"]),
        updated_at=float(row["updated_at"]),
        token=int(row["token"]),
        override_level=None if row["override_level"] is None else int(row["override_level"]),
        override_until=None if row["override_until"] is None else float(row["override_until"]),
        override_reason=row["override_reason"],
    )


async def record_singleton_run(conn: Connection, duty: str, token: int, holder: str, detail: str) -> None:
    now = time.time()
    await conn.execute(
        "INSERT INTO singleton_ledger (duty, token, holder, ran_at, detail) VALUES ($1, $2, $3, $4, $5)",
        duty,
        token,
        holder,
        now,
        detail,
    )


class HomeostaticController:
    name = "homeostasis"

    def __init__(
        self,
        *,
        database: Database,
        lease: DatabaseLease,
        hormones: Hormones,
        metrics: Metrics,
        holder: str,
        interval_s: float,
        window_s: float,
        half_life_s: float,
        treg: TregClient | None = None,
        max_suppression: float = 0.5,
    ) -> None:
        self._db = database
        self._lease = lease
        self._hormones = hormones
        self._metrics = metrics
        self._holder = holder
        self.interval_s = interval_s
        self._window = window_s
        self._half_life = half_life_s
        self._published: tuple[int, float] | None = None  # (level, when)
        self._ticks = 0
        # Regulatory suppression (Treg service): asked about the previous tick's picture before the
        # fenced transaction opens, so no HTTP call ever runs while the lease's transaction is held;
        # at most ``max_suppression`` of the score is taken away, and without an answer none is.
        self._treg = treg
        self._max_suppression = max_suppression
        self._last_picture: tuple[int, float, dict[str, int]] | None = None  # (level, score, by severity)
        self.suppression = 0.0

    async def _consult_treg(self) -> float:
        if self._treg is None or self._last_picture is None:
            return 0.0
        level, score, by_severity = self._last_picture
        answer = await self._treg.suppression(level, score, by_severity)
        if answer is None:
            return 0.0  # fallback no_suppression: an absent regulator never silences detection
        applied = min(answer.suppression, self._max_suppression)
        if applied != self.suppression:
            log.info("treg_suppression", suppression=applied, asked=answer.suppression, reason=answer.reason)
        return applied

    async def tick(self, token: int) -> None:
        self.suppression = await self._consult_treg()
        now = time.time()
        async with self._lease.fenced(token) as conn:
            state = await read_state(conn)
            rows = await conn.fetch(
                "SELECT stored_at, severity_rank, confidence FROM threats WHERE stored_at >= $1",
                now - self._window,
            )
            computed = threat_score(
                ((float(r["stored_at"]), int(r["severity_rank"]), float(r["confidence"])) for r in rows),
                now,
                self._half_life,
            )
            score = computed * (1.0 - self.suppression)
            previous = state.level if state is not None else BASELINE
            override = state.effective_override(now) if state is not None else None
            level = override if override is not None else level_for(score, previous)
            await conn.execute(
                "INSERT INTO homeostasis (id, level, score, updated_at, token) VALUES (1, $1, $2, $3, $4)"
                " ON CONFLICT (id) DO UPDATE SET level = excluded.level, score = excluded.score,"
                " updated_at = excluded.updated_at, token = excluded.token",
                level,
                score,
                now,
                token,
            )
            if level != previous:
                alert = {
                    "alert_id": str(uuid.uuid4()),
                    "type": "threat_level_changed",
                    "from": level_name(previous),
                    "to": level_name(level),
                    "level": level,
                    "score": round(score, 4),
                    "source": "override" if override is not None else "computed",
                    "suppression": round(self.suppression, 4),
                    "at": now,
                    "term": token,
                }
                await repo.enqueue(
                    conn, [repo.OutboxMessage(repo.ALERTS_TOPIC, "threat_level", repo.dumps(alert))]
                )
                log.info("threat_level_changed", previous=previous, level=level, score=round(score, 3))
            await record_singleton_run(
                conn, self.name, token, self._holder, f"level={level} score={score:.3f}"
            )
            self._ticks += 1
            if self._ticks % 600 == 0:
                await conn.execute(
                    "DELETE FROM singleton_ledger WHERE ran_at < $1", now - _LEDGER_RETENTION_S
                )
        by_severity: dict[str, int] = {name: 0 for name in SEVERITIES}
        for row in rows:
            by_severity[SEVERITIES[int(row["severity_rank"])]] += 1
        self._last_picture = (level, computed, by_severity)
        self._metrics.threat_level.set(level)
        await self._broadcast(level, score, token, now)

    async def _broadcast(self, level: int, score: float, token: int, now: float) -> None:
        due = (
            self._published is None
            or self._published[0] != level
            or now - self._published[1] > _REPUBLISH_EVERY_S
        )
        if not due:
            return
        try:
            await self._hormones.publish(
                THREAT_LEVEL_HORMONE,
                {
                    "level": level,
                    "level_name": level_name(level),
                    "score": round(score, 4),
                    "at": now,
                    "term": token,
                },
            )
            self._published = (level, now)
        except HormonesUnavailable as exc:
            # Degraded: the level is stored and alerted; the hormone is re-sent when Redis is back.
            log.warning("hormone_publish_failed", error=str(exc))
