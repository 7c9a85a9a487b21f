#!/usr/bin/env python3
"""Sends log records to logpipe's VictoriaLogs JSON-lines endpoint with victorialogs-handler
(PyPI), as crates/cli/tests/compat_vlogs.rs asks.

usage: vlogs_jsonline.py URL APP COUNT
Record i: message "vlogs says hello i", time 2025-03-01T12:00:00Z + i ms, level WARNING,
extra field order_id=i; the handler's stream field is APP. Prints one JSON line.
"""
import json
import logging
import sys

from vlogs_handler import VictoriaLogsHandler

url, app, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = 1_740_830_400.0


class FixedTime(logging.Filter):
    def filter(self, record):
        if record.name == "vlogs-test":
            record.created = base + record.order_id / 1000
        return True


handler = VictoriaLogsHandler(url=url, record_to_stream=lambda r: app, flush_interval=0.2, batch_size=50)
handler.addFilter(FixedTime())
logger = logging.getLogger("vlogs-test")
logger.setLevel(logging.INFO)
logger.propagate = False
logger.addHandler(handler)
for i in range(count):
    logger.warning("vlogs says hello %d", i, extra={"order_id": i})
handler.close()
print(json.dumps({"sent": count}))
