"""A TCP proxy that delays every chunk by a fixed latency, in both directions, preserving order.

Used by the dependency-latency experiment in place of `tc netem` (not available in this kernel):
    python -m immune_chaos.latency_proxy --listen-port 16379 --target-port 26379 --latency-ms 200
Each chunk is forwarded `latency_ms / 2` after it was read on either side, so one request/response
round trip costs `latency_ms` more, as a slow network to the dependency would.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while chunk := await reader.read(65536):
            await queue.put((time.monotonic() + delay_s, chunk))
        await queue.put((time.monotonic() + delay_s, b""))

    async def write() -> None:
        while True:
            due, chunk = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(listen_port: int, target_host: str, target_port: int, latency_ms: float) -> None:
    """Accept on 127.0.0.1:`listen_port` and relay each connection to `target_host`:`target_port`, adding
    `latency_ms` milliseconds per round trip (half each way); runs until SIGTERM or SIGINT.

    A client whose upstream connection fails is closed at once. Raises OSError when `listen_port` cannot
    be bound.
    """
    delay_s = latency_ms / 2000.0

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pipe(client_reader, upstream_writer, delay_s), _pipe(upstream_reader, client_writer, delay_s)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    """Command line: `--listen-port`, `--target-host`, `--target-port`, `--latency-ms` (milliseconds per
    round trip); see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.listen_port, args.target_host, args.target_port, args.latency_ms))


if __name__ == "__main__":
    main()
