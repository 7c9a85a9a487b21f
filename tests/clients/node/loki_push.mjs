// Sends lines to logpipe's Loki push endpoint with winston-loki (JSON, or protobuf + snappy)
// or pino-loki, as crates/cli/tests/compat_loki.rs asks.
//   node loki_push.mjs URL winston-json|winston-proto|pino APP COUNT
// Line i: "loki says hello i", level warn, labels {app: APP, env: "test"}. Prints one JSON line
// with the time range (ms) the lines were logged in.
import pino from "pino";
import winston from "winston";
import LokiTransport from "winston-loki";

const [url, which, app, countArg] = process.argv.slice(2);
const count = Number(countArg);
const start = Date.now();
if (which.startsWith("winston")) {
  const errors = [];
  const transport = new LokiTransport({
    host: url,
    labels: { app, env: "test" },
    json: which === "winston-json",
    batching: true,
    interval: 0.2,
    onConnectionError: (e) => errors.push(String(e)),
  });
  const logger = winston.createLogger({ transports: [transport] });
  for (let i = 0; i < count; i++) {
    logger.warn(`loki says hello ${i}`);
  }
  await transport.flush();
  transport.close?.();
  if (errors.length) {
    console.error(errors.join("\n"));
    process.exit(1);
  }
  console.log(JSON.stringify({ start, end: Date.now(), sent: count }));
} else {
  const transport = pino.transport({
    target: "pino-loki",
    options: { host: url, labels: { app, env: "test" }, batching: { interval: 0.2 }, silenceErrors: false },
  });
  const logger = pino({ level: "info" }, transport);
  for (let i = 0; i < count; i++) {
    logger.warn(`loki says hello ${i}`);
  }
  // ending the transport lets its worker send what is left; the process exits once it has
  // (awaiting its "close" event is not reliable: end() during a flush never emits it)
  console.log(JSON.stringify({ start, end: Date.now(), sent: count }));
  transport.end();
}
