// Drives @myunisoft/loki (npm), a Grafana Loki SDK, against logpipe: pushes lines with its
// push(), then reads them back with its query_range (streams and matrix), labels, label values
// and series calls. Prints what it got as one JSON object.
//   node loki_query.mjs BASE_URL APP [TOKEN]
// (With a token, its series() call fails: it sends no credentials.)
import { GrafanaApi } from "@myunisoft/loki";

const [base, app, token] = process.argv.slice(2);
const api = new GrafanaApi({
  remoteApiURL: base + "/",
  ...(token ? { authentication: { type: "bearer", token } } : {}),
});

const now = BigInt(Date.now()) * 1_000_000n;
const levels = ["info", "warn", "error"];
const values = [];
for (let i = 0; i < 30; i++) {
  const ts = now - BigInt(30 - i) * 1_000_000_000n;
  values.push([ts.toString(), `level=${levels[i % 3]} msg="request ${i}" took=${i * 10}ms`]);
}
await api.Loki.push([{ stream: { app, env: "test" }, values }]);

const out = {};
out.errors = await api.Loki.queryRangeStream(`{app="${app}"} |= "level=error"`, { start: "1h", limit: 100 });
out.slow = await api.Loki.queryRangeStream(`{app="${app}", env="test"} | logfmt | took >= 200ms | line_format "{{.msg}}"`, {
  start: "1h",
  limit: 100,
});
out.perLevel = await api.Loki.queryRangeMatrix(`sum by (level) (count_over_time({app="${app}"} | logfmt [1h]))`, {
  start: "1h",
  step: "1h",
});
out.labels = await api.Loki.labels({ start: "1h" });
out.levels = await api.Loki.labelValues("env", { start: "1h" });
out.series = await api.Loki.series(`{app="${app}"}`);
console.log(JSON.stringify(out));
