// Sends log records to logpipe with the OpenTelemetry JS SDK and its OTLP/HTTP exporters
// (@opentelemetry/exporter-logs-otlp-http sends JSON, -proto sends protobuf), as
// crates/cli/tests/compat_otlp.rs asks.
//   node otlp_logs.mjs URL SERVICE COUNT json|proto
// Record i: body "otel says hello i", time 2025-03-01T12:00:00Z + i ms, severity WARN (13),
// attributes {"order.id": i, "tags": ["a", "b"]}; resource {service.name: SERVICE,
// deployment.environment: "test"}; scope "logpipe-test". Prints one JSON line.
import { SeverityNumber } from "@opentelemetry/api-logs";
import { OTLPLogExporter as JsonExporter } from "@opentelemetry/exporter-logs-otlp-http";
import { OTLPLogExporter as ProtoExporter } from "@opentelemetry/exporter-logs-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchLogRecordProcessor, LoggerProvider } from "@opentelemetry/sdk-logs";

const [url, service, countArg, format] = process.argv.slice(2);
const count = Number(countArg);
const Exporter = format === "proto" ? ProtoExporter : JsonExporter;
const exporter = new Exporter({ url: url + "/v1/logs" });
const provider = new LoggerProvider({
  resource: resourceFromAttributes({ "service.name": service, "deployment.environment": "test" }),
  processors: [new BatchLogRecordProcessor({ exporter, maxExportBatchSize: 100 })],
});
const logger = provider.getLogger("logpipe-test");
const base = 1_740_830_400_000; // ms
for (let i = 0; i < count; i++) {
  logger.emit({
    // [seconds, nanoseconds]: exact to the nanosecond
    timestamp: [Math.floor((base + i) / 1000), ((base + i) % 1000) * 1_000_000],
    body: `otel says hello ${i}`,
    severityText: "WARN",
    severityNumber: SeverityNumber.WARN,
    attributes: { "order.id": i, tags: ["a", "b"] },
  });
}
await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ flushed: true, sent: count }));
