"""``immune-core``: serve, migrate, activate, simulate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from immune_core import __version__


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from immune_core.api.app import create_app
    from immune_core.settings import Settings

    settings = Settings()
    app = create_app(settings, tune_gc=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,  # our structlog configuration already owns the root logger
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
        ws_max_size=65_536,
    )
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from immune_core.observability.logging import configure_logging, get_logger
    from immune_core.settings import Settings
    from immune_core.storage.factory import open_database
    from immune_core.storage.migrations import migrate

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    log = get_logger("immune_core.migrate")

    async def run() -> list[int]:
        database = open_database(settings)
        await database.connect()
        try:
            return await migrate(database)
        finally:
            await database.close()

    applied = asyncio.run(run())
    log.info("migrations_done", applied=applied)
    return 0


def _activate(args: argparse.Namespace) -> int:
    """The blue/green switch's service side: make ``args.color`` the colour that consumes and leads."""
    from immune_core.coordination.color import read_active_color, set_active_color
    from immune_core.settings import Settings
    from immune_core.storage.factory import open_database
    from immune_core.storage.migrations import migrate

    async def run() -> tuple[str | None, str | None]:
        database = open_database(Settings())
        await database.connect()
        try:
            await migrate(database)
            before = await read_active_color(database)
            await set_active_color(database, args.color)
            return before, await read_active_color(database)
        finally:
            await database.close()

    before, after = asyncio.run(run())
    print(f"active colour: {before or '(none: every colour live)'} -> {after}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    if args.list:
        from immune_core.simulator.scenarios import SCENARIOS

        for name, description in SCENARIOS.items():
            print(f"{name:<22} {description}")
        return 0
    if not args.scenario:
        print("immune-core simulate: --scenario is required (see --list)", file=sys.stderr)
        return 2
    from immune_core.simulation_cli import run_simulation

    return run_simulation(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="immune-core",
        description="Active Immune Core service. Configuration comes from IMMUNE_* environment variables "
        "(see docs/service.md); with no IMMUNE_DATABASE_URL/REDIS_URL/KAFKA_BOOTSTRAP_SERVERS it runs "
        "embedded.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP/WebSocket service and its background work",
        description="Run the REST + WebSocket API (uvicorn) with the Kafka consumers, the outbox relay and "
        "the leader's duties. Configuration comes from IMMUNE_* environment variables "
        "(docs/service.md).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies trusted for X-Forwarded-* (default 127.0.0.1)",
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations and exit")
    migrate.set_defaults(handler=_migrate)

    activate = commands.add_parser(
        "activate", help="make COLOR the live colour: only its replicas consume input and take the lease"
    )
    activate.add_argument("color", help="deployment colour (IMMUNE_DEPLOYMENT_COLOR of its replicas)")
    activate.set_defaults(handler=_activate)

    simulate = commands.add_parser("simulate", help="generate labelled, seeded traffic for a scenario")
    simulate.add_argument("--scenario", help="scenario name (see --list)")
    simulate.add_argument("--list", action="store_true", help="print the scenarios, one per line, and exit")
    simulate.add_argument(
        "--seed", type=int, default=7, help="random seed: the same seed gives the same events (default 7)"
    )
    simulate.add_argument("--output", default=None, help="write JSON lines to FILE ('-' for stdout)")
    simulate.add_argument(
        "--target", default=None, help="send to a service URL (http://host:port[/prefix]) or 'kafka'"
    )
    simulate.add_argument(
        "--token", default=None, help="bearer token for --target URL (default: IMMUNE_API_TOKENS)"
    )
    simulate.add_argument(
        "--batch-size", type=int, default=100, help="events per POST to a --target URL (default 100)"
    )
    simulate.add_argument("--labels", action="store_true", help="include the ground-truth label in --output")
    simulate.set_defaults(handler=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
