#!/usr/bin/env python3
"""A minimal RingCentral for benchmarking `ringhook connect` (not a test; tests/fake_wsg.rs is the
faithful fake): the token and wstoken endpoints and a WebSocket Gateway on one loopback port.
After the subscription's ClientRequest it waits for a line on stdin, then sends N presence
notifications (fresh uuids) as fast as the socket takes them; Heartbeats are answered.

usage: wsg.py PORT N   (BENCH_SAMPLE: the notification body to send)
Prints "ready" once subscribed, "sent SECONDS" after the burst.
"""
import base64, hashlib, json, os, socket, struct, sys, threading

port, total = int(sys.argv[1]), int(sys.argv[2])
template = open(os.environ["BENCH_SAMPLE"], "rb").read()
old = b"045b81dc-9f73-4864-84de-08aa6324a7f5"
go = threading.Event()


def frame(payload, op=1):
    n = len(payload)
    head = bytes([0x80 | op])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def read_frame(f):
    h = f.read(2)
    if len(h) < 2:
        return None, None
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", f.read(8))[0]
    mask = f.read(4)
    data = bytearray(f.read(n))
    for i in range(n):
        data[i] ^= mask[i % 4]
    return h[0] & 0x0F, bytes(data)


def http(conn, f, first):
    method, target, _ = first.decode().split(" ", 2)
    headers = {}
    while True:
        line = f.readline().decode().strip()
        if not line:
            break
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    f.read(int(headers.get("content-length", "0")))
    path = target.split("?")[0]
    if path == "/ws":
        return websocket(conn, f, headers)
    if path == "/restapi/oauth/token":
        body = {"access_token": "bench-access", "expires_in": 3600, "refresh_token": "bench-refresh",
                "refresh_token_expires_in": 604800, "owner_id": "1"}
    elif path == "/restapi/oauth/wstoken":
        body = {"uri": "ws://127.0.0.1:%d/ws" % port, "ws_access_token": "bench-ws", "expires_in": 60}
    else:
        body = {"records": []}
    data = json.dumps(body).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    return True


def websocket(conn, f, headers):
    accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    details = [{"type": "ConnectionDetails", "messageId": "cd", "status": 200, "wsc": {"token": "bench-wsc", "sequence": 1}},
               {"recoveryTimeout": 180, "idleTimeout": 1800, "absoluteTimeout": 86400}]
    conn.sendall(frame(json.dumps(details).encode()))
    lock = threading.Lock()

    def blast():
        go.wait()
        import time
        t = time.monotonic()
        for i in range(total):
            body = template.replace(old, b"bench-%d" % i)
            msg = b'[{"type":"ServerNotification","messageId":"m","status":200},' + body + b"]"
            with lock:
                conn.sendall(frame(msg))
        print("sent %.3f" % (time.monotonic() - t), flush=True)

    while True:
        op, data = read_frame(f)
        if op is None or op == 8:
            return False
        if op == 9:
            with lock:
                conn.sendall(frame(data, 10))
            continue
        meta = json.loads(data)[0]
        if meta["type"] == "Heartbeat":
            reply = [{"type": "Heartbeat", "messageId": meta["messageId"]}]
        elif meta["type"] == "ClientRequest" and meta["method"] == "POST":
            reply = [{"type": "ClientRequest", "messageId": meta["messageId"], "status": 200,
                      "headers": {"WSG-SubscriptionId": "bench-sub"}}, {"id": "bench-sub"}]
            threading.Thread(target=blast, daemon=True).start()
            print("ready", flush=True)
        else:
            reply = [{"type": "ClientRequest", "messageId": meta["messageId"], "status": 204}]
        with lock:
            conn.sendall(frame(json.dumps(reply).encode()))


def client(conn):
    f = conn.makefile("rb")
    while True:
        first = f.readline()
        if not first or not http(conn, f, first):
            break
    conn.close()


def start_on_stdin():
    sys.stdin.readline()
    go.set()


threading.Thread(target=start_on_stdin, daemon=True).start()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
while True:
    c, _ = srv.accept()
    threading.Thread(target=client, args=(c,), daemon=True).start()
