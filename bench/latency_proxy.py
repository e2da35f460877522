#!/usr/bin/env python3
"""A TCP proxy that adds a fixed round-trip delay per request (bench only).

    latency_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS

Listens on 127.0.0.1:LISTEN_PORT and forwards each connection to
127.0.0.1:UPSTREAM_PORT. Whenever the client starts sending after it was
quiet (a new HTTP request on a kept-alive connection, or the first one), the
data is held for DELAY_MS before it is forwarded: one round trip per request,
as to an object store in the same region (S3's first-byte latency is tens of
milliseconds). Bandwidth is not limited. Stops on SIGTERM.
"""
import asyncio
import signal
import sys
import time

GAP = 0.002  # seconds of client silence after which data counts as a new request


async def pump(reader, writer, delay):
    last = 0.0
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            now = time.monotonic()
            if delay and now - last > GAP:
                await asyncio.sleep(delay)
            last = time.monotonic()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(creader, cwriter, upstream, delay):
    try:
        ureader, uwriter = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        cwriter.close()
        return
    await asyncio.gather(pump(creader, uwriter, delay), pump(ureader, cwriter, 0))


async def main():
    listen, upstream, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream, delay_ms / 1000.0), "127.0.0.1", listen)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
