//! `GET /api/v1/logs`, `/api/v1/count`, `/api/v1/histogram`, and `/api/v1/query`, which
//! answers in the shape the `q=` pipes ask for (records, a count, top values or buckets).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use logpipe_model::{format_time, Record};
use logpipe_query::Pipe;
use logpipe_storage::{Answer, Cost, CostSummary, Order, Request};
use serde_json::{json, Map, Value};

use crate::auth::Access;
use crate::config::{DEFAULT_QUERY_LIMIT, DEFAULT_SERIES_LIMIT, MAX_HISTOGRAM_BUCKETS};
use crate::params::{self, QueryParams};
use crate::{ApiError, AppState};

pub const NEXT_CURSOR_HEADER: &str = "logpipe-next-cursor";

/// What a request asks for, from its endpoint, parameters and pipes.
enum Shape {
    Logs { limit: usize, order: Order, fields: Option<Vec<String>> },
    Count,
    CountBy { key: String, limit: usize },
    Histogram { step: i64 },
    HistogramBy { step: i64, key: String, limit: usize },
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_query", msg.into())
}

/// Folds the pipes into the shape of the answer; `endpoint` fixes the kind unless it is `query`.
fn shape(st: &AppState, p: &QueryParams, endpoint: &str) -> Result<Shape, ApiError> {
    let (mut limit, mut order, mut fields, mut agg) = (p.limit, p.order, None, None);
    for pipe in &p.pipes {
        match pipe {
            Pipe::Limit(n) if p.limit.is_some() => {
                return Err(bad(format!("q: `| limit {n}` and the limit parameter both set a limit")))
            }
            Pipe::Limit(n) => limit = Some(*n),
            Pipe::Sort(_) if p.order.is_some() => {
                return Err(bad(format!("q: `| {pipe}` and the order parameter both set an order")))
            }
            Pipe::Sort(o) => {
                order = Some(match o {
                    logpipe_query::Order::Asc => Order::Asc,
                    logpipe_query::Order::Desc => Order::Desc,
                })
            }
            Pipe::Fields(f) => fields = Some(f.clone()),
            Pipe::Count | Pipe::CountBy(_) | Pipe::Histogram { .. } => agg = Some(pipe),
        }
    }
    let check_limit = |limit: usize| {
        if limit > st.cfg.max_query_limit {
            return Err(ApiError::bad_request(
                "bad_parameter",
                format!(
                    "limit: {limit} is over the maximum of {}; page with the cursor instead",
                    st.cfg.max_query_limit
                ),
            ));
        }
        Ok(limit)
    };
    let wrong =
        |what: &str| bad(format!("q: `| {what}` does not fit /api/v1/{endpoint}; use /api/v1/query for any pipe"));
    let no_record_pipes = |what: &str| {
        if fields.is_some() || order.is_some() && p.order.is_none() {
            return Err(bad(format!("q: `| fields` and `| sort` shape records, not {what}")));
        }
        Ok(())
    };
    match (endpoint, agg) {
        ("logs" | "query", None) => Ok(Shape::Logs {
            limit: check_limit(limit.unwrap_or(DEFAULT_QUERY_LIMIT))?,
            order: order.unwrap_or(Order::Desc),
            fields,
        }),
        ("count" | "query", Some(Pipe::Count)) | ("count", None) => {
            no_record_pipes("a count")?;
            if limit.is_some() {
                return Err(bad("q: `| limit` does not apply to a count"));
            }
            Ok(Shape::Count)
        }
        ("query", Some(Pipe::CountBy(key))) => {
            no_record_pipes("top values")?;
            Ok(Shape::CountBy { key: key.clone(), limit: check_limit(limit.unwrap_or(DEFAULT_QUERY_LIMIT))? })
        }
        ("histogram" | "query", Some(Pipe::Histogram { step, by })) => {
            if p.step.is_some_and(|s| s != *step) {
                return Err(bad("q: `| histogram` and the step parameter disagree"));
            }
            no_record_pipes("buckets")?;
            match by {
                Some(key) => Ok(Shape::HistogramBy {
                    step: *step,
                    key: key.clone(),
                    limit: check_limit(limit.unwrap_or(DEFAULT_SERIES_LIMIT))?,
                }),
                None if limit.is_some() => Err(bad("q: `| limit` applies to `histogram ... by (key)` only")),
                None => Ok(Shape::Histogram { step: *step }),
            }
        }
        ("histogram", None) => {
            no_record_pipes("buckets")?;
            let step = p.step.ok_or_else(|| {
                ApiError::bad_request("bad_parameter", "step: required, e.g. step=5m").with("parameter", "step".into())
            })?;
            Ok(Shape::Histogram { step })
        }
        (_, Some(agg)) => Err(wrong(&agg.to_string())),
        (_, None) => unreachable!("every endpoint is handled above"),
    }
}

/// Counts a refused request under its endpoint and reason.
fn counted(st: &AppState, endpoint: &'static str, res: Result<Response, ApiError>) -> Result<Response, ApiError> {
    if let Err(e) = &res {
        st.metrics.rejected.with_label_values(&[endpoint, e.reason()]).inc();
    }
    res
}

/// What a query cost, set on every answer as a header.
pub const COST_HEADER: &str = "logpipe-cost";

/// Cancels the query when dropped: when the handler's future is dropped because the client
/// went away, the work on the pool stops at its next block.
struct CancelOnDrop(Arc<Cost>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn run(st: &Arc<AppState>, p: QueryParams, req: Request) -> Result<(Answer, Spent), ApiError> {
    run_inner(st, p.query, req, |a| a).await
}

/// What a query cost, and (cluster mode) what it could not reach: an answer with `missing`
/// is partial.
pub(crate) struct Spent {
    pub cost: CostSummary,
    pub missing: Vec<String>,
}

impl std::ops::Deref for Spent {
    type Target = CostSummary;
    fn deref(&self) -> &CostSummary {
        &self.cost
    }
}

/// Header set on an answer that is missing data it could not reach (cluster mode).
pub const PARTIAL_HEADER: &str = "logpipe-partial";

/// Marks a JSON answer as partial, naming what is missing.
fn mark_partial(body: &mut Value, spent: &Spent) {
    if !spent.missing.is_empty() {
        body["partial"] = json!(true);
        body["missing"] = json!(spent.missing);
    }
}

/// Runs `q` on the query pool within the query timeout and memory budget. An answer that
/// would be partial (cluster mode: data that cannot be reached) is refused with `503`.
pub(crate) async fn run_query(
    st: &Arc<AppState>,
    q: logpipe_storage::Query,
    req: Request,
) -> Result<(Answer, CostSummary), ApiError> {
    run_query_then(st, q, req, |a| a).await
}

/// [`run_query`], then `then` on the answer in the same pool job: work on the answer's
/// records (a compatibility API's pipeline) stays off the async runtime too.
pub(crate) async fn run_query_then<R: Send + 'static>(
    st: &Arc<AppState>,
    q: logpipe_storage::Query,
    req: Request,
    then: impl FnOnce(Answer) -> R + Send + 'static,
) -> Result<(R, CostSummary), ApiError> {
    let (r, spent) = run_inner(st, q, req, then).await?;
    if !spent.missing.is_empty() {
        return Err(ApiError::unavailable(
            "data_unreachable",
            format!("part of the data cannot be reached now: {}", spent.missing.join("; ")),
        )
        .with("missing", json!(spent.missing)));
    }
    Ok((r, spent.cost))
}

/// Where a query runs: the local engine, or (cluster mode) a view of the catalog's segments
/// and the store nodes' held batches.
enum Target {
    Engine(Arc<logpipe_storage::Engine>),
    Cluster(logpipe_cluster::reader::View),
}

async fn run_inner<R: Send + 'static>(
    st: &Arc<AppState>,
    q: logpipe_storage::Query,
    req: Request,
    then: impl FnOnce(Answer) -> R + Send + 'static,
) -> Result<(R, Spent), ApiError> {
    let started = Instant::now();
    let place = st.query_pool.admit(StatusCode::SERVICE_UNAVAILABLE)?;
    let target = match (&st.reader, &st.cfg.bus) {
        (Some(reader), _) => Target::Cluster(reader.view(&q).await),
        (None, None) => Target::Engine(st.engine()?.clone()),
        (None, Some(_)) => return Err(ApiError::no_query_role()),
    };
    let mut missing = match &target {
        Target::Cluster(v) => v.missing.clone(),
        Target::Engine(_) => Vec::new(),
    };
    let regex_limit = st.cfg.engine.regex_size_limit;
    let cost = Arc::new(Cost::with_memory_limit(st.cfg.query_memory_bytes as u64));
    let _cancel = CancelOnDrop(cost.clone());
    let work_cost = cost.clone();
    // the query (regexes included) compiles on the pool: compiling a large regex is CPU work
    // that must not run on the async runtime. The pool place goes with the work, so a timed
    // out query keeps it until it has really stopped.
    let work = st.query_pool.run(move || {
        let _place = place;
        match target {
            Target::Engine(engine) => engine.query_with_cost(&q, &req, &work_cost).map(then),
            Target::Cluster(v) => {
                logpipe_storage::query_view(&v.segments, &v.chunks, &q, &req, &work_cost, regex_limit).map(then)
            }
        }
    });
    match tokio::time::timeout(st.cfg.query_timeout, work).await {
        Ok(answer) => {
            let answer = answer??;
            let cost = cost.summary();
            if cost.blocks_unavailable > 0 {
                missing.push(format!("{} blocks could not be fetched from object storage", cost.blocks_unavailable));
            }
            Ok((answer, Spent { cost, missing }))
        }
        Err(_) => {
            cost.cancel();
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "query_timeout",
                format!(
                    "the query ran longer than {:?} and was stopped; narrow it (time range, apps, tags) \
                     or raise --query-timeout",
                    st.cfg.query_timeout
                ),
            )
            .with("cost", cost_json(&cost.summary(), started)))
        }
    }
}

fn cost_header(c: &CostSummary, started: Instant) -> String {
    let mut out: Vec<String> = c.fields().iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push(format!("ms={:.3}", started.elapsed().as_secs_f64() * 1e3));
    out.join(" ")
}

fn cost_json(c: &CostSummary, started: Instant) -> Value {
    let mut m: Map<String, Value> = c.fields().iter().map(|&(k, v)| (k.to_string(), Value::from(v))).collect();
    m.insert("ms".into(), Value::from(started.elapsed().as_secs_f64() * 1e3));
    Value::Object(m)
}

/// The plan a request runs, after `q=` and the parameters are merged.
fn plan_json(p: &QueryParams, shape: &Shape) -> Value {
    let q = &p.query;
    let t = |x: Option<i64>| x.map(format_time);
    let answer = match shape {
        Shape::Logs { limit, order, fields } => {
            json!({"kind": "logs", "limit": limit, "order": format!("{order:?}").to_lowercase(), "fields": fields})
        }
        Shape::Count => json!({"kind": "count"}),
        Shape::CountBy { key, limit } => json!({"kind": "count_by", "key": key, "limit": limit}),
        Shape::Histogram { step } => json!({"kind": "histogram", "step_ns": step}),
        Shape::HistogramBy { step, key, limit } => {
            json!({"kind": "histogram_by", "step_ns": step, "key": key, "limit": limit})
        }
    };
    json!({
        "apps": q.apps.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "from": t(q.from),
        "to": t(q.to),
        "tags_all": q.tags_all,
        "tags_any": q.tags_any,
        "tags_none": q.tags_none,
        "contains": q.contains,
        "icontains": q.icontains,
        "regex": q.regex,
        "expr": q.expr.as_ref().map(|e| e.to_string()),
        "app_scope": q.app_scope.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "answer": answer,
    })
}

pub async fn logs(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    counted(&st, "logs", answer(&st, &access, raw, "logs", &["limit", "order", "cursor"]).await)
}

pub async fn count(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    counted(&st, "count", answer(&st, &access, raw, "count", &[]).await)
}

pub async fn histogram(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    counted(&st, "histogram", answer(&st, &access, raw, "histogram", &["step", "fill"]).await)
}

pub async fn query(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    counted(&st, "query", answer(&st, &access, raw, "query", &["limit", "order", "cursor", "step", "fill"]).await)
}

/// `GET /api/v1/explain`: runs the query as `/api/v1/query` would and answers with the plan
/// (filters after merging `q=` with the parameters, the expression left to evaluate per row,
/// the kind of answer) and what it cost, instead of the records.
pub async fn explain(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    counted(&st, "explain", explain_inner(&st, &access, raw).await)
}

async fn explain_inner(st: &Arc<AppState>, access: &Access, raw: Option<String>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut p = params::parse(raw.as_deref(), &["limit", "order", "cursor", "step", "fill"])?;
    p.query.app_scope = access.read_scope()?;
    let shape = shape(st, &p, "query")?;
    let plan = plan_json(&p, &shape);
    let req = match shape {
        Shape::Logs { limit, order, .. } => Request::Logs { limit, order, cursor: p.cursor },
        Shape::Count => Request::Count,
        Shape::CountBy { key, limit } => Request::CountBy { key, limit },
        Shape::Histogram { step } => Request::Histogram { step },
        Shape::HistogramBy { step, key, limit } => Request::HistogramBy { step, key, limit },
    };
    let (answer, cost) = run(st, p, req).await?;
    let matched = match answer {
        Answer::Logs { records, .. } => json!({"records": records.len()}),
        Answer::Count(n) => json!({"count": n}),
        Answer::Values { total, .. } | Answer::Streams { total, .. } => json!({"distinct": total}),
        Answer::Histogram(b) => json!({"buckets": b.len()}),
        Answer::Series { series, total, .. } => json!({"series": series.len(), "distinct": total}),
    };
    st.metrics.query_seconds.with_label_values(&["explain"]).observe(started.elapsed().as_secs_f64());
    Ok(axum::Json(json!({"plan": plan, "result": matched, "cost": cost_json(&cost, started)})).into_response())
}

async fn answer(
    st: &Arc<AppState>,
    access: &Access,
    raw: Option<String>,
    endpoint: &'static str,
    extra: &[&str],
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut p = params::parse(raw.as_deref(), extra)?;
    // what the caller may read is part of the query: every answer is computed within it
    p.query.app_scope = access.read_scope()?;
    let spent: Spent;
    let resp = match shape(st, &p, endpoint)? {
        Shape::Logs { limit, order, fields } => {
            let req = Request::Logs { limit, order, cursor: p.cursor };
            let (Answer::Logs { records, next }, cost) = run(st, p, req).await? else {
                unreachable!("logs answer logs")
            };
            spent = cost;
            let mut body = Vec::with_capacity(records.len() * 256);
            for r in &records {
                write_record(&mut body, r, fields.as_deref());
            }
            let mut resp = ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
            if let Some(c) = next {
                if let Ok(v) = HeaderValue::from_str(&c.encode()) {
                    resp.headers_mut().insert(NEXT_CURSOR_HEADER, v);
                }
            }
            resp
        }
        Shape::Count => {
            let (Answer::Count(n), cost) = run(st, p, Request::Count).await? else {
                unreachable!("count answers a count")
            };
            let mut body = json!({ "count": n });
            mark_partial(&mut body, &cost);
            spent = cost;
            axum::Json(body).into_response()
        }
        Shape::CountBy { key, limit } => {
            let req = Request::CountBy { key: key.clone(), limit };
            let (Answer::Values { values, total }, cost) = run(st, p, req).await? else {
                unreachable!("count by answers values")
            };
            let values: Vec<_> = values.into_iter().map(|(v, n)| json!({"value": v, "count": n})).collect();
            let mut body = json!({ "by": key, "values": values, "distinct": total });
            mark_partial(&mut body, &cost);
            spent = cost;
            axum::Json(body).into_response()
        }
        Shape::Histogram { step } => {
            let (resp, cost) = histogram_answer(st, p, step, None).await?;
            spent = cost;
            resp
        }
        Shape::HistogramBy { step, key, limit } => {
            let (resp, cost) = histogram_answer(st, p, step, Some((key, limit))).await?;
            spent = cost;
            resp
        }
    };
    let mut resp = resp;
    if let Ok(v) = HeaderValue::from_str(&cost_header(&spent, started)) {
        resp.headers_mut().insert(COST_HEADER, v);
    }
    if !spent.missing.is_empty() {
        // an NDJSON page has no room for a flag: every answer carries it as a header
        let what = spent.missing.join("; ").replace(|c: char| !(' '..='~').contains(&c), "?");
        if let Ok(v) = HeaderValue::from_str(&what) {
            resp.headers_mut().insert(PARTIAL_HEADER, v);
        }
    }
    st.metrics.query_seconds.with_label_values(&[endpoint]).observe(started.elapsed().as_secs_f64());
    Ok(resp)
}

/// Buckets, or with `by` (key, series limit) buckets per value of a tag key.
async fn histogram_answer(
    st: &Arc<AppState>,
    p: QueryParams,
    step: i64,
    by: Option<(String, usize)>,
) -> Result<(Response, Spent), ApiError> {
    let range = (p.query.from, p.query.to);
    let fill = p.fill_zero;
    let too_many = |what: &str| {
        ApiError::bad_request(
            "bad_parameter",
            format!("step: more than {MAX_HISTOGRAM_BUCKETS} {what}; use a larger step or a narrower time range"),
        )
    };
    if fill && (range.0.is_none() || range.1.is_none()) {
        return Err(ApiError::bad_request("bad_parameter", "fill: zero-filling needs both ends of the time range"));
    }
    if let (Some(f), Some(t)) = range {
        let n = (t - f) / step;
        if n > MAX_HISTOGRAM_BUCKETS as i64 {
            return Err(too_many("buckets in the time range"));
        }
        let series = by.as_ref().map_or(1, |(_, limit)| *limit as i64 + 1);
        if fill && n.saturating_mul(series) > MAX_HISTOGRAM_BUCKETS as i64 {
            return Err(too_many("zero-filled buckets over all series"));
        }
    }
    let filled = |buckets: Vec<(i64, u64)>| {
        let buckets = match range {
            (Some(from), Some(to)) if fill => zero_filled(&buckets, from, to, step),
            _ => buckets,
        };
        buckets.into_iter().map(|(t, n)| json!({"t": format_time(t), "count": n})).collect::<Vec<_>>()
    };
    let Some((key, limit)) = by else {
        let (Answer::Histogram(buckets), cost) = run(st, p, Request::Histogram { step }).await? else {
            unreachable!("histogram answers buckets")
        };
        if buckets.len() > MAX_HISTOGRAM_BUCKETS {
            return Err(too_many("non-empty buckets"));
        }
        let mut body = json!({ "buckets": filled(buckets) });
        mark_partial(&mut body, &cost);
        return Ok((axum::Json(body).into_response(), cost));
    };
    let req = Request::HistogramBy { step, key: key.clone(), limit };
    let (Answer::Series { series, other, total }, cost) = run(st, p, req).await? else {
        unreachable!("histogram by answers series")
    };
    if series.iter().map(|s| s.2.len()).sum::<usize>() + other.len() > MAX_HISTOGRAM_BUCKETS {
        return Err(too_many("non-empty buckets over all series"));
    }
    let series: Vec<_> =
        series.into_iter().map(|(v, n, buckets)| json!({"value": v, "count": n, "buckets": filled(buckets)})).collect();
    let mut body = json!({"by": key, "distinct": total, "series": series});
    if total > limit {
        let n: u64 = other.iter().map(|b| b.1).sum();
        body["other"] = json!({"values": total - limit, "count": n, "buckets": filled(other)});
    }
    mark_partial(&mut body, &cost);
    Ok((axum::Json(body).into_response(), cost))
}

/// Every bucket overlapping `[from, to)`, with 0 where nothing matched.
fn zero_filled(buckets: &[(i64, u64)], from: i64, to: i64, step: i64) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    let mut found = buckets.iter().peekable();
    let mut t = from - from.rem_euclid(step);
    while t < to {
        let n = match found.peek() {
            Some(&&(b, n)) if b == t => {
                found.next();
                n
            }
            _ => 0,
        };
        out.push((t, n));
        t = t.saturating_add(step);
    }
    out
}

/// One record as a JSON line; with `fields`, only those: `_time`, `app`, `message`, `tags`, or
/// a tag key (its value, `""` for a bare tag, `null` when absent).
pub(crate) fn write_record(out: &mut Vec<u8>, r: &Record, fields: Option<&[String]>) {
    let v = match fields {
        None => json!({"app": r.app.as_str(), "timestamp": format_time(r.ts), "message": r.message, "tags": r.tags}),
        Some(fields) => {
            let mut m = Map::new();
            for f in fields {
                let v = match f.as_str() {
                    "_time" | "timestamp" => Value::from(format_time(r.ts)),
                    "app" => Value::from(r.app.as_str()),
                    "message" | "_msg" => Value::from(r.message.as_str()),
                    "tags" => json!(r.tags),
                    key => r
                        .tags
                        .iter()
                        .find_map(|t| if t == key { Some("") } else { t.strip_prefix(key)?.strip_prefix('=') })
                        .map_or(Value::Null, Value::from),
                };
                m.insert(f.clone(), v);
            }
            Value::Object(m)
        }
    };
    serde_json::to_writer(&mut *out, &v).expect("json to memory");
    out.push(b'\n');
}
