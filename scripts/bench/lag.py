#!/usr/bin/env python3
"""End-to-end lag of `serve --ship` into JetStream under a steady rate (a benchmark, not a test).

usage: lag.py SERVE_PORT NATS_PORT STREAM RATE SECONDS

POSTs presence notifications to `ringhook serve` on SERVE_PORT at RATE per second for SECONDS
(over 8 keep-alive connections, one request in flight on each), each with a uuid that carries
its send time, while a push consumer on STREAM (created here on NATS_PORT, delivering only new
messages, no acks) receives what the shipper published. The lag of an event is from the moment
its POST was sent to the moment the stream delivered it: the receiver's sync, the shipper's
poll, the publish and the stream's own store and sync. Prints the achieved rate, how many
arrived, and lag p50, p99 and max; exits 1 if an answer is not 200 or events are missing
10 s after the last POST.
"""
import json
import os
import selectors
import socket
import sys
import threading
import time

serve_port, nats_port, stream = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rate, seconds = float(sys.argv[4]), float(sys.argv[5])
template = open(os.environ["BENCH_SAMPLE"], "rb").read()
token = os.environ.get("BENCH_TOKEN", "bench-token").encode()
old = b"045b81dc-9f73-4864-84de-08aa6324a7f5"
CONNS = 8

# --- the consumer ---
nats = socket.create_connection(("127.0.0.1", nats_port))
nats.settimeout(10)
buf = b""


def line():
    global buf
    while b"\r\n" not in buf:
        chunk = nats.recv(1 << 16)
        if not chunk:
            sys.exit("lag: nats-server closed the connection")
        buf += chunk
    l, buf = buf.split(b"\r\n", 1)
    return l


def payload(n):
    global buf
    while len(buf) < n + 2:
        chunk = nats.recv(1 << 16)
        if not chunk:
            sys.exit("lag: nats-server closed the connection")
        buf += chunk
    p, buf = buf[:n], buf[n + 2:]
    return p


line()  # INFO
cfg = {"stream_name": stream, "config": {"deliver_subject": "lag.deliver", "deliver_policy": "new",
                                          "ack_policy": "none", "max_ack_pending": -1}}
req = json.dumps(cfg).encode()
nats.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB lag.deliver 2\r\nSUB _lag.r 1\r\n'
             b"PUB $JS.API.CONSUMER.CREATE.%s _lag.r %d\r\n%s\r\n" % (stream.encode(), len(req), req))
while True:
    l = line()
    if l.startswith(b"MSG _lag.r"):
        answer = payload(int(l.split()[-1]))
        if b'"error"' in answer:
            sys.exit("lag: consumer create failed: %r" % answer)
        break
    if l == b"PING":
        nats.sendall(b"PONG\r\n")

lags = []
seen = set()
arrived = threading.Event()
expected = [None]


def consume():
    nats.settimeout(None)
    while True:
        l = line()
        if l == b"PING":
            nats.sendall(b"PONG\r\n")
            continue
        parts = l.split()
        if parts[:1] == [b"HMSG"]:
            hlen, total = int(parts[-2]), int(parts[-1])
            data = payload(total)[hlen:]
        elif parts[:1] == [b"MSG"]:
            data = payload(int(parts[-1]))
        else:
            continue
        now = time.monotonic_ns()
        i = data.find(b'"lag-')
        if i < 0:
            continue
        key = data[i + 5:data.index(b'"', i + 5)]
        if key not in seen:
            seen.add(key)
            lags.append((now - int(key.split(b"-")[0])) / 1e6)
        if expected[0] is not None and len(seen) >= expected[0]:
            arrived.set()


threading.Thread(target=consume, daemon=True).start()

# --- the steady load ---
sel = selectors.DefaultSelector()
conns = []
for _ in range(CONNS):
    s = socket.create_connection(("127.0.0.1", serve_port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conns.append(s)
idle = list(conns)
bufs = {s: b"" for s in conns}
for s in conns:
    sel.register(s, selectors.EVENT_READ)
interval = 1e9 / rate
start = time.monotonic_ns()
end = start + int(seconds * 1e9)
sent = 0
late = 0
bad = 0
n = 0
while True:
    now = time.monotonic_ns()
    due = start + int(sent * interval)
    if due >= end and len(idle) == CONNS:
        break
    if due < end and due <= now and idle:
        s = idle.pop()
        t = time.monotonic_ns()
        n += 1
        body = template.replace(old, b"lag-%d-%d" % (t, n))
        s.sendall(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Verification-Token: " + token + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        sent += 1
        if now - due > 5e6:
            late += 1
        continue
    wait = max(0, (due - now) / 1e9) if (due < end and idle) else 0.05
    for key, _ in sel.select(timeout=wait):
        s = key.fileobj
        chunk = s.recv(1 << 16)
        if not chunk:
            sys.exit("lag: the receiver closed a connection")
        bufs[s] += chunk
        if b"\r\n\r\n" in bufs[s]:
            head, rest = bufs[s].split(b"\r\n\r\n", 1)
            length = 0
            for h in head.split(b"\r\n")[1:]:
                k, _, v = h.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            if len(rest) >= length:
                if not head.startswith(b"HTTP/1.1 200"):
                    bad += 1
                bufs[s] = rest[length:]
                idle.append(s)
elapsed = (time.monotonic_ns() - start) / 1e9
expected[0] = sent
if len(seen) < sent:
    arrived.wait(10)
got = sorted(lags)


def pct(p):
    return got[min(len(got) - 1, int(len(got) * p))] if got else float("nan")


print("lag: %d events POSTed in %.1f s (%.0f/s, %d sent over 5 ms late), %d not 200, %d arrived; "
      "lag p50 %.1f ms, p99 %.1f ms, max %.1f ms"
      % (sent, elapsed, sent / elapsed, late, bad, len(seen), pct(0.5), pct(0.99), got[-1] if got else float("nan")))
sys.exit(1 if bad or len(seen) < sent else 0)
