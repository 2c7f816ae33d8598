#!/usr/bin/env python3
"""Start-up time: from spawning COMMAND to the first answer to a handshake POST on PORT.

usage: [STARTUP_PATH=/webhook] startup.py PORT COMMAND... ; prints the median and the minimum in
ms over RUNS (20) runs. Any HTTP answer counts (a receiver that cannot do the handshake still
answers). Polls every 0.2 ms, so the figure is at most 0.2 ms pessimistic.
"""
import os
import socket
import statistics
import subprocess
import sys
import time

port = int(sys.argv[1])
cmd = sys.argv[2:]
runs = int(os.environ.get("RUNS", "20"))
path = os.environ.get("STARTUP_PATH", "/webhook").encode()
req = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nValidation-Token: s\r\nContent-Length: 0\r\n\r\n"
times = []
failures = 0
for _ in range(runs):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if p.poll() is not None:
            # Seen with node now and then: it quits at once, status 0. Start it again.
            failures += 1
            if failures > 5:
                sys.exit(f"startup: {cmd[0]} keeps exiting ({p.returncode}) before answering")
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            continue
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(req)
                if s.recv(1024).startswith(b"HTTP/1."):
                    break
        except OSError:
            time.sleep(0.0002)
    times.append((time.perf_counter() - t0) * 1000)
    p.terminate()
    p.wait()
print(f"{statistics.median(times):.1f} {min(times):.1f}")
