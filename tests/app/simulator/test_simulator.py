from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from immune_core.events.models import parse_event
from immune_core.simulator import MIXED_ATTACKS, SCENARIOS, generate


def test_same_seed_same_events_and_different_seed_different_events() -> None:
    assert generate("mixed", 4) == generate("mixed", 4)
    assert generate("mixed", 4) != generate("mixed", 5)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_event_is_valid_sorted_and_labelled(scenario: str) -> None:
    events = generate(scenario, 1)
    stamps = [parse_event(labelled.event).timestamp for labelled in events]
    assert stamps == sorted(stamps)
    labels = Counter(labelled.label for labelled in events)
    if scenario == "benign":
        assert set(labels) == {None}
    elif scenario == "mixed":
        assert set(labels) - {None} == set(MIXED_ATTACKS)
    else:
        assert set(labels) - {None} == {scenario}
    for labelled in events:
        assert (labelled.label is None) == (labelled.antigen is None)


def test_start_time_and_duration_are_honoured() -> None:
    start = datetime(2030, 6, 1, tzinfo=UTC)
    events = generate("benign", 0, start=start, duration_s=900)
    # parse_event refuses timestamps ahead of its clock: judge these future events against their own time.
    first = parse_event(events[0].event, now=start).timestamp
    last = parse_event(events[-1].event, now=start + timedelta(seconds=900)).timestamp
    assert start <= first and (last - start).total_seconds() <= 900


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "ddos"}, "unknown scenario 'ddos'"),
        ({"scenario": "benign", "duration_s": 60}, "at least 600 s"),
        ({"scenario": "benign", "start": datetime(2030, 1, 1)}, "timezone-aware"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(seed=0, **kwargs)


def test_the_cli_lists_the_scenarios_and_wants_one_to_simulate(capsys: pytest.CaptureFixture[str]) -> None:
    from immune_core.cli import main
    from immune_core.simulator.scenarios import SCENARIOS

    assert main(["simulate", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(SCENARIOS)
    assert main(["simulate"]) == 2
    assert "--scenario is required" in capsys.readouterr().err
