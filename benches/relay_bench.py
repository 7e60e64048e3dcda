"""The SMTP relay's figures for scripts/bench (section 6): the latency one relayed
session adds to a direct one (msmtp both ways, paired and alternating), and the
messages per second of 100 concurrent sessions through the relay, each message
checked to arrive exactly once. Arguments: the msmtp rc files (direct, relay), the
sender, the relay's port and password, the sink directory, the pairs."""

import os, smtplib, statistics, subprocess, sys, threading, time

direct_rc, relay_rc, sender, port, password, sink, pairs = sys.argv[1:8]
port, pairs = int(port), int(pairs)
run_tag = f"bench-{os.getpid()}-{int(time.time())}"


def msmtp(rc, subject):
    msg = f"From: {sender}\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\r\nbench\r\n"
    t = time.perf_counter()
    p = subprocess.run(["msmtp", f"--file={rc}", "-a", "b", "rcpt@example.test"],
                       input=msg.encode(), capture_output=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"msmtp via {rc} failed: {p.stderr.decode()}")
    return dt


for i in range(5):
    msmtp(direct_rc, f"{run_tag} warm d{i}")
    msmtp(relay_rc, f"{run_tag} warm r{i}")
added, ratios, direct_t, relay_t = [], [], [], []
for i in range(pairs):
    order = [(direct_rc, "d"), (relay_rc, "r")]
    if i % 2:
        order.reverse()
    t = {}
    for rc, k in order:
        t[k] = msmtp(rc, f"{run_tag} pair {i} {k}")
    added.append((t["r"] - t["d"]) * 1000)
    ratios.append(t["r"] / t["d"])
    direct_t.append(t["d"] * 1000)
    relay_t.append(t["r"] * 1000)

errors = []
def send(i):
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=120)
        s.login(sender, password)
        s.sendmail(sender, ["rcpt@example.test"],
                   f"From: {sender}\r\nTo: rcpt@example.test\r\nSubject: {run_tag} load #{i}#\r\n\r\nload {i}\r\n")
        s.quit()
    except Exception as e:
        errors.append(f"{i}: {e!r}")

threads = [threading.Thread(target=send, args=(i,)) for i in range(100)]
t0 = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - t0
if errors:
    sys.exit("concurrent sessions failed:\n" + "\n".join(errors[:5]))

# Each of the 100 messages in the sink exactly once.
deadline = time.time() + 60
while True:
    counts = [0] * 100
    for name in os.listdir(sink):
        if not name.endswith(".eml"):
            continue
        with open(os.path.join(sink, name), "rb") as f:
            text = f.read().decode("utf-8", "replace")
        for i in range(100):
            if f"Subject: {run_tag} load #{i}#" in text:
                counts[i] += 1
    if all(c == 1 for c in counts) or time.time() > deadline or any(c > 1 for c in counts):
        break
    time.sleep(0.2)
once = sum(1 for c in counts if c == 1)
twice = sum(1 for c in counts if c > 1)

q = statistics.quantiles
print(f"added {statistics.median(added):.1f} {q(added, n=10)[0]:.1f} {q(added, n=10)[-1]:.1f}")
print(f"ratio {statistics.median(ratios):.2f}")
print(f"direct {statistics.median(direct_t):.1f}")
print(f"relay {statistics.median(relay_t):.1f}")
print(f"load {100 / wall:.1f} {wall:.2f} {once} {twice}")
