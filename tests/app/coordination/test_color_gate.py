"""The active-colour row on both store backends: no row = live, another colour = idle, a switch flips it."""

from __future__ import annotations

import pytest
from immune_core.coordination.color import ColorGate, read_active_color, set_active_color
from immune_core.storage.database import Database


async def test_gate_follows_the_active_colour(database: Database) -> None:
    blue = ColorGate(database, "blue", refresh_s=0.0)
    green = ColorGate(database, "green", refresh_s=0.0)
    assert await read_active_color(database) is None
    assert await blue.is_live() and await green.is_live()  # no blue/green yet: every colour is live
    await set_active_color(database, "blue")
    assert await blue.is_live() and not await green.is_live()
    await set_active_color(database, "green")  # the switch
    assert await read_active_color(database) == "green"
    assert not await blue.is_live() and await green.is_live()


async def test_every_answer_is_observed(database: Database) -> None:
    """What the runtime's `immune_deployment_live` gauge is set from: each answer, idle ones too."""
    seen: list[bool] = []
    green = ColorGate(database, "green", refresh_s=0.0, observe=seen.append)
    await set_active_color(database, "blue")
    assert not await green.is_live()
    await set_active_color(database, "green")
    assert await green.is_live()
    assert seen == [False, True]


async def test_a_bad_colour_name_changes_nothing(database: Database) -> None:
    await set_active_color(database, "blue")
    for bad in ("", "blue; DROP TABLE leases", "gr een"):
        with pytest.raises(ValueError, match="not a colour name"):
            await set_active_color(database, bad)
    assert await read_active_color(database) == "blue"


@pytest.mark.integration
def test_activate_command_writes_the_switch(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from immune_core.cli import main

    monkeypatch.setenv("IMMUNE_DATABASE_URL", pg_schema_url)
    assert main(["activate", "blue"]) == 0
    assert main(["activate", "green"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["active colour: (none: every colour live) -> blue", "active colour: blue -> green"]
