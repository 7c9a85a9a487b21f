//! Loki's query API, enough for Grafana's Loki data source and logcli:
//! `/loki/api/v1/query_range`, `/query`, `/labels`, `/label/{name}/values`, `/series`,
//! `/index/stats`, `/format_query` and `/status/buildinfo`, answering in Loki's shapes
//! (`streams`, `matrix`, `vector`, `scalar`).
//!
//! A record is a stream entry: its labels are `app` and its tags (`key=value` → `key`, a bare
//! tag → an empty value; names made valid label names, `a.b` → `a_b`). The stream selector and
//! the line filters before any `line_format` are pushed down into the native query (apps, tags,
//! tag regexes, substrings, regexes: the same blocks pruned by the same bloom filters); what is
//! left (`| json`, `| logfmt`, label filters, `line_format`, and the matchers that cannot be
//! pushed down exactly) runs on each record read. Metric queries read the matching records of
//! `[start - range, end]` once and evaluate every step from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use logpipe_model::{AppName, Record};
use logpipe_query::Expr;
use logpipe_storage::{Answer, Cursor, Order, Request};
use serde_json::{json, Value};

use crate::auth::Access;
use crate::query::{run_query, run_query_then};
use crate::{ApiError, AppState};
use logpipe_logql::{
    self as logql, pushdown, Labels, LogExpr, MatchOp, Matcher, MetricExpr, Pipeline, Query, RangeFn, Val,
};

/// Points one range query may return per series (Loki's limit too).
pub const MAX_POINTS: i64 = 11_000;
/// Records read per page while scanning.
const PAGE: usize = 5_000;
/// Distinct streams the metadata endpoints look at.
const MAX_STREAMS: usize = 100_000;
/// Bytes one sample of a metric query is counted as against `--query-memory-bytes`.
const SAMPLE_BYTES: usize = 48;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_query", msg.into())
}

/// The parameters of the query string and, for POST, of a form body.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(raw: Option<&str>, body: &[u8]) -> Params {
        let mut v: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        v.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        Params(v)
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect()
    }

    /// A time as Loki takes it: nanoseconds, seconds (10 digits or fewer, or with a fraction)
    /// or RFC 3339.
    fn time(&self, k: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(k).filter(|v| !v.is_empty()) else { return Ok(None) };
        let wrong =
            || ApiError::bad_request("bad_parameter", format!("{k}: {v:?} is not a time")).with("parameter", k.into());
        if v.contains('.') {
            if let Ok(s) = v.parse::<f64>() {
                return Ok(Some((s * 1e9).round() as i64));
            }
        }
        if let Ok(n) = v.parse::<i64>() {
            return Ok(Some(if v.trim_start_matches('-').len() <= 10 { n.saturating_mul(1_000_000_000) } else { n }));
        }
        logpipe_model::parse_time(v).map(Some).map_err(|_| wrong())
    }

    /// A duration: `5m`, `1h30m`, or seconds (`15`, `0.5`).
    fn duration(&self, k: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(k).filter(|v| !v.is_empty()) else { return Ok(None) };
        let d = v
            .parse::<f64>()
            .ok()
            .map(|s| (s * 1e9) as i64)
            .or_else(|| logql::parse_duration(v))
            .filter(|d| *d > 0)
            .ok_or_else(|| {
                ApiError::bad_request("bad_parameter", format!("{k}: {v:?} is not a positive duration"))
                    .with("parameter", k.into())
            })?;
        Ok(Some(d))
    }

    /// `[start, end]` with Loki's defaults: `end` now, `start` `since` (or `default_since`)
    /// before it.
    fn range(&self, default_since: i64) -> Result<(i64, i64), ApiError> {
        let end = self.time("end")?.unwrap_or_else(crate::now_ns);
        let since = self.duration("since")?.unwrap_or(default_since);
        let start = self.time("start")?.unwrap_or(end.saturating_sub(since));
        if start > end {
            return Err(ApiError::bad_request("bad_parameter", "start: after end").with("parameter", "start".into()));
        }
        // times before 1970 or a span past the ns range are not logs' times: refused, so the
        // arithmetic on them cannot overflow
        if start < 0 || end.checked_sub(start).is_none() {
            return Err(ApiError::bad_request("bad_parameter", "start: before 1970").with("parameter", "start".into()));
        }
        Ok((start, end))
    }

    fn query(&self) -> Result<Query, ApiError> {
        let text = self.get("query").ok_or_else(|| {
            ApiError::bad_request("bad_parameter", "query: required").with("parameter", "query".into())
        })?;
        logql::parse(text).map_err(|e| bad(e.to_string()))
    }
}

/// A stream's labels from a record's app and tags.
fn base_labels(app: &AppName, tags: &[String]) -> Labels {
    let mut l = Labels::new();
    for t in tags {
        let (k, v) = t.split_once('=').unwrap_or((t, ""));
        l.insert(logql::sanitize_label(k), v.to_string());
    }
    l.insert("app".into(), app.to_string());
    l
}

/// The stream selector, compiled for checking labels.
struct Selector(Vec<(String, MatchOp, String, Option<regex::Regex>)>);

impl Selector {
    fn new(ms: &[Matcher]) -> Result<Selector, ApiError> {
        ms.iter()
            .map(|m| {
                let re = match m.op {
                    MatchOp::Re | MatchOp::Nre => Some(logql::anchored(&m.value).map_err(bad)?),
                    _ => None,
                };
                Ok((m.name.clone(), m.op, m.value.clone(), re))
            })
            .collect::<Result<_, _>>()
            .map(Selector)
    }

    fn matches(&self, l: &Labels) -> bool {
        self.0.iter().all(|(name, op, value, re)| {
            let v = l.get(name).map_or("", String::as_str);
            match (op, re) {
                (MatchOp::Eq, _) => v == value,
                (MatchOp::Ne, _) => v != value,
                (MatchOp::Re, Some(re)) => re.is_match(v),
                (MatchOp::Nre, Some(re)) => !re.is_match(v),
                _ => unreachable!("regex matchers carry their regex"),
            }
        })
    }
}

/// The native query for `log` over `[from, to)` within what the caller may read; `None` when
/// nothing can match.
fn native(
    access: &Access,
    log: Option<&LogExpr>,
    from: i64,
    to: i64,
) -> Result<Option<logpipe_storage::Query>, ApiError> {
    let mut q = logpipe_storage::Query { from: Some(from), to: Some(to), ..Default::default() };
    q.app_scope = access.read_scope()?;
    if let Some(log) = log {
        let Some(parts) = pushdown(log) else { return Ok(None) };
        if !parts.is_empty() {
            q.and_expr(Expr::and(parts), 0).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(Some(q))
}

/// What one record became: `None` when the selector or a stage dropped it.
type PerRecord<T> = Arc<dyn Fn(&Record) -> Option<T> + Send + Sync>;

/// Reads the records of `q` in `order`, a page at a time, turning each into a `T` with
/// `per_record` on the query pool (the LogQL stages are CPU work), and hands them to `each`
/// until it says stop or all are read. Returns the records and message bytes read.
async fn scan<T: Send + 'static>(
    st: &Arc<AppState>,
    q: logpipe_storage::Query,
    order: Order,
    per_record: PerRecord<T>,
    mut each: impl FnMut(T) -> Result<bool, ApiError>,
) -> Result<(u64, u64), ApiError> {
    let mut cursor: Option<Cursor> = None;
    let (mut read, mut bytes) = (0u64, 0u64);
    loop {
        let req = Request::Logs { limit: PAGE, order, cursor };
        let f = per_record.clone();
        let ((items, n, b, next), _) = run_query_then(st, q.clone(), req, move |a| {
            let Answer::Logs { records, next } = a else { unreachable!("logs answer logs") };
            let b: u64 = records.iter().map(|r| r.message.len() as u64).sum();
            let items: Vec<T> = records.iter().filter_map(|r| f(r)).collect();
            (items, records.len() as u64, b, next)
        })
        .await?;
        read += n;
        bytes += b;
        for it in items {
            if !each(it)? {
                return Ok((read, bytes));
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok((read, bytes)),
        }
    }
}

/// The selector and the stages of `log` over one record: its labels, time and line, or `None`.
fn pipeline_of(log: &LogExpr) -> Result<PerRecord<(Labels, i64, String)>, ApiError> {
    let selector = Selector::new(&log.matchers)?;
    let pipeline = Pipeline::new(&log.stages).map_err(bad)?;
    Ok(Arc::new(move |r: &Record| {
        let mut labels = base_labels(&r.app, &r.tags);
        if !selector.matches(&labels) {
            return None;
        }
        let line = pipeline.run(&r.message, &mut labels)?;
        Some((labels, r.ts, line))
    }))
}

fn success(data: Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

fn seconds(ns: i64) -> Value {
    serde_json::Number::from_f64(ns as f64 / 1e9).map_or(Value::Null, Value::Number)
}

fn sample_value(v: f64) -> Value {
    Value::from(if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    })
}

fn stats(read: u64, bytes: u64, returned: usize, started: Instant) -> Value {
    let secs = started.elapsed().as_secs_f64();
    json!({"summary": {
        "bytesProcessedPerSecond": (bytes as f64 / secs.max(1e-9)) as u64,
        "linesProcessedPerSecond": (read as f64 / secs.max(1e-9)) as u64,
        "totalBytesProcessed": bytes,
        "totalLinesProcessed": read,
        "totalEntriesReturned": returned,
        "execTime": secs,
        "queueTime": 0,
        "subqueries": 0,
    }})
}

async fn within_timeout<T>(
    st: &AppState,
    f: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(st.cfg.query_timeout, f).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "query_timeout",
            format!("the query ran longer than {:?} and was stopped", st.cfg.query_timeout),
        ))
    })
}

// ---- log queries ----

async fn log_query(
    st: &Arc<AppState>,
    access: &Access,
    log: &LogExpr,
    (start, end): (i64, i64),
    limit: usize,
    order: Order,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let per_record = pipeline_of(log)?;
    let mut streams: BTreeMap<Labels, Vec<(i64, String)>> = BTreeMap::new();
    let mut found = 0usize;
    let (mut read, mut bytes) = (0, 0);
    // Loki's end is exclusive for log queries
    if let Some(q) = native(access, Some(log), start, end)? {
        if limit > 0 {
            (read, bytes) = scan(st, q, order, per_record, |(labels, ts, line)| {
                if found < limit {
                    streams.entry(labels).or_default().push((ts, line));
                    found += 1;
                }
                Ok(found < limit)
            })
            .await?;
        }
    }
    let result: Vec<Value> = streams
        .into_iter()
        .map(|(labels, values)| {
            let values: Vec<Value> = values.into_iter().map(|(t, l)| json!([t.to_string(), l])).collect();
            json!({"stream": labels, "values": values})
        })
        .collect();
    Ok(success(json!({"resultType": "streams", "result": result, "stats": stats(read, bytes, found, started)})))
}

// ---- metric queries ----

struct Eval<'a> {
    st: &'a Arc<AppState>,
    access: &'a Access,
    steps: Vec<i64>,
    /// Samples read so far, against the query's memory budget.
    samples: usize,
    max_samples: usize,
    read: u64,
    bytes: u64,
}

impl Eval<'_> {
    /// Evaluates `e`: its range functions first (each reads the store once), in the order
    /// [`logql::combine`] takes them back.
    async fn eval(&mut self, e: &MetricExpr) -> Result<Val, ApiError> {
        let mut ranges = Vec::new();
        logql::collect_ranges(e, &mut ranges);
        let mut values = Vec::with_capacity(ranges.len());
        for (func, log, range) in ranges {
            values.push(self.range(func, log, range).await?);
        }
        logql::combine(e, &self.steps, &mut values.into_iter()).map_err(bad)
    }

    async fn range(&mut self, func: RangeFn, log: &LogExpr, range: i64) -> Result<Val, ApiError> {
        let per_record = pipeline_of(log)?;
        let (first, last) = (self.steps[0], *self.steps.last().expect("at least one step"));
        // every window is (t - range, t]
        let mut series: HashMap<Labels, Vec<(i64, u64)>> = HashMap::new();
        if let Some(q) = native(self.access, Some(log), first - range + 1, last.saturating_add(1))? {
            let (samples, max) = (&mut self.samples, self.max_samples);
            let (read, bytes) = scan(self.st, q, Order::Asc, per_record, |(labels, ts, line)| {
                *samples += 1;
                if *samples > max {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "query_too_big",
                        format!(
                            "the query reads more than {max} samples (--query-memory-bytes); narrow the time range \
                             or the selector"
                        ),
                    ));
                }
                series.entry(labels).or_default().push((ts, line.len() as u64));
                Ok(true)
            })
            .await?;
            self.read += read;
            self.bytes += bytes;
        }
        Ok(logql::windows(func, range, &self.steps, series))
    }
}

async fn metric_query(
    st: &Arc<AppState>,
    access: &Access,
    expr: &MetricExpr,
    steps: Vec<i64>,
    instant: bool,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut ev = Eval {
        st,
        access,
        steps,
        samples: 0,
        max_samples: (st.cfg.query_memory_bytes / SAMPLE_BYTES).max(1),
        read: 0,
        bytes: 0,
    };
    let val = ev.eval(expr).await?;
    let steps = std::mem::take(&mut ev.steps);
    let stats = stats(ev.read, ev.bytes, 0, started);
    let data = match (val, instant) {
        (Val::Scalar(v), true) => json!({"resultType": "scalar", "result": [seconds(steps[0]), sample_value(v)]}),
        (Val::Vector(mut v), true) => {
            let result: Vec<Value> = v
                .remove(0)
                .into_iter()
                .map(|(l, x)| json!({"metric": l, "value": [seconds(steps[0]), sample_value(x)]}))
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        (val, false) => {
            let per_step = match val {
                Val::Scalar(x) => steps.iter().map(|_| vec![(Labels::new(), x)]).collect(),
                Val::Vector(v) => v,
            };
            let mut series: BTreeMap<Labels, Vec<Value>> = BTreeMap::new();
            for (t, samples) in steps.iter().zip(per_step) {
                for (l, x) in samples {
                    series.entry(l).or_default().push(json!([seconds(*t), sample_value(x)]));
                }
            }
            let result: Vec<Value> =
                series.into_iter().map(|(l, values)| json!({"metric": l, "values": values})).collect();
            json!({"resultType": "matrix", "result": result})
        }
    };
    let mut data = data;
    data["stats"] = stats;
    Ok(success(data))
}

fn limit(st: &AppState, p: &Params) -> Result<usize, ApiError> {
    let n = match p.get("limit") {
        None => 100,
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::bad_request("bad_parameter", format!("limit: {v:?} is not a number"))
                .with("parameter", "limit".into())
        })?,
    };
    if n > st.cfg.max_query_limit {
        return Err(ApiError::bad_request(
            "bad_parameter",
            format!("limit: {n} is over the maximum of {} (--max-query-limit)", st.cfg.max_query_limit),
        )
        .with("parameter", "limit".into()));
    }
    Ok(n)
}

fn direction(p: &Params) -> Result<Order, ApiError> {
    match p.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => Ok(Order::Desc),
        Some("forward") => Ok(Order::Asc),
        Some(d) => Err(ApiError::bad_request("bad_parameter", format!("direction: {d:?}; use forward or backward"))
            .with("parameter", "direction".into())),
    }
}

/// Runs a handler's work, counting a refusal under its endpoint and timing an answer.
async fn timed(
    st: &AppState,
    endpoint: &'static str,
    work: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let res = work.await;
    match &res {
        Err(e) => st.metrics.rejected.with_label_values(&[endpoint, e.reason()]).inc(),
        Ok(_) => st.metrics.query_seconds.with_label_values(&[endpoint]).observe(started.elapsed().as_secs_f64()),
    }
    res
}

/// `GET|POST /loki/api/v1/query_range`.
pub async fn query_range(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    timed(&st, "loki_query_range", async {
        let p = Params::new(raw.as_deref(), &body);
        let q = p.query()?;
        let (start, end) = p.range(3_600_000_000_000)?;
        match q {
            Query::Log(log) => {
                let (limit, order) = (limit(&st, &p)?, direction(&p)?);
                within_timeout(&st, log_query(&st, &access, &log, (start, end), limit, order)).await
            }
            Query::Metric(m) => {
                // Loki's default step gives about 250 points over the range
                let step = p.duration("step")?.unwrap_or_else(|| ((end - start) / 250).max(1_000_000_000));
                if (end - start) / step >= MAX_POINTS {
                    return Err(ApiError::bad_request(
                        "bad_parameter",
                        format!("step: more than {MAX_POINTS} points over the range; use a larger step"),
                    )
                    .with("parameter", "step".into()));
                }
                let steps: Vec<i64> = (0..=(end - start) / step).map(|k| start + k * step).collect();
                within_timeout(&st, metric_query(&st, &access, &m, steps, false)).await
            }
        }
    })
    .await
}

/// `GET|POST /loki/api/v1/query`: an instant query at `time` (default now). A log query
/// answers the newest `limit` entries of the hour before `time`.
pub async fn query(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    timed(&st, "loki_query", async {
        let p = Params::new(raw.as_deref(), &body);
        let q = p.query()?;
        let time = p.time("time")?.unwrap_or_else(crate::now_ns).max(0);
        match q {
            Query::Log(log) => {
                let (limit, order) = (limit(&st, &p)?, direction(&p)?);
                let range = (time - 3_600_000_000_000, time.saturating_add(1));
                within_timeout(&st, log_query(&st, &access, &log, range, limit, order)).await
            }
            Query::Metric(m) => within_timeout(&st, metric_query(&st, &access, &m, vec![time], true)).await,
        }
    })
    .await
}

/// The distinct streams of `[start, end]` (within the caller's scope) whose labels match
/// `selector`, if any.
async fn streams(
    st: &Arc<AppState>,
    access: &Access,
    selector: Option<&LogExpr>,
    (start, end): (i64, i64),
) -> Result<Vec<Labels>, ApiError> {
    let Some(q) = native(access, selector, start, end.saturating_add(1))? else { return Ok(Vec::new()) };
    let check = selector.map(|s| Selector::new(&s.matchers)).transpose()?;
    let (Answer::Streams { streams, .. }, _) = run_query(st, q, Request::Streams { limit: MAX_STREAMS }).await? else {
        unreachable!("streams answer streams")
    };
    let mut out: BTreeSet<Labels> = BTreeSet::new();
    for (app, tags, _) in streams {
        let l = base_labels(&app, &tags);
        if check.as_ref().is_none_or(|c| c.matches(&l)) {
            out.insert(l);
        }
    }
    Ok(out.into_iter().collect())
}

/// A `query` or `match[]` parameter that must be a stream selector (line filters are ignored).
fn selector_param(v: &str) -> Result<LogExpr, ApiError> {
    match logql::parse(v).map_err(|e| bad(e.to_string()))? {
        Query::Log(l) => Ok(LogExpr { matchers: l.matchers, stages: Vec::new() }),
        Query::Metric(_) => Err(bad("expected a stream selector such as {app=\"web\"}")),
    }
}

const SIX_HOURS: i64 = 6 * 3_600_000_000_000;

/// The streams of the optional `query` selector over `[start, end]` (default: the last 6 hours).
async fn streams_of_query(st: &Arc<AppState>, access: &Access, p: &Params) -> Result<Vec<Labels>, ApiError> {
    let sel = p.get("query").map(selector_param).transpose()?;
    streams(st, access, sel.as_ref(), p.range(SIX_HOURS)?).await
}

/// `GET|POST /loki/api/v1/labels`: label names of the streams in the range.
pub async fn labels(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    timed(&st, "loki_labels", async {
        let found = streams_of_query(&st, &access, &Params::new(raw.as_deref(), &body)).await?;
        let names: BTreeSet<&String> = found.iter().flat_map(|l| l.keys()).collect();
        Ok(success(json!(names)))
    })
    .await
}

/// `GET|POST /loki/api/v1/label/{name}/values`.
pub async fn label_values(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    timed(&st, "loki_label_values", async {
        let found = streams_of_query(&st, &access, &Params::new(raw.as_deref(), &body)).await?;
        let values: BTreeSet<&String> = found.iter().filter_map(|l| l.get(&name)).collect();
        Ok(success(json!(values)))
    })
    .await
}

/// `GET|POST /loki/api/v1/series`: the label sets of the streams matching any `match[]`.
pub async fn series(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    timed(&st, "loki_series", async {
        let p = Params::new(raw.as_deref(), &body);
        let range = p.range(SIX_HOURS)?;
        let mut matches = p.all("match[]");
        matches.extend(p.all("match"));
        let mut out: BTreeSet<Labels> = BTreeSet::new();
        if matches.is_empty() {
            out.extend(streams(&st, &access, None, range).await?);
        }
        for m in matches {
            out.extend(streams(&st, &access, Some(&selector_param(m)?), range).await?);
        }
        Ok(success(json!(out)))
    })
    .await
}

/// `GET|POST /loki/api/v1/index/stats`: streams and entries matching a selector. `chunks`
/// counts streams (logpipe has no chunks) and `bytes` is the message bytes of the entries.
pub async fn index_stats(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    timed(&st, "loki_index_stats", async {
        let p = Params::new(raw.as_deref(), &body);
        let sel = selector_param(p.get("query").unwrap_or("{app=~\".+\"}"))?;
        let (start, end) = p.range(3_600_000_000_000)?;
        let check = Selector::new(&sel.matchers)?;
        let per_record: PerRecord<(Labels, u64)> = Arc::new(move |r: &Record| {
            let l = base_labels(&r.app, &r.tags);
            check.matches(&l).then_some((l, r.message.len() as u64))
        });
        let (mut entries, mut bytes) = (0u64, 0u64);
        let mut seen: BTreeSet<Labels> = BTreeSet::new();
        if let Some(q) = native(&access, Some(&sel), start, end.saturating_add(1))? {
            within_timeout(
                &st,
                scan(&st, q, Order::Asc, per_record, |(l, b)| {
                    entries += 1;
                    bytes += b;
                    if seen.len() < MAX_STREAMS {
                        seen.insert(l);
                    }
                    Ok(true)
                }),
            )
            .await?;
        }
        Ok(axum::Json(json!({"streams": seen.len(), "chunks": seen.len(), "entries": entries, "bytes": bytes}))
            .into_response())
    })
    .await
}

/// `GET|POST /loki/api/v1/format_query`: the query printed in canonical form.
pub async fn format_query(RawQuery(raw): RawQuery, body: Bytes) -> Result<Response, ApiError> {
    let p = Params::new(raw.as_deref(), &body);
    Ok(success(Value::from(p.query()?.to_string())))
}

/// `GET /loki/api/v1/status/buildinfo`: the Loki API version this follows.
pub async fn buildinfo() -> Response {
    axum::Json(json!({
        "version": "3.0.0",
        "revision": concat!("logpipe-", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loki_times() {
        let p = Params::new(Some("a=1700000000&b=1700000000000000000&c=1700000000.5&d=2023-11-14T22:13:20Z&e=x"), b"");
        assert_eq!(p.time("a").unwrap(), Some(1_700_000_000_000_000_000));
        assert_eq!(p.time("b").unwrap(), Some(1_700_000_000_000_000_000));
        assert_eq!(p.time("c").unwrap(), Some(1_700_000_000_500_000_000));
        assert_eq!(p.time("d").unwrap(), Some(1_700_000_000_000_000_000));
        assert!(p.time("e").is_err());
        let p = Params::new(Some("step=15&s2=1m&s3=0"), b"");
        assert_eq!(p.duration("step").unwrap(), Some(15_000_000_000));
        assert_eq!(p.duration("s2").unwrap(), Some(60_000_000_000));
        assert!(p.duration("s3").is_err());
    }
}
