#!/usr/bin/python3
"""A tiny SMTP sink for the test mail server: Dovecot's submission service relays every
message it accepts to this server, which stores each one as a file, so a test can check
that it arrived.

Usage: sink.py DIR [--host 127.0.0.1] [--port 0] [--ready FILE]

Each message becomes DIR/<time>-<pid>-<n>.eml: two envelope header lines
(`X-Sink-Mail-From: <...>` and `X-Sink-Rcpt-To: <...>, <...>`) followed by the message
exactly as received (CRLF line ends). Files are written under a hidden name and renamed,
so a reader never sees a half-written message. Once listening, the sink writes
`READY <port>` to the --ready file (or stdout) and runs until killed.

Needs Debian's python3-aiosmtpd (run it with /usr/bin/python3, not a pyenv python).
"""

import argparse
import asyncio
import itertools
import os
import signal
import sys
import time

from aiosmtpd.smtp import SMTP


class Store:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        head = "X-Sink-Mail-From: <{}>\r\nX-Sink-Rcpt-To: {}\r\n".format(
            envelope.mail_from or "",
            ", ".join("<{}>".format(r) for r in envelope.rcpt_tos),
        ).encode("utf-8", "replace")
        body = envelope.original_content or envelope.content or b""
        if isinstance(body, str):
            body = body.encode("utf-8", "replace")
        name = "{:.6f}-{}-{}.eml".format(time.time(), os.getpid(), next(self.counter))
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head + body)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.directory, name))
        print("stored {} from <{}> to {}".format(name, envelope.mail_from, envelope.rcpt_tos),
              file=sys.stderr, flush=True)
        return "250 Ok: stored as " + name


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ready")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    store = Store(a.dir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(store, hostname="sink.localhost", data_size_limit=50 * 1024 * 1024),
        host=a.host,
        port=a.port,
    )
    port = server.sockets[0].getsockname()[1]
    line = "READY {}\n".format(port)
    if a.ready:
        with open(a.ready, "w") as f:
            f.write(line)
    else:
        sys.stdout.write(line)
        sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
