#!/usr/bin/env python3
"""Time from an ingest node's acknowledgement to a query node answering with the record.

  bench/cluster-latency.py INGEST_URL QUERY_URL [-n N]   (default 200)

Posts N one-record batches to the ingest node one after the other and, for each, asks the query
node (one kept-alive connection, back to back) how many records hold its unique message, until
the answer is 1. The time from the client reading the 200 to reading that answer includes one
query's own time, so it is an upper bound. Prints the median, p90, p99 and max in
milliseconds.
"""
import argparse
import http.client
import json
import statistics
import time
import urllib.parse
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("ingest")
ap.add_argument("query")
ap.add_argument("-n", type=int, default=200)
args = ap.parse_args()

u = urllib.parse.urlparse(args.query)
conn = http.client.HTTPConnection(u.hostname, u.port)


def count(msg):
    q = urllib.parse.urlencode({"app": "cluster-latency", "contains": msg})
    conn.request("GET", "/api/v1/count?" + q)
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (r.status, body)
    return json.loads(body)["count"]


lat = []
for i in range(args.n):
    msg = f"probe-{i}-{time.time_ns()}"
    body = json.dumps({"app": "cluster-latency", "message": msg}).encode() + b"\n"
    req = urllib.request.Request(args.ingest + "/api/v1/logs", data=body, method="POST",
                                 headers={"content-type": "application/x-ndjson"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status
        acked = time.perf_counter()
    deadline = acked + 30
    while count(msg) != 1:
        if time.perf_counter() > deadline:
            raise SystemExit(f"record {i} not answered within 30 s")
    lat.append((time.perf_counter() - acked) * 1000)

lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"acknowledged -> answered by the query node over {len(lat)} records: median {statistics.median(lat):.2f} ms, "
      f"p90 {q(0.9):.2f} ms, p99 {q(0.99):.2f} ms, max {lat[-1]:.2f} ms")
