//! Elasticsearch's bulk API, enough for shippers that write to Elasticsearch: `POST|PUT /_bulk`
//! and `/{index}/_bulk`, with `index` and `create` actions, and `GET|HEAD /` answering like a
//! cluster so official clients accept the server.
//!
//! Mapping (docs/INTEGRATIONS.md): the app is the action's `_index`, or the index in the path;
//! the message is the first of `message`, `msg`, `log`, `_msg` (a document with none is stored
//! whole as JSON); the time is `@timestamp` (RFC 3339, or epoch milliseconds); every other
//! field becomes tags, nested objects flattened with dots (`http.status=200`), arrays as one
//! tag per element. Unlike the native API a bulk request is not all or nothing: each item
//! succeeds or fails on its own, and `errors` says whether any failed, as Elasticsearch does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use logpipe_model::AppName;
use serde_json::json;

use crate::auth::Access;
use logpipe_formats::elastic::{bulk_response, decode_bulk};

use crate::ingest::accept;
use crate::{ApiError, AppState};

/// The version the root endpoint reports: what clients of 7.x to 9.x accept.
const VERSION: &str = "8.17.0";

/// Every answer carries the header the official clients check before they accept a server.
fn elastic(mut resp: Response) -> Response {
    resp.headers_mut().insert("x-elastic-product", HeaderValue::from_static("Elasticsearch"));
    resp
}

/// An error in Elasticsearch's shape (`error.type`, `error.reason`, `status`), keeping
/// `Retry-After` on refusals.
fn elastic_error(e: ApiError) -> Response {
    let status = e.status;
    let retry_after = e.retry_after;
    let body = json!({
        "error": {"root_cause": [{"type": e.code, "reason": e.message}], "type": e.code, "reason": e.message},
        "status": status.as_u16(),
    });
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(s) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    elastic(resp)
}

pub async fn bulk(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    index: Option<Path<String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let default_app = match index.map(|Path(i)| AppName::parse(&i)).transpose() {
        Ok(app) => app,
        Err(e) => {
            crate::ingest::drain(body).await;
            return elastic_error(ApiError::bad_request("invalid_index_name_exception", e.to_string()));
        }
    };
    let now = crate::now_ns();
    match accept(&st, access, &headers, body, default_app, move |body, ctx| decode_bulk(body, ctx, now)).await {
        Ok((_, items)) => {
            let took = started.elapsed().as_millis() as u64;
            elastic(axum::Json(bulk_response(&items, took)).into_response())
        }
        Err(e) => {
            st.metrics.rejected.with_label_values(&["elastic_bulk", e.reason()]).inc();
            elastic_error(e)
        }
    }
}

/// `GET /`: what a cluster says about itself; clients read `version.number`.
pub async fn root() -> Response {
    elastic(
        axum::Json(json!({
            "name": "logpipe",
            "cluster_name": "logpipe",
            "cluster_uuid": "logpipe",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "logpipe",
                "lucene_version": "9.12.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        }))
        .into_response(),
    )
}

pub async fn root_head() -> Response {
    elastic(StatusCode::OK.into_response())
}
