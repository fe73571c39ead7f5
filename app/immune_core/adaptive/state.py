"""What the adaptive cells of one engine share: profiles, cytokines read, licences, memory, self, level.

The engine owns one ``AdaptiveState`` and lends it to the adaptive cells (``CellContext.adaptive``):

* ``profiles`` -- the antigens' long-window feature vectors (``features.AntigenProfiles``);
* ``cytokines`` -- the live cytokines this engine has *read*: those its own cells emitted and those
  received from the cytokine topics (other lanes and replicas), each dropped once its TTL has passed on
  the engine's event-time clock. This is how cytokines recruit and activate cells (see the cells);
* ``licences`` -- antigens a helper T cell has activated on (what they were confirmed to be, until when);
* ``memory`` -- the B cells' memory detectors per feature space (persisted in PostgreSQL by the service);
* ``self_sets`` -- self samples per feature space, learned in the training window (the regulatory T
  cells' tolerance; persisted in the store's ``self_samples`` table by the service, so a restart keeps
  tolerance);
* ``threat_level`` -- the homeostatic level (0 baseline .. 3 critical) from the threat-level hormone.

Cells leave what the service must publish or persist in ``expansions``, ``dirty_memory`` and
``new_self``; the engine drains them.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal
from uuid import UUID, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from immune_core.adaptive.clonalg import FloatArray, MemoryBank, MemoryDetector
from immune_core.adaptive.features import FEATURES_BY_SPACE, AntigenProfiles, Observation
from immune_core.adaptive.maturation import AffinityQuery
from immune_core.adaptive.recall import RecallQuery
from immune_core.adaptive.tolerance import SelfSet
from immune_core.cells.cytokine import Cytokine
from immune_core.cells.observation import Antigen
from immune_core.detection.threat import AntigenType, ThreatCategory, ThreatSeverity
from immune_core.lymphnodes.regions import region_of

CLONING_EXPANDED_TOPIC = "immunis.cloning.expanded"
_EXPANSION_NAMESPACE = UUID("9a3c1e57-2b6d-4f80-b1d4-7e2a5c0f3b19")
# Cytokines that signal inflammation at a site (they recruit cells there); il10 is anti-inflammatory.
INFLAMMATORY = frozenset({"il8", "tnf", "ifn_gamma", "il12", "il2"})


class ClonalExpansion(BaseModel):
    """One clonal expansion of a B cell, published on ``immunis.cloning.expanded``.

    ``kind`` is ``primary`` (a licensed antigen made a new memory detector) or ``secondary`` (a memory
    detector recognised an antigen and matured towards it). ``features`` is the antigen's vector (names in
    ``feature_names``), ``affinity`` = 1 / (1 + distance) of the best clone to it, ``radius`` in feature
    units, ``at`` the event time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    expansion_id: UUID
    schema_version: Literal[1] = 1
    kind: Literal["primary", "secondary"]
    cell_id: str = Field(min_length=1, max_length=120)
    detector_id: str = Field(min_length=1, max_length=200)
    antigen_type: AntigenType
    space: Literal["source_ip", "upload", "channel", "process"]
    antigen: str = Field(min_length=1, max_length=600)
    category: ThreatCategory
    clones: int = Field(ge=0, le=1_000_000)
    affinity: float = Field(ge=0.0, le=1.0)
    radius: float = Field(ge=0.0, le=10.0)
    stimulations: int = Field(ge=1)
    feature_names: list[str] = Field(max_length=64)
    features: list[float] = Field(max_length=64)
    at: AwareDatetime

    @classmethod
    def of(
        cls,
        kind: Literal["primary", "secondary"],
        cell_id: str,
        detector: MemoryDetector,
        antigen: Antigen,
        vector: tuple[float, ...],
        clones: int,
        affinity: float,
        at: datetime,
    ) -> ClonalExpansion:
        key = f"{kind}|{detector.detector_id}|{antigen}|{at.isoformat()}"
        return cls(
            expansion_id=uuid5(_EXPANSION_NAMESPACE, key),
            kind=kind,
            cell_id=cell_id,
            detector_id=detector.detector_id,
            antigen_type=antigen.type,
            space=detector.space,  # type: ignore[arg-type]
            antigen=antigen.value,
            category=detector.category,
            clones=clones,
            affinity=round(min(1.0, max(0.0, affinity)), 6),
            radius=round(min(10.0, detector.radius), 6),
            stimulations=detector.stimulations,
            feature_names=list(FEATURES_BY_SPACE[detector.space]),
            features=[round(x, 6) for x in vector],
            at=at,
        )


@lru_cache(maxsize=65_536)
def _region(antigen_type: str, antigen: str) -> str:
    # Parsing an address per lookup showed in profiles: regions of recent antigens are cached.
    return region_of(antigen_type, antigen)


@dataclass(frozen=True, slots=True)
class SelfSample:
    """One self sample: a vector of ``space`` (features in [0, 1], rounded to 0.01 as the self set keeps
    them) and the event time its engine's training window started (persisted in ``self_samples``)."""

    space: str
    vector: tuple[float, ...]
    training_started: datetime


@dataclass(frozen=True, slots=True)
class Licence:
    """A helper T cell's activation on an antigen: B and cytotoxic T cells may act on it until ``until``."""

    category: ThreatCategory
    severity: ThreatSeverity
    until: datetime
    by: str


@dataclass(frozen=True, slots=True)
class Damping:
    """A regulatory T cell's limit on critical response actions at high homeostatic levels."""

    active: bool
    max_critical: int
    window_s: float
    min_confidence: float
    by: str


@dataclass(frozen=True, slots=True)
class Tolerance:
    """A regulatory T cell is present: recognitions within ``self_radius`` of self are suppressed."""

    self_radius: float
    by: str


@dataclass(slots=True)
class CytokineField:
    """Live cytokines by antigen and by region, expiring on the engine's event-time clock."""

    capacity: int = 20_000
    _expiry: list[tuple[datetime, int, Cytokine]] = field(default_factory=list)
    _seq: int = 0
    _seen: OrderedDict[UUID, None] = field(default_factory=OrderedDict)
    by_antigen: dict[Antigen, Counter[str]] = field(default_factory=dict)
    by_region: Counter[str] = field(default_factory=Counter)
    categories: dict[Antigen, ThreatCategory] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, cytokine: Cytokine, now: datetime) -> bool:
        """Read one cytokine; False when it is expired, a type the field ignores, or already read."""
        if cytokine.is_expired(now) or cytokine.cytokine_id in self._seen:
            return False
        if cytokine.antigen_type not in ("source_ip", "host", "process"):
            return False
        self._seen[cytokine.cytokine_id] = None
        if len(self._seen) > 4 * self.capacity:
            self._seen.popitem(last=False)
        antigen = Antigen(cytokine.antigen_type, cytokine.antigen)  # type: ignore[arg-type]
        self._seq += 1
        heapq.heappush(self._expiry, (cytokine.expires_at, self._seq, cytokine))
        self.by_antigen.setdefault(antigen, Counter())[cytokine.type] += 1
        if cytokine.type in INFLAMMATORY:
            self.by_region[_region(cytokine.antigen_type, cytokine.antigen)] += 1
        category = cytokine.payload.get("category")
        if isinstance(category, str):
            self.categories[antigen] = category  # type: ignore[assignment]
        elif cytokine.type == "tnf":
            self.categories[antigen] = "known_bad_indicator"
        while len(self._expiry) > self.capacity:
            self._drop(heapq.heappop(self._expiry)[2])
        return True

    def expire(self, now: datetime) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            self._drop(heapq.heappop(self._expiry)[2])

    def _drop(self, cytokine: Cytokine) -> None:
        antigen = Antigen(cytokine.antigen_type, cytokine.antigen)  # type: ignore[arg-type]
        counts = self.by_antigen.get(antigen)
        if counts is not None:
            counts[cytokine.type] -= 1
            if counts[cytokine.type] <= 0:
                del counts[cytokine.type]
            if not counts:
                del self.by_antigen[antigen]
                self.categories.pop(antigen, None)
        if cytokine.type in INFLAMMATORY:
            region = _region(cytokine.antigen_type, cytokine.antigen)
            self.by_region[region] -= 1
            if self.by_region[region] <= 0:
                del self.by_region[region]

    def about(self, antigen: Antigen) -> Counter[str]:
        return self.by_antigen.get(antigen, Counter())

    def inflammation(self, antigen: Antigen) -> int:
        """Live inflammatory cytokines about the antigen's region (its /24, or its hosts' role)."""
        if not self.by_region:
            return 0
        return self.by_region.get(_region(antigen.type, antigen.value), 0)


@dataclass(slots=True)
class AdaptiveState:
    profiles: AntigenProfiles = field(default_factory=AntigenProfiles)
    cytokines: CytokineField = field(default_factory=CytokineField)
    licences: OrderedDict[Antigen, Licence] = field(default_factory=OrderedDict)
    memory: dict[str, MemoryBank] = field(
        default_factory=lambda: {s: MemoryBank(s, len(names)) for s, names in FEATURES_BY_SPACE.items()}
    )
    self_sets: dict[str, SelfSet] = field(
        default_factory=lambda: {s: SelfSet(len(names)) for s, names in FEATURES_BY_SPACE.items()}
    )
    threat_level: int = 0
    memory_version: int = 0  # bumped whenever a memory bank gains or changes a detector
    self_version: int = 0  # bumped whenever a self set changes (``learn_self``)
    damping: Damping | None = None
    tolerance: Tolerance | None = None
    critical_proposed: deque[datetime] = field(default_factory=deque)
    deleted_memory: list[str] = field(default_factory=list)
    # What B cells want to ask an external memory (the Memory service) after a primary response.
    recall_queries: list[RecallQuery] = field(default_factory=list)
    # What B cells want an external affinity scorer (the Adaptive Immunity service) to rank.
    affinity_queries: list[AffinityQuery] = field(default_factory=list)
    first_seen: datetime | None = None
    observations: list[Observation] = field(default_factory=list)
    expansions: list[ClonalExpansion] = field(default_factory=list)
    # Self samples learned here and not yet stored (the service persists them with their batch).
    new_self: list[SelfSample] = field(default_factory=list)
    dirty_memory: OrderedDict[str, MemoryDetector] = field(default_factory=OrderedDict)
    max_licences: int = 50_000
    max_pending: int = 10_000

    def begin_event(self, now: datetime, observations: list[Observation], cytokines: list[Cytokine]) -> None:
        if self.first_seen is None:
            self.first_seen = now
        self.observations = observations
        self.cytokines.expire(now)
        for cytokine in cytokines:
            self.cytokines.add(cytokine, now)

    def in_training(self, now: datetime, training_s: float) -> bool:
        return self.first_seen is not None and now < self.first_seen + timedelta(seconds=training_s)

    def licence(self, antigen: Antigen, now: datetime) -> Licence | None:
        licence = self.licences.get(antigen)
        if licence is None:
            return None
        if licence.until <= now:
            del self.licences[antigen]
            return None
        return licence

    def grant(self, antigen: Antigen, licence: Licence) -> None:
        self.licences[antigen] = licence
        self.licences.move_to_end(antigen)
        while len(self.licences) > self.max_licences:
            self.licences.popitem(last=False)

    def remember(self, detector: MemoryDetector) -> None:
        """A detector learned or changed here: keep it in the bank and queue it for persistence."""
        self.memory[detector.space].add(detector)
        self.memory_version += 1
        self.dirty_memory[detector.detector_id] = detector
        self.dirty_memory.move_to_end(detector.detector_id)
        while len(self.dirty_memory) > self.max_pending:
            self.dirty_memory.popitem(last=False)

    def expanded(self, expansion: ClonalExpansion) -> None:
        self.expansions.append(expansion)
        if len(self.expansions) > self.max_pending:
            del self.expansions[0]

    def learn_self(self, space: str, vector: tuple[float, ...]) -> None:
        """Offer a self sample of ``space`` (a regulatory T cell's training); one kept is queued to store."""
        if self.self_sets[space].learn(vector):
            self.self_version += 1
            if self.first_seen is not None:
                self.new_self.append(SelfSample(space, tuple(round(x, 2) for x in vector), self.first_seen))
                if len(self.new_self) > self.max_pending:
                    del self.new_self[0]

    def load_self(self, samples: Iterable[SelfSample]) -> int:
        """Self learned before (stored, or by another lane or replica); returns how many were new here.

        The training window goes on from the earliest start among the samples: a restart neither reopens
        a finished window (fresh traffic learned as self) nor forgets one still open.
        """
        added = 0
        for sample in samples:
            self_set = self.self_sets[sample.space]
            if len(sample.vector) != self_set.dimensions:
                raise ValueError(f"self sample of {sample.space} has {len(sample.vector)} features")
            if self_set.learn(sample.vector):
                added += 1
            if self.first_seen is None or sample.training_started < self.first_seen:
                self.first_seen = sample.training_started
        if added:
            self.self_version += 1
        return added

    def drain_self(self) -> list[SelfSample]:
        """Self samples learned since the last drain (to store)."""
        drained, self.new_self = self.new_self, []
        return drained

    def is_self(self, space: str, vector: FloatArray) -> bool:
        """True when a regulatory T cell is present and ``vector`` lies within its radius of self."""
        if self.tolerance is None:
            return False
        return self.self_sets[space].nearest_distance(vector) <= self.tolerance.self_radius

    def drain(self) -> tuple[list[ClonalExpansion], list[MemoryDetector], list[str]]:
        """Expansions to publish, detectors to persist, and ids of detectors tolerance deleted."""
        expansions, self.expansions = self.expansions, []
        deleted, self.deleted_memory = self.deleted_memory, []
        gone = set(deleted)
        memory = [d for d in self.dirty_memory.values() if d.detector_id not in gone]
        self.dirty_memory.clear()
        return expansions, memory, deleted
