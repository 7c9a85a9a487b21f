#!/usr/bin/env python3
"""Time from an ingest acknowledgement to the record's event on an open live tail.

  bench/tail-latency.py [URL] [N]      (default http://127.0.0.1:7171, 200 records)

Opens GET /api/v1/tail?q=app:tail-latency, then posts N one-record batches one after the
other; for each, the time from the client reading the 200 to the tail's reader thread
receiving the record (negative: the event arrived before the client read its 200).
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7171"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port)
conn.request("GET", "/api/v1/tail?q=app%3Atail-latency")
resp = conn.getresponse()
assert resp.status == 200, resp.status
seen = {}


def read():
    while True:
        line = resp.fp.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            seen[json.loads(line[6:])["message"]] = time.perf_counter()


threading.Thread(target=read, daemon=True).start()
lat = []
for i in range(n):
    msg = "m%d" % i
    body = (json.dumps({"app": "tail-latency", "message": msg}) + "\n").encode()
    urllib.request.urlopen(urllib.request.Request(url + "/api/v1/logs", data=body, method="POST")).read()
    acked = time.perf_counter()
    deadline = acked + 5
    while msg not in seen and time.perf_counter() < deadline:
        time.sleep(0.0002)
    lat.append((seen[msg] - acked) * 1000 if msg in seen else float("inf"))
lat.sort()
print("ack -> tail event, ms: median %.2f, p99 %.2f, max %.2f (%d records)"
      % (statistics.median(lat), lat[int(len(lat) * 0.99) - 1], lat[-1], n))
