"""A WebSocket client the chat project did not write: Python's `websockets` library.

Usage: python3 ws_client.py ws://HOST:PORT/ws

Every line read from stdin is sent as one text message; every message received is printed
as one line on stdout. When the server closes the connection it prints `#closed CODE` and
exits; at the end of stdin it closes the connection itself.
"""

import asyncio
import os
import sys
import threading

try:  # websockets >= 13
    from websockets.asyncio.client import connect
except ImportError:  # older releases (Debian bookworm has 10.4)
    from websockets import connect


async def main(url):
    loop = asyncio.get_running_loop()
    lines = asyncio.Queue()

    def read_stdin():
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    async with connect(url) as ws:
        print("#open", flush=True)
        # A daemon thread, so that a read blocked on stdin never delays the exit.
        threading.Thread(target=read_stdin, daemon=True).start()

        async def send():
            while (line := await lines.get()) is not None:
                await ws.send(line)
            await ws.close()

        sender = asyncio.create_task(send())
        try:
            async for message in ws:
                print(message, flush=True)
        finally:
            sender.cancel()
        print("#closed", ws.close_code, flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except Exception as err:  # noqa: BLE001 - reported to the test
        print("#error", type(err).__name__, err, flush=True)
    sys.stdout.flush()
    os._exit(0)
