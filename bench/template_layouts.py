#!/usr/bin/env python3
"""Bytes per record of a block's message column in several layouts, to choose one.

    pip install zstandard
    bench/template_layouts.py DIR [FILES] [LEVEL]     (defaults: 400 batch files, zstd 9)

DIR is a batch directory of logpipe-bench (`logpipe-bench gen --out DIR`). Records are grouped by
app and sorted by time, as a settled partition is, and cut into blocks of 8,192 rows; each
layout is one zstd frame per block, as logpipe writes a column:

  plain          the column of format 2: message lengths as byte planes, then the messages
  row            templates once per block, then every variable in row order
  template_row   variables grouped by template, row after row (what logpipe writes)
  template_slot  variables grouped by template and position, then row
  coarse         as template_row, with variables that may hold '.', ':', '_' and '-'

A variable is a maximal run of ASCII letters and digits holding a digit (crate::template).
"""
import collections
import json
import os
import re
import sys

import zstandard

VAR = re.compile(rb"[A-Za-z0-9]*[0-9][A-Za-z0-9]*")
COARSE = re.compile(rb"[A-Za-z0-9._:-]*[0-9][A-Za-z0-9._:-]*")


def planes(vals):
    width = max([0] + [(v.bit_length() + 7) // 8 for v in vals])
    out = bytearray([width])
    for k in range(width):
        out += bytes((v >> (8 * k)) & 255 for v in vals)
    return bytes(out)


def split(msgs, rx):
    """(template dictionary bytes, template id per row, variables per row)."""
    ids, tid, variables = {}, [], []
    for m in msgs:
        vs = []
        pieces = []
        last = 0
        for mo in rx.finditer(m):
            pieces.append(m[last:mo.start()])
            vs.append(mo.group())
            last = mo.end()
        pieces.append(m[last:])
        key = tuple(pieces)
        tid.append(ids.setdefault(key, len(ids)))
        variables.append(vs)
    lens = [len(p) for key in ids for p in key]
    text = b"".join(p for key in ids for p in key)
    head = planes([len(k) - 1 for k in ids]) + planes(lens) + text + planes(tid)
    return head, tid, variables


def main():
    d = sys.argv[1]
    nfiles = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    zc = zstandard.ZstdCompressor(level=int(sys.argv[3]) if len(sys.argv) > 3 else 9)
    z = lambda b: len(zc.compress(b))
    files = sorted(f for f in os.listdir(d) if f.startswith("batch-"))[:nfiles]
    by_app = collections.defaultdict(list)
    for f in files:
        for line in open(os.path.join(d, f), encoding="utf-8"):
            r = json.loads(line)
            by_app[r["app"]].append((r["timestamp"], r["message"].encode()))
    total, rows = collections.Counter(), 0
    for recs in by_app.values():
        recs.sort()
        for b0 in range(0, len(recs) - 8191, 8192):
            msgs = [m for _, m in recs[b0:b0 + 8192]]
            rows += len(msgs)
            total["plain"] += z(planes([len(m) for m in msgs]) + b"".join(msgs))
            for name, rx in (("row", VAR), ("coarse", COARSE)):
                head, tid, variables = split(msgs, rx)
                if name == "row":
                    flat = [v for vs in variables for v in vs]
                    total["row"] += z(head + planes([len(v) for v in flat]) + b"".join(flat))
                    by_t = collections.defaultdict(list)
                    for t, vs in zip(tid, variables):
                        by_t[t].append(vs)
                    slot = [v for t in sorted(by_t) for k in range(len(by_t[t][0])) for vs in by_t[t] for v in [vs[k]]]
                    total["template_slot"] += z(head + planes([len(v) for v in slot]) + b"".join(slot))
                grouped = collections.defaultdict(list)
                for t, vs in zip(tid, variables):
                    grouped[t].extend(vs)
                flat = [v for t in sorted(grouped) for v in grouped[t]]
                total["template_row" if name == "row" else "coarse"] += z(
                    head + planes([len(v) for v in flat]) + b"".join(flat))
    print("%d rows in %d blocks" % (rows, rows // 8192))
    for k in ("plain", "row", "template_row", "template_slot", "coarse"):
        print("%-14s %6.2f B/record" % (k, total[k] / rows))


if __name__ == "__main__":
    main()
