//! `GET /api/v1/logs`, `/api/v1/count`, `/api/v1/histogram`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use logpipe_model::{format_time, Record};
use logpipe_storage::{Answer, Order, Request};
use serde_json::json;

use crate::config::{DEFAULT_QUERY_LIMIT, MAX_HISTOGRAM_BUCKETS};
use crate::params::{self, QueryParams};
use crate::{ApiError, AppState};

pub const NEXT_CURSOR_HEADER: &str = "logpipe-next-cursor";

/// Counts a refused request under its endpoint and reason.
fn counted(st: &AppState, endpoint: &'static str, res: Result<Response, ApiError>) -> Result<Response, ApiError> {
    if let Err(e) = &res {
        st.metrics.rejected.with_label_values(&[endpoint, e.reason()]).inc();
    }
    res
}

async fn run(st: &Arc<AppState>, p: QueryParams, req: Request) -> Result<Answer, ApiError> {
    let engine = st.engine()?.clone();
    // the query (regexes included) compiles on the pool: compiling a large regex is CPU work
    // that must not run on the async runtime
    let _place = st.query_pool.admit(StatusCode::SERVICE_UNAVAILABLE)?;
    let q = p.query;
    Ok(st.query_pool.run(move || engine.query(&q, &req)).await??)
}

fn observe(st: &AppState, endpoint: &str, started: Instant) {
    st.metrics.query_seconds.with_label_values(&[endpoint]).observe(started.elapsed().as_secs_f64());
}

pub async fn logs(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    counted(&st, "logs", logs_inner(&st, raw).await)
}

async fn logs_inner(st: &Arc<AppState>, raw: Option<String>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let p = params::parse(raw.as_deref(), &["limit", "order", "cursor"])?;
    let limit = p.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
    if limit > st.cfg.max_query_limit {
        return Err(ApiError::bad_request(
            "bad_parameter",
            format!("limit: {limit} is over the maximum of {}; page with the cursor instead", st.cfg.max_query_limit),
        ));
    }
    let req = Request::Logs { limit, order: p.order.unwrap_or(Order::Desc), cursor: p.cursor };
    let Answer::Logs { records, next } = run(st, p, req).await? else { unreachable!("logs request answers with logs") };
    let mut body = Vec::with_capacity(records.len() * 256);
    for r in &records {
        write_record(&mut body, r);
    }
    let mut resp = ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
    if let Some(c) = next {
        if let Ok(v) = HeaderValue::from_str(&c.encode()) {
            resp.headers_mut().insert(NEXT_CURSOR_HEADER, v);
        }
    }
    observe(st, "logs", started);
    Ok(resp)
}

fn write_record(out: &mut Vec<u8>, r: &Record) {
    let v = json!({"app": r.app.as_str(), "timestamp": format_time(r.ts), "message": r.message, "tags": r.tags});
    serde_json::to_writer(&mut *out, &v).expect("json to memory");
    out.push(b'\n');
}

pub async fn count(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    counted(&st, "count", count_inner(&st, raw).await)
}

async fn count_inner(st: &Arc<AppState>, raw: Option<String>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let p = params::parse(raw.as_deref(), &[])?;
    let Answer::Count(n) = run(st, p, Request::Count).await? else { unreachable!("count answers a count") };
    observe(st, "count", started);
    Ok(axum::Json(json!({ "count": n })).into_response())
}

pub async fn histogram(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    counted(&st, "histogram", histogram_inner(&st, raw).await)
}

async fn histogram_inner(st: &Arc<AppState>, raw: Option<String>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let p = params::parse(raw.as_deref(), &["step"])?;
    let step = p.step.ok_or_else(|| {
        ApiError::bad_request("bad_parameter", "step: required, e.g. step=5m").with("parameter", "step".into())
    })?;
    if let (Some(f), Some(t)) = (p.query.from, p.query.to) {
        if (t - f) / step > MAX_HISTOGRAM_BUCKETS as i64 {
            return Err(ApiError::bad_request(
                "bad_parameter",
                format!("step: more than {MAX_HISTOGRAM_BUCKETS} buckets in the time range; use a larger step"),
            ));
        }
    }
    let Answer::Histogram(buckets) = run(st, p, Request::Histogram { step }).await? else {
        unreachable!("histogram answers buckets")
    };
    if buckets.len() > MAX_HISTOGRAM_BUCKETS {
        return Err(ApiError::bad_request(
            "bad_parameter",
            format!("step: more than {MAX_HISTOGRAM_BUCKETS} non-empty buckets; use a larger step or a time range"),
        ));
    }
    let buckets: Vec<_> = buckets.into_iter().map(|(t, n)| json!({"t": format_time(t), "count": n})).collect();
    observe(st, "histogram", started);
    Ok(axum::Json(json!({ "buckets": buckets })).into_response())
}
