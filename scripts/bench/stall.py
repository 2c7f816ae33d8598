#!/usr/bin/env python3
"""Benchmark (not a test): what serve answers while a sync is stuck.

    python3 scripts/bench/stall.py RINGHOOK SLOW_DISK [DELAY_MS] [STALLS]

Mounts examples/slow_disk.rs (every fsync/fdatasync takes DELAY_MS, 2000 by default) on a
temporary directory, runs `RINGHOOK serve` with its log there, and STALLS times (3 by default):
sends one notification, waits until /metrics shows the sync in flight, then sends handshakes,
GET /health and GET /metrics one after another (each on a new connection) until the
notification's answer arrives. Prints p50/p99/max per kind over the requests answered while a
sync was in flight, and the notification's own latency (it must not come before its sync).
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))


def free_port():
    return int(subprocess.check_output([sys.executable, os.path.join(here, "freeport.py")]))


def request(port, raw):
    """Sends raw, reads one whole answer; returns (status, body, seconds)."""
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"content-length: *(\d+)", head, re.I)
        want = int(m.group(1)) if m else 0
        while len(body) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(head.split()[1]), body, time.perf_counter() - t


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] * 1000


def main():
    binary, slow_disk = sys.argv[1], sys.argv[2]
    delay = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    stalls = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    work = tempfile.mkdtemp()
    mnt = os.path.join(work, "disk")
    os.mkdir(mnt)
    disk = subprocess.Popen([slow_disk, mnt, f"{delay}ms"], stderr=subprocess.PIPE, text=True)
    assert "mounted" in disk.stderr.readline()
    port = free_port()
    env = dict(os.environ, WEBHOOK_VERIFICATION_TOKEN="bench-token")
    serve = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--log-file", f"{mnt}/events.jsonl",
         "--health-path", "/health", "--metrics-path", "/metrics"],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        while "listening on" not in serve.stderr.readline():
            pass
        lat = {"handshake": [], "health": [], "metrics": []}
        statuses = {k: set() for k in lat}
        notif = []
        for i in range(stalls):
            body = f'{{"uuid":"stall-{i}-{time.time()}","event":"/x","body":{{}}}}'.encode()
            raw = (f"POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: bench-token\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            n = socket.create_connection(("127.0.0.1", port), timeout=30)
            t0 = time.perf_counter()
            n.sendall(raw)
            n.setblocking(False)
            # A binary without the family (before the disk thread): the first scrape's time.
            legacy = False
            while True:
                _, scrape, took = request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                if b"ringhook_log_sync_in_flight 1" in scrape:
                    break
                if b"ringhook_log_sync_in_flight" not in scrape:
                    # Sent while the sync ran: answered only after it.
                    legacy = True
                    lat["metrics"].append(took)
                    break
            answered = False
            while not answered:
                for kind, raw2 in (
                    ("handshake", b"POST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: t\r\n"
                                  b"Content-Length: 0\r\n\r\n"),
                    ("health", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
                    ("metrics", b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
                ):
                    status, _, took = request(port, raw2)
                    try:
                        answered = bool(n.recv(4096))
                    except BlockingIOError:
                        answered = False
                    if answered and not legacy:
                        break  # this one may have raced the sync's end: not counted
                    if answered:  # the loop was in fdatasync: count the first, then stop
                        lat[kind].append(took)
                        statuses[kind].add(status)
                        break
                    lat[kind].append(took)
                    statuses[kind].add(status)
            notif.append(time.perf_counter() - t0)
            n.close()
        print(f"slow disk {delay} ms per sync, {stalls} stalls; answered while a sync was stuck:")
        print("| request | n | p50 | p99 | max | statuses |")
        print("|---|---|---|---|---|---|")
        for kind, xs in lat.items():
            if xs:
                print(f"| {kind} | {len(xs)} | {pct(xs, 50):.2f} ms | {pct(xs, 99):.2f} ms | "
                      f"{max(xs) * 1000:.2f} ms | {sorted(statuses[kind])} |")
        print(f"notification answered after {', '.join(f'{x * 1000:.0f} ms' for x in notif)} "
              f"(its sync: {delay} ms)")
    finally:
        serve.terminate()
        serve.wait()
        subprocess.run(["fusermount3", "-u", mnt], check=False)
        disk.wait()


if __name__ == "__main__":
    main()
