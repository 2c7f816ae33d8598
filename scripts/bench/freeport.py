#!/usr/bin/env python3
"""Prints one free TCP port on 127.0.0.1 that the kernel never hands out as a source port.

usage: freeport.py
A port inside ip_local_port_range can be taken by a client's own connect while the receiver is
not yet listening (a TCP self-connect: 127.0.0.1:P -> 127.0.0.1:P, which then blocks the
receiver's bind). Ports below that range, checked free by binding, cannot be.
"""
import random
import socket

try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
rng = random.SystemRandom()
lo, hi = (10000, low - 1) if low > 11000 else (1024, low - 1)
if hi < lo:
    raise SystemExit(f"freeport: ip_local_port_range starts at {low}: no port below it to use")
for _ in range(200):
    port = rng.randint(lo, hi)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit(f"freeport: no free port found in {lo}..{hi}")
