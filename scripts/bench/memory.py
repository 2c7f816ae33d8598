#!/usr/bin/env python3
"""Memory under a flood of large bodies: N clients each POST a 1 MiB notification at once to the
static binary; prints how many were acknowledged and logged, peak RSS (VmHWM) and one handshake's
latency during the flood. Usage: scripts/bench/memory.py PATH-TO-RINGHOOK (a free port is picked)."""
import socket, subprocess, threading, time, os, sys, json
BIN=sys.argv[1]; N=256; SIZE=1<<20
s=socket.socket(); s.bind(('127.0.0.1',0)); port=s.getsockname()[1]; s.close()
d='/tmp/memtest'; os.makedirs(d,exist_ok=True)
log=d+'/ev.jsonl'
if os.path.exists(log): os.remove(log)
env=dict(os.environ, WEBHOOK_VERIFICATION_TOKEN='tok')
p=subprocess.Popen([BIN,'serve','--listen',f'127.0.0.1:{port}','--log-file',log,'--max-body','2MiB','--max-connections','300'],env=env,stderr=subprocess.DEVNULL)
for _ in range(200):
    try: socket.create_connection(('127.0.0.1',port)).close(); break
    except OSError: time.sleep(0.02)
ok=[0]; lock=threading.Lock()
def client(i):
    pad='x'*(SIZE-100)
    body=json.dumps({"uuid":f"m{i}","event":"/e","pad":pad}).encode()
    c=socket.create_connection(('127.0.0.1',port)); c.settimeout(120)
    c.sendall(b'POST /webhook HTTP/1.1\r\nHost: x\r\nVerification-Token: tok\r\nContent-Length: %d\r\nConnection: close\r\n\r\n'%len(body)+body)
    r=c.recv(100)
    if r.startswith(b'HTTP/1.1 200'):
        with lock: ok[0]+=1
ts=[threading.Thread(target=client,args=(i,)) for i in range(N)]
t0=time.time(); [t.start() for t in ts]
# a handshake while the bodies flow
time.sleep(0.2); h0=time.time()
c=socket.create_connection(('127.0.0.1',port)); c.sendall(b'POST /webhook HTTP/1.1\r\nHost: x\r\nValidation-Token: v\r\nContent-Length: 0\r\n\r\n'); hr=c.recv(200); h=time.time()-h0
[t.join() for t in ts]
hwm=[l for l in open(f'/proc/{p.pid}/status') if l.startswith('VmHWM')][0].split()[1]
p.terminate(); p.wait()
lines=sum(1 for _ in open(log))
print(f"200s {ok[0]}/{N}, lines {lines}, VmHWM {int(hwm)/1024:.1f} MB, handshake during load {h*1000:.1f} ms ({hr[:15]}), {time.time()-t0:.1f} s")
