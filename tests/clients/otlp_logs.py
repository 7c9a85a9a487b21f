#!/usr/bin/env python3
"""Sends log records to logpipe with the OpenTelemetry Python SDK and its OTLP/HTTP protobuf
exporter, as crates/cli/tests/compat_otlp.rs asks.

usage: otlp_logs.py URL SERVICE COUNT gzip|none
Record i: body "otel says hello i", time 2025-03-01T12:00:00Z + i ms, severity WARN (13),
attributes {"order.id": i, "tags": ["a", "b"]}; resource {service.name: SERVICE,
deployment.environment: "test"}; scope "logpipe-test". Prints one JSON line.
"""
import json
import sys

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

url, service, count, compression = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
exporter = OTLPLogExporter(
    endpoint=url + "/v1/logs",
    compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression,
)
provider = LoggerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=100))
logger = provider.get_logger("logpipe-test")
base = 1_740_830_400_000_000_000
for i in range(count):
    logger.emit(
        LogRecord(
            timestamp=base + i * 1_000_000,
            observed_timestamp=base + i * 1_000_000 + 1,
            body=f"otel says hello {i}",
            severity_text="WARN",
            severity_number=SeverityNumber.WARN,
            attributes={"order.id": i, "tags": ["a", "b"]},
        )
    )
ok = provider.force_flush(30_000)
provider.shutdown()
print(json.dumps({"flushed": ok, "sent": count}))
