//! Talking to a logpipe server: the loader (each batch file POSTed exactly once) and the query
//! runner (each query timed over several runs, every answer checked against the oracle's).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::gen::format_time;
use crate::oracle::{Answer, Rec};
use crate::queries::{duration, Kind, Query};

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(600)).build()
}

/// `req` with `Authorization: Bearer $LOGPIPE_TOKEN` when that variable is set (a server with
/// tokens), as the `logpipe` client commands do.
fn authorized(req: ureq::Request) -> ureq::Request {
    match std::env::var("LOGPIPE_TOKEN") {
        Ok(t) if !t.is_empty() => req.set("Authorization", &format!("Bearer {t}")),
        _ => req,
    }
}

/// The batch files of a generated directory and their record counts, from its `index.txt`.
pub fn batch_index(dir: &Path) -> Result<Vec<(std::path::PathBuf, u64)>> {
    let text = std::fs::read_to_string(dir.join("index.txt")).with_context(|| format!("{}", dir.display()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (file, n) = l.split_once('\t').ok_or_else(|| anyhow!("index.txt: {l:?}"))?;
            Ok((dir.join(file), n.parse()?))
        })
        .collect()
}

/// POSTs every batch file of `dir` to `url` once, over `connections` connections; a `429` or
/// `503` is retried after its `Retry-After`. Returns the records sent and the seconds it took.
pub fn load(dir: &Path, url: &str, connections: usize) -> Result<(u64, f64)> {
    let files = batch_index(dir)?;
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let sent: Result<Vec<u64>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..connections.max(1))
            .map(|_| {
                s.spawn(|| -> Result<u64> {
                    let agent = agent();
                    let mut records = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, n)) = files.get(i) else { return Ok(records) };
                        let body = std::fs::read(path)?;
                        post_until_accepted(&agent, url, &body).with_context(|| format!("{}", path.display()))?;
                        records += n;
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a loader thread panicked")).collect()
    });
    Ok((sent?.iter().sum(), started.elapsed().as_secs_f64()))
}

fn post_until_accepted(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match authorized(agent.post(url)).set("Content-Type", "application/x-ndjson").send_bytes(body) {
            Ok(_) => return Ok(()),
            Err(ureq::Error::Status(code @ (429 | 503), resp)) if Instant::now() < deadline => {
                let wait = resp.header("Retry-After").and_then(|s| s.parse().ok()).unwrap_or(1u64);
                let _ = code;
                std::thread::sleep(Duration::from_secs(wait.min(10)));
            }
            Err(ureq::Error::Status(code, resp)) => {
                bail!("HTTP {code}: {}", resp.into_string().unwrap_or_default())
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The native API's parameters for `q`'s filters.
pub fn params(q: &Query) -> Vec<(&'static str, String)> {
    let mut p = Vec::new();
    p.extend(q.apps.iter().map(|a| ("app", a.to_string())));
    p.extend(q.from.map(|t| ("from", format_time(t))));
    p.extend(q.to.map(|t| ("to", format_time(t))));
    p.extend(q.tags.iter().map(|t| ("tag", t.to_string())));
    p.extend(q.any.iter().map(|t| ("any", t.to_string())));
    p.extend(q.not.iter().map(|t| ("not", t.to_string())));
    p.extend(q.contains.iter().map(|t| ("contains", t.to_string())));
    p.extend(q.icontains.iter().map(|t| ("icontains", t.to_string())));
    p.extend(q.regex.map(|r| ("regex", r.to_string())));
    p
}

/// The endpoint and parameters that ask `q`.
pub fn request(q: &Query) -> (&'static str, Vec<(&'static str, String)>) {
    let mut p = params(q);
    let path = match &q.kind {
        Kind::Logs { limit, asc } => {
            p.push(("limit", limit.to_string()));
            p.push(("order", if *asc { "asc" } else { "desc" }.to_string()));
            "/api/v1/logs"
        }
        Kind::Count => "/api/v1/count",
        Kind::Histogram { step } => {
            p.push(("step", duration(*step)));
            "/api/v1/histogram"
        }
        Kind::CountBy { key } => {
            p.push(("q", format!("* | count by ({key}) | limit 10000")));
            "/api/v1/query"
        }
        Kind::HistogramBy { step, key } => {
            p.push(("q", format!("* | histogram {} by ({key}) | limit 10000", duration(*step))));
            "/api/v1/query"
        }
    };
    (path, p)
}

fn parse_time(v: &Value) -> Result<i64> {
    let s = v.as_str().ok_or_else(|| anyhow!("a time that is not a string: {v}"))?;
    chrono::DateTime::parse_from_rfc3339(s)?.timestamp_nanos_opt().ok_or_else(|| anyhow!("time out of range: {s}"))
}

fn buckets(v: &Value) -> Result<BTreeMap<i64, u64>> {
    let mut out = BTreeMap::new();
    for b in v.as_array().ok_or_else(|| anyhow!("buckets: {v}"))? {
        let n = b["count"].as_u64().ok_or_else(|| anyhow!("bucket count: {b}"))?;
        if n > 0 {
            out.insert(parse_time(&b["t"])?, n);
        }
    }
    Ok(out)
}

fn value_key(v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => bail!("a tag value that is neither null nor a string: {other}"),
    }
}

/// `q`'s answer from the body the server sent. A logs answer's `count` is the page's length.
pub fn parse_answer(q: &Query, body: &str) -> Result<Answer> {
    Ok(match &q.kind {
        Kind::Logs { .. } => {
            let mut records = Vec::new();
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)?;
                let mut tags: Vec<String> = v["tags"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                tags.sort_unstable();
                records.push(Rec {
                    app: v["app"].as_str().unwrap_or_default().to_owned(),
                    ts: parse_time(&v["timestamp"])?,
                    message: v["message"].as_str().unwrap_or_default().to_owned(),
                    tags,
                });
            }
            Answer::Logs { count: records.len() as u64, records }
        }
        Kind::Count => {
            let v: Value = serde_json::from_str(body)?;
            Answer::Count { count: v["count"].as_u64().ok_or_else(|| anyhow!("no count in {body}"))? }
        }
        Kind::Histogram { .. } => {
            Answer::Histogram { buckets: buckets(&serde_json::from_str::<Value>(body)?["buckets"])? }
        }
        Kind::CountBy { .. } => {
            let v: Value = serde_json::from_str(body)?;
            let mut values = Vec::new();
            for x in v["values"].as_array().ok_or_else(|| anyhow!("no values in {body}"))? {
                values.push((value_key(&x["value"])?, x["count"].as_u64().unwrap_or(0)));
            }
            if v["distinct"].as_u64() != Some(values.len() as u64) {
                bail!("distinct {} but {} values listed", v["distinct"], values.len());
            }
            values.sort();
            Answer::CountBy { values }
        }
        Kind::HistogramBy { .. } => {
            let v: Value = serde_json::from_str(body)?;
            if !v["other"].is_null() {
                bail!("values left out under \"other\": {}", v["other"]);
            }
            let mut series = Vec::new();
            for s in v["series"].as_array().ok_or_else(|| anyhow!("no series in {body}"))? {
                series.push((value_key(&s["value"])?, buckets(&s["buckets"])?));
            }
            series.sort();
            Answer::HistogramBy { series }
        }
    })
}

/// Why `got` is not `want`, or `None` when it is. A logs answer must be the expected page.
pub fn compare(q: &Query, want: &Answer, got: &Answer) -> Option<String> {
    match (want, got) {
        (Answer::Logs { count, records: w }, Answer::Logs { records: g, .. }) => {
            let Kind::Logs { limit, .. } = q.kind else { return Some("not a logs query".into()) };
            if g.len() as u64 != (*count).min(limit as u64) {
                return Some(format!("{} records, expected {} (of {count} matches)", g.len(), w.len()));
            }
            w.iter()
                .zip(g)
                .position(|(a, b)| a != b)
                .map(|i| format!("record {i} differs: expected {:?}, got {:?}", w[i], g[i]))
        }
        _ if want == got => None,
        _ => {
            let show = |a: &Answer| {
                let s = serde_json::to_string(a).unwrap_or_default();
                if s.len() > 300 {
                    format!("{}...", &s[..300])
                } else {
                    s
                }
            };
            Some(format!("expected {}, got {}", show(want), show(got)))
        }
    }
}

/// One query's outcome over its runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub id: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub error: Option<String>,
}

/// Runs `q` `warmup + runs` times against `base` and checks every answer against `want`.
pub fn run_query(base: &str, q: &Query, want: &Answer, warmup: usize, runs: usize) -> Outcome {
    let agent = agent();
    let (path, p) = request(q);
    let mut times = Vec::new();
    let mut error = None;
    for run in 0..warmup + runs.max(1) {
        let mut req = authorized(agent.get(&format!("{base}{path}")));
        for (k, v) in &p {
            req = req.query(k, v);
        }
        let started = Instant::now();
        let result = req.call().map_err(anyhow::Error::from).and_then(|r| Ok(r.into_string()?));
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match result.and_then(|body| parse_answer(q, &body)) {
            Ok(got) => {
                if let Some(why) = compare(q, want, &got) {
                    error = Some(why);
                }
            }
            Err(e) => error = Some(format!("{e:#}")),
        }
        if error.is_some() {
            break;
        }
        if run >= warmup {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = if times.is_empty() { f64::NAN } else { times[times.len() / 2] };
    Outcome {
        id: q.id.to_string(),
        median_ms: median,
        min_ms: times.first().copied().unwrap_or(f64::NAN),
        max_ms: times.last().copied().unwrap_or(f64::NAN),
        error,
    }
}
