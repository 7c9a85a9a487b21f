#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets into fuzz/seeds/<target>/ from a real server run.

usage: fuzz/seeds.py path/to/logpipe

Starts the binary on a scratch data directory, ingests a few batches (one with an
Idempotency-Key), stops it with SIGTERM so it flushes and saves its keys, then copies out
what it wrote: a segment file, WAL frames as batches and as chunked WAL inputs, the keys file.
Text seeds (ingest bodies, query strings, native query parameters) are written as they are.
Seeds are a starting point; the working corpus a long run grows stays in fuzz/corpus (untracked).
"""
import gzip, hashlib, json, os, re, shutil, signal, struct, subprocess, sys, tempfile, time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def records(n, app="web"):
    levels = ["INFO", "WARN", "ERROR"]
    return [
        {"app": app, "timestamp": 1_700_000_000_000_000_000 + i * 1_000_000,
         "message": f"GET /api/item/{i} 200 {i % 7}ms req-{i:04x} \u00e9t\u00e9",
         "tags": [f"level={levels[i % 3]}", f"host=h{i % 2}"]}
        for i in range(n)
    ]


def ndjson(recs):
    return "".join(json.dumps(r) + "\n" for r in recs)


def server_seeds(binary):
    tmp = tempfile.mkdtemp(prefix="logpipe-seeds-")
    data = os.path.join(tmp, "data")
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = re.search(r"listening on (\S+)", p.stdout.readline()).group(1)
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/ready")
                break
            except Exception:
                time.sleep(0.1)
        for i, (app, n) in enumerate([("web", 40), ("db", 5), ("web", 300)]):
            req = urllib.request.Request(url + "/api/v1/logs", data=ndjson(records(n, app)).encode(), method="POST")
            if i == 1:
                req.add_header("Idempotency-Key", "seed-key-1")
            urllib.request.urlopen(req).read()
        # the WAL before shutdown releases it
        for root, _, files in os.walk(os.path.join(data, "wal")):
            for name in sorted(files):
                raw = open(os.path.join(root, name), "rb").read()
                chunks, off = b"", 16
                while off + 8 <= len(raw):
                    (n,) = struct.unpack_from("<I", raw, off)
                    payload = raw[off + 8: off + 8 + n]
                    put("batch", payload)
                    chunks += struct.pack("<BH", 0, len(payload)) + payload
                    off += 8 + n
                put("wal", chunks)
                put("wal", chunks + struct.pack("<BH", 1, 5) + b"\x10\x00\x00\x00\x01")
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    for root, _, files in os.walk(data):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".seg") and os.path.getsize(path) < 64 * 1024:
                put("segment", open(path, "rb").read())
            if name == "idempotency.keys":
                put("idempotency_keys", open(path, "rb").read())
    shutil.rmtree(tmp)


def text_seeds():
    body = ndjson(records(3))
    for b in [body, json.dumps(records(2)), '{"message":"m","timestamp":"2024-01-02T03:04:05.123Z"}\n',
              '{"message":"m","tags":["a=b",""]}', '[{"message":1}]', '{"message":"x","timestamp":null}\n\n']:
        put("ingest", b"\x00" + b.encode())
    put("ingest", b"\x01" + gzip.compress(body.encode()))
    zstd = shutil.which("zstd")
    if zstd:
        put("ingest", b"\x02" + subprocess.run([zstd, "-c"], input=body.encode(), capture_output=True).stdout)
    queries = ['timeout "connection reset" ~"req-00" /t(ime)?out \\d+ms/ level=ERROR -level=DEBUG app:(hdfs OR spark) _time:1h | sort asc | limit 20',
               'error and not (warn or i~"disk full") | count by (level)', '* | histogram 5m by (host) | limit 3',
               'level!=INFO tag:host=h1 _time:[2024-01-01T00:00:00Z, 2024-01-02T00:00:00Z) | fields message, tags',
               '/(?i)user\\s+\\w+/ | count', 'app:web-* "x\\"y" | sort desc']
    for q in queries:
        put("query", q)
        put("params", "q=" + urllib.request.quote(q))
    logql = ['{app="web", level=~"err.*", env!="dev"} |= "timeout" != "retry" |~ `t(ime)?out` !~ "\\d+"',
             '{app="web"} | json | status >= 500 and method="GET" or took > 1.5s | line_format "{{.method}} {{__line__}}"',
             '{app="web"} | logfmt | level="warn", duration <= 250ms',
             'sum by (level) (count_over_time({app="web"} |= "x" [5m]))',
             'topk(3, sum(rate({app=~".+"}[1m])) without (host)) / 2 > 0.5',
             'vector(1)+vector(1)', 'bottomk(1, avg by (a) (bytes_rate({a="b"}[1h]))) - 1e3 * -2']
    for q in logql:
        put("logql", q)
    for p in ["app=web&tag=level%3DERROR&from=2024-01-01T00:00:00Z&to=now&limit=5&order=asc",
              "contains=GET&icontains=get&regex=%5Cd%2Bms&any=a&not=b&step=1m&fill=zero", "cursor=AAAA&app=db"]:
        put("params", p)


if __name__ == "__main__":
    text_seeds()
    server_seeds(sys.argv[1])
