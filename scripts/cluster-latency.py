#!/usr/bin/env python3
"""Time from an ingest node's acknowledgement to the record being queryable on a store node.

  scripts/cluster-latency.py INGEST_URL STORE_URL [STORE_URL ...] [-n N]   (default 200)

Opens a live tail (GET /api/v1/tail?q=app:cluster-latency) on every store node: a store node's
tail sees a record the moment its engine has made it durable and queryable. Then posts N
one-record batches to the ingest node one after the other and, for each, measures the time
from the client reading the 200 to the first store node's tail receiving the record. Prints
the median, p90, p99 and max in milliseconds.
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("ingest")
ap.add_argument("stores", nargs="+")
ap.add_argument("-n", type=int, default=200)
args = ap.parse_args()

seen = {}
lock = threading.Lock()


def tail(url):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    conn.request("GET", "/api/v1/tail?q=app%3Acluster-latency")
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    while True:
        line = resp.fp.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            msg = json.loads(line[6:])["message"]
            now = time.perf_counter()
            with lock:
                seen.setdefault(msg, now)


for s in args.stores:
    threading.Thread(target=tail, args=(s,), daemon=True).start()
time.sleep(0.5)  # the tails are open

lat = []
for i in range(args.n):
    msg = f"probe {i} {time.time_ns()}"
    body = json.dumps({"app": "cluster-latency", "message": msg}).encode() + b"\n"
    req = urllib.request.Request(args.ingest + "/api/v1/logs", data=body, method="POST",
                                 headers={"content-type": "application/x-ndjson"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status
        acked = time.perf_counter()
    deadline = acked + 30
    while True:
        with lock:
            t = seen.get(msg)
        if t is not None:
            lat.append((t - acked) * 1000)
            break
        if time.perf_counter() > deadline:
            raise SystemExit(f"record {i} not queryable within 30 s")
        time.sleep(0.0005)

lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"acknowledged -> queryable over {len(lat)} records: median {statistics.median(lat):.2f} ms, "
      f"p90 {q(0.9):.2f} ms, p99 {q(0.99):.2f} ms, max {lat[-1]:.2f} ms")
