"""Blue/green: the idle colour neither consumes input nor leads; after the switch the new colour does both.

Real PostgreSQL (the lease and `deployment_state`) and real Kafka (the consumer group, asked through the
broker's own DescribeGroups) of the shared services; each replica is a full service in this process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from fastapi.testclient import TestClient
from immune_core.coordination.color import set_active_color
from immune_core.settings import Settings
from immune_core.storage.factory import open_database
from immune_core.storage.migrations import migrate
from tenacity import retry, retry_if_exception, stop_after_delay, wait_fixed

from tests.app.support import query_postgres, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# A new group's coordinator is not known at once on a fresh broker (__consumer_offsets is created on first
# use): retriable errors by Kafka's own classification are asked again, anything else fails the test.
@retry(
    retry=retry_if_exception(lambda error: isinstance(error, KafkaError) and error.retriable),
    stop=stop_after_delay(30),
    wait=wait_fixed(0.5),
    reraise=True,
)
def group_members(bootstrap: str, group: str) -> set[str]:
    """Client ids of the group's current members, as the group coordinator reports them."""

    async def run() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        (described,) = response.groups
        members = described[-1] if not isinstance(described[-1], int) else described[-2]
        return {str(member[1]) for member in members}

    return asyncio.run(run())


def lease_holder(pg_url: str) -> tuple[str, int] | None:
    rows = query_postgres(
        pg_url,
        "SELECT holder, token FROM leases WHERE name = 'leader' AND expires_at > "
        "extract(epoch FROM clock_timestamp())",
    )
    return (str(rows[0]["holder"]), int(rows[0]["token"])) if rows else None


def activate(pg_url: str, color: str) -> None:
    async def run() -> None:
        database = open_database(Settings(database_url=pg_url))
        await database.connect()
        try:
            await migrate(database)
            await set_active_color(database, color)
        finally:
            await database.close()

    asyncio.run(run())


def test_idle_colour_gets_no_partitions_and_never_leads_until_it_is_switched_in(
    pg_schema_url: str,
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_client: Callable[[Settings], TestClient],  # after pg_schema_url: replicas stop before the drop
    tmp_path: Path,
) -> None:
    group = f"idle-colour-{uuid.uuid4().hex[:8]}"
    common = {
        "database_url": pg_schema_url,
        "kafka_bootstrap_servers": kafka_bootstrap,
        "kafka_group_id": group,
        "active_color_refresh_s": 0.2,
    }
    activate(pg_schema_url, "blue")  # the last switch made blue live
    blue = start_client(
        make_settings(instance_id="blue-1", deployment_color="blue", data_dir=tmp_path / "blue", **common)
    )
    wait_for(lambda: group_members(kafka_bootstrap, group) == {"immune-core-blue-1"}, what="blue consumes")
    held = wait_for(
        lambda: (h := lease_holder(pg_schema_url)) and h[0].startswith("blue-1/") and h, what="blue leads"
    )

    green = start_client(
        make_settings(instance_id="green-1", deployment_color="green", data_dir=tmp_path / "green", **common)
    )
    green_runtime = green.app.state.runtime
    # Bad case: an idle replica beside the live one, watched for a window longer than a group join
    # (heartbeat 3 s + rebalance) and many campaign rounds (renew 0.2 s); a window to observe a "never",
    # not a speed bound. Green joins no group and holds no lease.
    # What is asserted is "green never": on a starved machine blue may miss a heartbeat or a renewal
    # for a moment (group empty, lease lapsed), which is exactly when an ungated green would step in.
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        assert group_members(kafka_bootstrap, group) <= {"immune-core-blue-1"}
        holder = lease_holder(pg_schema_url)
        assert holder is None or holder[0].startswith("blue-1/"), holder
        assert not green_runtime.elector.is_leader
        time.sleep(0.3)
    assert green_runtime.color_gate._live is False  # it read the active colour and stood aside
    # ... and says so on /metrics, where an operator (or tests/cluster/test_promote.py) sees it.
    assert live_gauge(green) == 0.0 and live_gauge(blue) == 1.0

    # Bad case 2: the live colour's leader goes away (its elector stops and releases the lease). An
    # ungated idle replica would take the lease at its next round; a gated one leaves it to the live colour.
    blue_runtime = blue.app.state.runtime
    assert blue.portal is not None
    blue.portal.call(blue_runtime.elector.stop)
    deadline = time.monotonic() + 2 * green_runtime.settings.lease_ttl_s
    while time.monotonic() < deadline:
        assert lease_holder(pg_schema_url) is None
        assert not green_runtime.elector.is_leader
        time.sleep(0.3)
    blue.portal.call(blue_runtime.elector.start)
    held = wait_for(
        lambda: (h := lease_holder(pg_schema_url)) and h[0].startswith("blue-1/") and h,
        what="blue leads again",
    )

    # Good case: the switch. Green joins and leads under a larger fencing token; blue leaves and steps down.
    activate(pg_schema_url, "green")
    wait_for(
        lambda: group_members(kafka_bootstrap, group) == {"immune-core-green-1"},
        what="only green consumes after the switch",
    )
    after = wait_for(
        lambda: (h := lease_holder(pg_schema_url)) and h[0].startswith("green-1/") and h,
        what="green leads after the switch",
    )
    assert after[1] > held[1]
    wait_for(lambda: not blue_runtime.elector.is_leader, what="blue stepped down")
    assert green_runtime.elector.is_leader
    wait_for(
        lambda: live_gauge(green) == 1.0 and live_gauge(blue) == 0.0, what="the gauges follow the switch"
    )


def live_gauge(client: TestClient) -> float:
    """The replica's `immune_deployment_live` from its own /metrics."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("immune_deployment_live "):
            return float(line.split()[1])
    raise AssertionError("immune_deployment_live is not on /metrics")
