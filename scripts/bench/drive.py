#!/usr/bin/env python3
"""A fixed amount of load, for counting (instructions, syscalls) rather than timing.

usage: drive.py PORT REQUESTS CONNS [dup]
POSTs REQUESTS presence notifications (fresh uuids; with `dup`, one uuid for all: the duplicate
path) over CONNS keep-alive connections, each with one request in flight, and exits 1 unless
every answer is 200. BENCH_SAMPLE and BENCH_TOKEN as for post.lua.
"""
import os
import selectors
import socket
import sys

port, total, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
dup = len(sys.argv) > 4 and sys.argv[4] == "dup"
template = open(os.environ["BENCH_SAMPLE"], "rb").read()
token = os.environ.get("BENCH_TOKEN", "bench-token").encode()
old = b"045b81dc-9f73-4864-84de-08aa6324a7f5"


def request(i):
    body = template.replace(old, b"drive-dup" if dup else b"drive-%d" % i)
    return (
        b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=UTF-8\r\n"
        b"User-Agent: RingCentral-Webhook/8.3\r\nVerification-Token: " + token
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )


sel = selectors.DefaultSelector()
sent = done = 0
bufs = {}
for _ in range(min(conns, total)):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(request(sent))
    sent += 1
    bufs[s] = b""
    sel.register(s, selectors.EVENT_READ)
while done < total:
    for key, _ in sel.select(timeout=30) or sys.exit("drive: no answer within 30 s"):
        s = key.fileobj
        data = s.recv(65536)
        if not data:
            sys.exit("drive: the receiver closed a connection")
        bufs[s] += data
        while b"\r\n\r\n" in bufs[s]:
            head, rest = bufs[s].split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 200"):
                sys.exit("drive: answer " + head.split(b"\r\n")[0].decode(errors="replace"))
            bufs[s] = rest  # ringhook's answers to notifications have no body
            done += 1
            if sent < total:
                s.sendall(request(sent))
                sent += 1
for s in bufs:
    s.close()
