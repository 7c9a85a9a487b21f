#!/usr/bin/env python3
"""Sends log lines to logpipe's Loki push endpoint with real Loki clients from PyPI, as
crates/cli/tests/compat_loki.rs asks.

usage: loki_push.py URL python-logging-loki|loki-logger-handler APP COUNT
Line i is "loki says hello i" (loki-logger-handler sends the record as a JSON line holding
it, with a structured metadata entry trace=t1); with loki-logger-handler record i's time is
2025-03-01T12:00:00Z + i ms (its handler sends the record's own time). Prints one JSON line
with the wall-clock window the lines were sent in (python-logging-loki stamps them itself).
"""
import json
import logging
import sys
import time

url, client, app, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
push = url + "/loki/api/v1/push"
base = 1_740_830_400.0
logger = logging.getLogger("loki-test")
logger.setLevel(logging.INFO)
logger.propagate = False
start = time.time_ns()
if client == "python-logging-loki":
    import logging_loki

    logger.addHandler(logging_loki.LokiHandler(url=push, tags={"app": app, "env": "test"}, version="1"))
    for i in range(count):
        logger.warning("loki says hello %d", i)
elif client == "loki-logger-handler":
    from loki_logger_handler.loki_logger_handler import LokiLoggerHandler

    class FixedTime(logging.Filter):
        def filter(self, record):
            record.created = base + int(record.args[0]) / 1000
            return True

    handler = LokiLoggerHandler(
        url=push,
        labels={"service_name": app, "env": "test"},
        compressed=True,
        enable_structured_loki_metadata=True,
        loki_metadata={"trace": "t1"},
        timeout=0.2,
    )
    logger.addFilter(FixedTime())
    logger.addHandler(handler)
    for i in range(count):
        logger.warning("loki says hello %d", i)
    handler._send()  # what the handler's exit hook does; sent here so the window is right
else:
    sys.exit(f"unknown client {client}")
print(json.dumps({"sent": count, "start": start, "end": time.time_ns()}))
