#!/usr/bin/env python3
"""Checks logpipe's `count by (key)` and `histogram STEP by (key)` against the bench kit's oracle.

  scripts/aggregations-check.py BENCH_DIR DATA_DIR URL

For every count and histogram query of the kit's queries.json and the tag keys `level` and
`env`, the oracle counts the records that match the query's filters and, per value of the key
found in the data, those that also carry `key=value` (one more oracle query per value), with
their buckets (the query's step, or 1h for counts). Records without the key are the query's
count minus the others. logpipe answers the same filters (the kit's native parameters) with
`| count by (key)` and `| histogram STEP by (key)` on /api/v1/query; both must agree exactly.

Uses the kit's own modules (oracle.py, benchq.py, adapters.py) for records, filters and
parameters, so the semantics are the oracle's.
"""

import json
import sys
import urllib.parse
import urllib.request

KEYS = ("level", "env")


def main():
    bench, data, url = sys.argv[1:4]
    sys.path.insert(0, bench)
    import adapters
    import benchq
    import oracle

    queries = [q for q in benchq.load_queries(bench + "/queries.json", None) if q["kind"] in ("count", "histogram")]
    files = benchq.expand_inputs([data])

    values = {k: set() for k in KEYS}
    for _, _, _, tags in oracle.read_records(files, progress=False):
        for t in tags:
            k, eq, v = t.partition("=")
            if eq and k in values:
                values[k].add(v)

    plans = []  # (query, step, base state, {key: {value: state}})
    states = []
    for q in queries:
        step = q.get("step") or "1h"
        as_hist = dict(q, kind="histogram", step=step)
        base = oracle.QState(as_hist)
        per_key = {}
        for k in KEYS:
            per_key[k] = {}
            for v in sorted(values[k]):
                s = oracle.QState(dict(as_hist, tags_all=q["tags_all"] + ["%s=%s" % (k, v)]))
                per_key[k][v] = s
                states.append(s)
        states.append(base)
        plans.append((q, step, base, per_key))
    oracle.scan(states, oracle.read_records(files, progress=False))

    native = adapters.NativeAdapter(url)
    passed = failed = 0

    def ask(params):
        with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode(params), timeout=120) as r:
            return json.load(r)

    for q, step, base, per_key in plans:
        params = native.params(q)
        for k in KEYS:
            want_counts = {v: s.count for v, s in per_key[k].items() if s.count}
            rest = base.count - sum(want_counts.values())
            if rest:
                want_counts[None] = rest
            want_buckets = {v: dict(s.buckets) for v, s in per_key[k].items() if s.count}
            if rest:
                none = dict(base.buckets)
                for s in per_key[k].values():
                    for b, n in s.buckets.items():
                        none[b] -= n
                want_buckets[None] = {b: n for b, n in none.items() if n}

            got = ask(params + [("q", "* | count by (%s) | limit 10000" % k)])
            got_counts = {x["value"]: x["count"] for x in got["values"]}
            ok = got_counts == want_counts and got["distinct"] == len(want_counts)

            got = ask(params + [("q", "* | histogram %s by (%s) | limit 10000" % (step, k))])
            got_buckets = {
                x["value"]: {benchq.parse_any_time(b["t"]): b["count"] for b in x["buckets"]} for x in got["series"]
            }
            ok_hist = got_buckets == want_buckets and "other" not in got
            for what, good in (("count by", ok), ("histogram by", ok_hist)):
                if good:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL %s %s (%s): expected %s" % (q["id"], what, k, want_counts), file=sys.stderr)
    print("aggregations: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
