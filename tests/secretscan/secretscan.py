#!/usr/bin/python3
"""The secret scan of the test suite (issue 14, "Security, tested").

While the suite runs, every process's argv (/proc/PID/cmdline) and environment
(/proc/PID/environ) is read when it starts (the kernel's process events, proc
connector, NETLINK_CONNECTOR) and again at every poll, and each process's stderr, when
it is a regular file, is kept open and read when the process exits. When the scan is
stopped (SIGTERM), everything seen is searched for every secret the suite handled:

  * what the test authorization server issued (tests/authserver/server.mjs appends each
    access token, refresh token, client secret and service-account private key to the
    file AUTHSERVER_SECRETS names, as JSON lines {"kind", "value"}), and whatever else a
    test appends there;
  * the suite's fixed secrets, read where they are defined (SOURCES below): Dovecot's
    app passwords, the fake refresh token of the fault tests;
  * any PEM private key at all ("-----BEGIN ... PRIVATE KEY-----").

Besides the text as it is, percent-decoded text and base64 runs decoded (an XOAUTH2 or
OAUTHBEARER string carries the token in base64) are searched. The named logs
(--logs-from: one path per line, a directory meaning every file below it, read at the
end) are searched too.

What it cannot see: a process that starts and exits between the exec event and the
scanner's read (about a millisecond), what goes through pipes (a test's captured
output, a mail program's password command), and files a process writes other than
its stderr. A stderr shared with stdout is skipped: stdout is where a credential goes.

Before it reports ready (--ready FILE), it proves it works: a canary process with
made-up secrets in its argv, its environment and its stderr file must be caught by the
same search as the real ones; otherwise it exits with status 2. Exit status after
SIGTERM: 0 nothing found, 1 a secret was found (each finding names the process, pid and
argv[0], where it was and which kind of secret, never the secret), 2 the scan itself
failed. It exits silently (status 3) when the process that started it is gone.

Usage: secretscan.py watch --root REPO --secrets FILE [--ready FILE] [--logs-from FILE]
"""

import argparse
import base64
import bisect
import json
import os
import re
import resource
import secrets as random
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

# Where the suite's fixed secrets are defined: (file under the repository, regex whose
# group 1 is a secret, kind). Each must match at least once, so that a renamed constant
# fails the scan instead of silently shrinking it.
SOURCES = [
    ("tests/mailserver/start.sh", rb"(?m)^[^\s:#]+:\{PLAIN\}(\S+)$", "app password"),
    ("tests/integration/common/fake.rs", rb'pub const RT: &str = "([^"]+)";', "refresh token"),
]

# Secrets shorter than this would match by chance.
MIN_SECRET = 8
PEM_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{24,}={0,2}")

# The proc connector (linux/connector.h, linux/cn_proc.h).
NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33
EVENT_DATA = 16 + 20 + 16  # nlmsghdr, cn_msg, proc_event's what/cpu/timestamp

# A poll as well as the events: catches what an overflow of events lost (ENOBUFS), and
# processes that change their own argv (setproctitle).
POLL_SECONDS = 0.25
# Without the proc connector (not root), polling is all there is.
POLL_SECONDS_ALONE = 0.02


def say(text):
    print(f"secretscan: {text}", file=sys.stderr, flush=True)


class Origin:
    """Where an entry was first seen."""

    __slots__ = ("where", "pid", "argv0", "detail")

    def __init__(self, where, pid, argv0, detail):
        self.where, self.pid, self.argv0, self.detail = where, pid, argv0, detail

    def describe(self):
        what = {
            "argv": f"the arguments ({self.detail})",
            "environment": f"the environment ({self.detail})",
            "log": f"the stderr file {self.detail}",
            "named log": f"the log {self.detail}",
        }[self.where]
        if self.pid is None:
            return what
        return f"{what} of pid {self.pid} ({self.argv0})"


def printable(b):
    return b.decode("utf-8", "replace").replace("\n", "\\n")[:120]


class Scan:
    def __init__(self):
        # Every distinct argument, environment entry and log line seen, with the first
        # place it was seen (a dict keeps memory to what differs).
        self.seen = {}
        self.last = {}  # pid -> hash of (cmdline, environ) last read
        self.logs = {}  # (st_dev, st_ino) -> [fd, offset, pid, argv0, path, lines read]
        self.log_pids = {}  # pid -> [(st_dev, st_ino)]
        self.me = os.getpid()
        self.events = self.polls = self.lost = self.reads = 0

    # -- what processes show --------------------------------------------------------

    def read_process(self, pid):
        if pid == self.me:
            return
        base = f"/proc/{pid}"
        try:
            with open(f"{base}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"{base}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            return  # gone already, or a kernel thread
        self.reads += 1
        key = hash((cmdline, environ))
        if self.last.get(pid) == key:
            return
        self.last[pid] = key
        args = cmdline.split(b"\0")
        argv0 = printable(args[0]) if args and args[0] else f"pid {pid}"
        for i, a in enumerate(args):
            if len(a) >= MIN_SECRET and a not in self.seen:
                self.seen[a] = Origin("argv", pid, argv0, f"argument {i}")
        for e in environ.split(b"\0"):
            if len(e) >= MIN_SECRET and e not in self.seen:
                name = printable(e.split(b"=", 1)[0])
                self.seen[e] = Origin("environment", pid, argv0, f"variable {name}")
        self.track_stderr(pid, argv0)

    def track_stderr(self, pid, argv0):
        try:
            target = os.readlink(f"/proc/{pid}/fd/2")
            if not target.startswith("/") or target.startswith(("/dev/", "/proc/", "/sys/")):
                return
            st = os.stat(f"/proc/{pid}/fd/2")
            if not (st.st_mode & 0o170000 == 0o100000):
                return
            out = os.stat(f"/proc/{pid}/fd/1")
            if (out.st_dev, out.st_ino) == (st.st_dev, st.st_ino):
                return  # stdout carries credentials by design
            key = (st.st_dev, st.st_ino)
            if key not in self.logs:
                fd = os.open(f"/proc/{pid}/fd/2", os.O_RDONLY | os.O_CLOEXEC)
                self.logs[key] = [fd, 0, pid, argv0, target, 0]
            self.log_pids.setdefault(pid, []).append(key)
        except OSError:
            return

    def read_log(self, key):
        entry = self.logs[key]
        fd, offset, pid, argv0, path, n = entry
        chunks = []
        while True:
            try:
                b = os.pread(fd, 1 << 20, offset)
            except OSError:
                break
            if not b:
                break
            chunks.append(b)
            offset += len(b)
        entry[1] = offset
        for line in b"".join(chunks).split(b"\n"):
            n += 1
            if len(line) >= MIN_SECRET and line not in self.seen:
                self.seen[line] = Origin("log", pid, argv0, f"{path} line {n}")
        entry[5] = n

    def exited(self, pid):
        self.last.pop(pid, None)
        for key in self.log_pids.pop(pid, []):
            if key in self.logs:
                self.read_log(key)

    def poll(self):
        self.polls += 1
        for d in os.listdir("/proc"):
            if d.isdigit():
                self.read_process(int(d))

    def read_named_logs(self, listing):
        try:
            with open(listing, encoding="utf-8") as f:
                paths = [p.strip() for p in f if p.strip()]
        except OSError:
            return 0
        files = []
        for p in paths:
            if os.path.isdir(p):
                for top, _, names in os.walk(p):
                    files += [os.path.join(top, n) for n in names]
            elif os.path.isfile(p):
                files.append(p)
        for path in files:
            try:
                if os.path.getsize(path) > 256 << 20:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for n, line in enumerate(data.split(b"\n"), 1):
                if len(line) >= MIN_SECRET and line not in self.seen:
                    self.seen[line] = Origin("named log", None, None, f"{path} line {n}")
        return len(files)

    # -- the search -----------------------------------------------------------------

    def find(self, needles):
        """Each (kind, Origin) where a needle occurs, the needle itself never kept."""
        texts, origins = [], []
        for text, origin in self.seen.items():
            for variant in variants(text):
                texts.append(variant)
                origins.append(origin)
        starts, pos = [], 0
        for t in texts:
            starts.append(pos)
            pos += len(t) + 1
        big = b"\0".join(texts)
        found = {}
        for needle, kind in needles.items():
            i = big.find(needle)
            while i != -1:
                o = origins[bisect.bisect_right(starts, i) - 1]
                found.setdefault((kind, id(o)), (kind, o))
                i = big.find(needle, i + 1)
        for text, origin in self.seen.items():
            if PEM_KEY.search(text):
                found.setdefault(("PEM private key", id(origin)), ("a PEM private key", origin))
        return list(found.values())


def variants(text):
    """The text, percent-decoded, and its base64 runs decoded."""
    out = [text]
    if b"%" in text:
        decoded = urllib.parse.unquote_to_bytes(text.replace(b"+", b" "))
        if decoded != text:
            out.append(decoded)
    for m in BASE64_RUN.finditer(text):
        run = m.group().rstrip(b"=").replace(b"+", b"-").replace(b"/", b"_")
        try:
            out.append(base64.urlsafe_b64decode(run + b"=" * (-len(run) % 4)))
        except ValueError:
            pass
    return out


def needles_of(kind, value):
    """What to look for: a PEM key's base64 lines, anything else as it is."""
    value = value.encode() if isinstance(value, str) else value
    if b"-----BEGIN" in value:
        lines = [line.strip() for line in value.split(b"\n")]
        return [line for line in lines if len(line) >= 32 and not line.startswith(b"-----")]
    return [value] if len(value) >= MIN_SECRET else []


def load_secrets(root, secrets_file):
    needles = {}
    counts = {}
    problems = []

    def add(kind, value):
        for n in needles_of(kind, value):
            if n not in needles:
                needles[n] = kind
                counts[kind] = counts.get(kind, 0) + 1

    for path, pattern, kind in SOURCES:
        try:
            with open(os.path.join(root, path), "rb") as f:
                found = re.findall(pattern, f.read())
        except OSError as e:
            problems.append(f"cannot read {path}: {e.strerror}")
            continue
        if not found:
            problems.append(f"no {kind} found in {path}: the pattern in SOURCES no longer matches")
        for value in found:
            add(kind, value)
    try:
        with open(secrets_file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    record = json.loads(line)
                    add(str(record["kind"]), record["value"])
                except (ValueError, KeyError, TypeError):
                    problems.append(f"{secrets_file} line {n} is not a {{\"kind\", \"value\"}} JSON line")
    except OSError as e:
        problems.append(f"cannot read {secrets_file}: {e.strerror}")
    return needles, counts, problems


class Events:
    """The kernel's process events: exec and exit, as they happen."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, CN_IDX_PROC))
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        self.sock.send(struct.pack("=IHHII", 16 + len(cn), NLMSG_DONE, 0, 0, 0) + cn)
        self.sock.setblocking(False)

    def drain(self, scan):
        """Handles what arrived; False when events were lost (then poll)."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return True
            except OSError:  # ENOBUFS: the kernel dropped events
                scan.lost += 1
                return False
            off = 0
            while off + 16 <= len(data):
                length = struct.unpack_from("=I", data, off)[0]
                if length < 16:
                    break
                msg = data[off:off + length]
                off += (length + 3) & ~3
                if len(msg) < EVENT_DATA + 8:
                    continue
                what = struct.unpack_from("=I", msg, 36)[0]
                pid, tgid = struct.unpack_from("=II", msg, EVENT_DATA)
                if what == PROC_EVENT_EXEC:
                    scan.events += 1
                    scan.read_process(tgid)
                elif what == PROC_EVENT_EXIT and pid == tgid:
                    scan.exited(tgid)


def canary_check(scan, events):
    """A process with made-up secrets in its argv, environment and stderr file: each
    must be found by the search the real secrets go through."""
    canary = {w: f"secretscan-canary-{w}-{random.token_hex(16)}" for w in ("argv", "env", "log")}
    log = tempfile.NamedTemporaryFile(prefix="secretscan-canary.", suffix=".log")
    started = time.monotonic()
    child = subprocess.Popen(
        ["/bin/sh", "-c", 'printf "%s\\n" "$CANARY_LOG" >&2; sleep 0.3', "sh", canary["argv"]],
        env={"CANARY_ENV": canary["env"], "CANARY_LOG": canary["log"], "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
    )
    needles = {canary["argv"].encode(): "argv", canary["env"].encode(): "environment",
               canary["log"].encode(): "log"}
    caught = set()
    deadline = started + 10
    while time.monotonic() < deadline and caught != {"argv", "environment", "log"}:
        if events:
            select.select([events.sock], [], [], 0.05)
            events.drain(scan)
        else:
            scan.poll()
            time.sleep(POLL_SECONDS_ALONE)
        if child.poll() is not None:
            scan.exited(child.pid)
        caught = {kind for kind, o in scan.find(needles) if o.where == kind}
    child.wait()
    log.close()
    # The canary's entries are not the suite's.
    for text in [t for t, o in scan.seen.items() if o.pid == child.pid]:
        del scan.seen[text]
    return caught, time.monotonic() - started


def watch(args):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    parent = os.getppid()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    scan = Scan()
    try:
        events = Events()
    except OSError as e:
        events = None
        say(f"no process events ({e.strerror}): polling every {POLL_SECONDS_ALONE * 1000:.0f} ms instead")
    caught, took = canary_check(scan, events)
    if caught != {"argv", "environment", "log"}:
        missed = sorted({"argv", "environment", "log"} - caught)
        say(f"self-check FAILED: the canary's secret in {', '.join(missed)} was not found; the scan would see nothing")
        return 2
    say(f"self-check passed: the canary's secrets in argv, environment and stderr file found in {took * 1000:.0f} ms")
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(f"{os.getpid()}\n")
    period = POLL_SECONDS if events else POLL_SECONDS_ALONE
    next_poll = 0.0
    while not stop:
        if os.getppid() != parent:
            return 3
        now = time.monotonic()
        if now >= next_poll:
            scan.poll()
            next_poll = now + period
        if events:
            try:
                select.select([events.sock], [], [], max(0.0, next_poll - time.monotonic()))
            except InterruptedError:
                continue
            if not events.drain(scan):
                next_poll = 0.0
        else:
            time.sleep(max(0.0, next_poll - time.monotonic()))
    return verdict(scan, args)


def verdict(scan, args):
    scan.poll()
    for key in list(scan.logs):
        scan.read_log(key)
    named = scan.read_named_logs(args.logs_from) if args.logs_from else 0
    started = time.monotonic()
    needles, counts, problems = load_secrets(args.root, args.secrets)
    found = scan.find(needles)
    took = time.monotonic() - started
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
    say(f"{scan.events} exec events, {scan.polls} polls, {scan.lost} overflows; {scan.reads} reads of "
        f"/proc; {len(scan.seen)} distinct arguments, environment entries and log lines, "
        f"{len(scan.logs)} stderr files, {named} named logs")
    say(f"searched for {len(needles)} secrets ({kinds}) in {took:.1f} s; "
        f"the scan's CPU time: {cpu.ru_utime + cpu.ru_stime:.1f} s")
    for p in problems:
        say(f"ERROR: {p}")
    for kind, origin in sorted(found, key=lambda f: (f[0], f[1].describe())):
        article = "an" if kind[0] in "aeiou" else "a"
        say(f"FOUND {kind if kind.startswith('a ') else article + ' ' + kind} in {origin.describe()}")
    if found:
        return 1
    if problems or not needles:
        return 2
    say("no secret found")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("watch", help="scan until SIGTERM, then report")
    w.add_argument("--root", required=True, help="the repository (for the fixed secrets)")
    w.add_argument("--secrets", required=True, help="the JSON lines the suite's servers append")
    w.add_argument("--ready", help="written once the self-check passed")
    w.add_argument("--logs-from", help="a file listing logs to search at the end")
    args = p.parse_args()
    sys.exit(watch(args))


if __name__ == "__main__":
    main()
