#!/usr/bin/env python3
"""Opens N TLS connections to HOST:PORT, completes each handshake, sends an unfinished
request header, holds them for HOLD seconds while the caller measures memory, then
closes them. Prints how many were established and, at the end, how many the server had
closed by itself.

usage: hold.py HOST PORT N HOLD_SECONDS READY_FILE
"""
import socket
import ssl
import sys
import time

host, port, n, hold, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
conns = []
deadline = time.time() + 60
for i in range(n):
    if time.time() > deadline:
        break
    s = socket.create_connection((host, port), timeout=10)
    t = ctx.wrap_socket(s, server_hostname="localhost")
    t.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    conns.append(t)
print(f"established {len(conns)}", flush=True)
with open(ready, "w") as f:
    f.write("ready\n")
time.sleep(hold)
closed = 0
for t in conns:
    t.setblocking(False)
    try:
        if t.recv(1) == b"":
            closed += 1
    except (ssl.SSLWantReadError, BlockingIOError):
        pass
    except (ssl.SSLError, OSError):
        closed += 1
for t in conns:
    try:
        t.close()
    except OSError:
        pass
print(f"closed-by-server {closed}", flush=True)
