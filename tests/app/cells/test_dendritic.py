import pytest
from immune_core.cells.base import Cell, CellConfigError, CellContext
from immune_core.cells.dendritic import DendriticCell, DendriticParams
from immune_core.cells.observation import Antigen, Signal, SignalKind
from immune_core.detection.intel import IntelStore

from tests.app.cells.cell_events import at, flow

A = Antigen("source_ip", "45.133.1.1")
B = Antigen("source_ip", "10.0.0.5")


def dc(**params: object) -> DendriticCell:
    cell = Cell.create("dendritic", params, "dendritic-t")
    assert isinstance(cell, DendriticCell)
    return cell


def signal(antigen: Antigen, kind: SignalKind, strength: float, seconds: float) -> Signal:
    return Signal(
        antigen,
        kind,
        strength,
        "test",
        f"{kind} {strength}",
        at(seconds),
        flow(seconds).event_id,
        "port_scan" if kind != "safe" else None,
        "h1",
    )


# The hand-computed example (docs/detection.md walks through the same numbers):
# two cells with migration thresholds 2 and 4; csm = P + D + S, k = D + 2P - 2S.
#  step  signals        csm  k   sampled by  cell0 (csm, k, n)      cell1 (csm, k, n)
#  1     D=1             1    1  cell0       (1, 1, 1)              (1, 1, 0)
#  2     P=0.5           0.5  1  cell1       (1.5, 2, 1)            (1.5, 2, 1)
#  3     S=1             1   -2  cell0       2.5>=2: semi (k=0), 2  (2.5, 0, 1)
#  4     D=1             1    1  cell1       (1, 1, 0)              (3.5, 1, 2)
#  5     D=1             1    1  cell0       2>=2: mature, 1        4.5>=4: mature, 2
# MCAV = (1 + 2) / (2 + 1 + 2) = 0.6
HAND_STEPS = [(0.0, 1.0, 0.0), (0.5, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (0.0, 1.0, 0.0)]


def test_migration_math_on_the_hand_computed_example() -> None:
    cell = dc(population_size=2, migration_min=2, migration_max=4)
    assert cell.params.migration_thresholds() == [2.0, 4.0]
    tissue = cell._tissue_for(A)
    migrated = [
        cell.expose(tissue, pamp, danger, safe, at(i)) for i, (pamp, danger, safe) in enumerate(HAND_STEPS)
    ]
    assert migrated == [False, False, True, False, True]
    assert [(p.mature, p.samples) for p in tissue.presentations] == [(False, 2), (True, 1), (True, 2)]
    assert tissue.mcav() == (pytest.approx(0.6), 5)
    assert [(c.csm, c.k, c.samples) for c in tissue.population] == [(0.0, 0.0, 0), (0.0, 0.0, 0)]


def test_threat_raised_when_mcav_reaches_threshold_with_enough_presentations() -> None:
    cell = dc(population_size=2, migration_min=2, migration_max=4, mcav_threshold=0.6, min_presentations=5)
    store = IntelStore()
    findings = []
    for i, (pamp, danger, safe) in enumerate(HAND_STEPS):
        levels: list[tuple[SignalKind, float]] = [("pamp", pamp), ("danger", danger), ("safe", safe)]
        signals = [signal(A, kind, value, i) for kind, value in levels if value]
        out = cell.observe(flow(i), CellContext(now=at(i), intel=store, signals=signals))
        findings.extend(out.findings)
    [finding] = findings
    assert finding.mcav == 0.6
    assert finding.category == "port_scan"
    assert finding.confidence == 0.3  # 0.6 * min(1, 5 / (2 * 5))
    assert "MCAV 0.60 for source_ip:45.133.1.1: 3 of 5 antigen presentations" in finding.reason
    assert cell.antigen_mcav(A) == 0.6


def test_signals_of_one_antigen_do_not_mature_another() -> None:
    cell = dc(population_size=3, migration_min=1, migration_max=3, min_presentations=2)
    store = IntelStore()
    for i in range(30):
        signals = [signal(A, "danger", 1.0, i), signal(B, "safe", 0.5, i)]
        cell.observe(flow(i), CellContext(now=at(i), intel=store, signals=signals))
    assert cell.antigen_mcav(A) == 1.0
    assert cell.antigen_mcav(B) == 0.0


def test_context_changes_emit_il12_then_il10() -> None:
    cell = dc(population_size=1, migration_min=1, migration_max=1)
    store = IntelStore()
    kinds: list[str] = []
    sequence: list[SignalKind] = ["danger", "danger", "safe", "safe"]
    for i, kind in enumerate(sequence):
        out = cell.observe(flow(i), CellContext(now=at(i), intel=store, signals=[signal(A, kind, 1.0, i)]))
        kinds.extend(c.type for c in out.cytokines)
    assert kinds == ["il12", "il10"]


def test_migration_range_must_be_ordered() -> None:
    with pytest.raises(CellConfigError, match="migration_max must be >= migration_min"):
        Cell.create("dendritic", {"migration_min": 5, "migration_max": 1}, "x")


def test_params_model_defaults_are_documented_values() -> None:
    params = DendriticParams()
    assert (params.pamp_weight, params.safe_weight, params.mcav_threshold) == (2.0, 2.0, 0.6)
