#!/usr/bin/env python3
"""Start-up time: from spawning COMMAND to the first answer to a handshake POST on PORT.

usage: [STARTUP_PATH=/webhook] [RUNS=20] startup.py PORT COMMAND...
Prints the median and the minimum in ms over RUNS runs. Any HTTP answer counts (a receiver that
cannot do the handshake still answers). Polls every 0.2 ms, so the figure is at most 0.2 ms
pessimistic. A COMMAND that exits before answering is an error (exit 1, with its stderr): PORT
must be one no client can take for itself (scripts/bench/freeport.py), so an exit means the
receiver could not start, never a lost race.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

port = int(sys.argv[1])
cmd = sys.argv[2:]
runs = int(os.environ.get("RUNS", "20"))
path = os.environ.get("STARTUP_PATH", "/webhook").encode()
req = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nValidation-Token: s\r\nContent-Length: 0\r\n\r\n"
times = []
with tempfile.TemporaryFile() as err:
    for _ in range(runs):
        err.seek(0)
        err.truncate()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        while True:
            if p.poll() is not None:
                err.seek(0)
                tail = err.read()[-2000:].decode(errors="replace").strip()
                sys.exit(
                    f"startup: {' '.join(cmd)} exited ({p.returncode}) before answering on port {port}"
                    + (f":\n{tail}" if tail else " and printed nothing")
                )
            if time.perf_counter() - t0 > 30:
                p.kill()
                sys.exit(f"startup: {' '.join(cmd)} did not answer on port {port} within 30 s")
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
