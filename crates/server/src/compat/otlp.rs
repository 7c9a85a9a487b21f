//! OpenTelemetry OTLP/HTTP logs: `POST /v1/logs`, protobuf (`application/x-protobuf`) or
//! JSON (`application/json`), optionally gzip.
//!
//! Mapping (docs/INTEGRATIONS.md): the app is the resource attribute `service.name` (made a
//! valid app name: lowercased, other characters as `_`); the body is the message (a
//! non-string body as JSON); the severity becomes `level=` (its text, else the name of its
//! number's range); resource, scope and record attributes become tags (`key=value`, maps
//! flattened with dots, arrays one tag per element), with `scope.name=`, `trace_id=` and
//! `span_id=` (hex); the time is `timeUnixNano`, else `observedTimeUnixNano` (0 is absent),
//! else the time it arrived. A record that cannot be stored (over a size cap, older than
//! retention) is rejected on its own and counted in the answer's `partial_success`, as the
//! OTLP specification asks.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use prost::Message;

use crate::auth::Access;
use logpipe_formats::otlp::{decode, proto, Format, Rejected};

use crate::ingest::accept;
use crate::{ApiError, AppState};

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content-type {ct:?}: OTLP/HTTP takes application/x-protobuf or application/json"),
        )),
    }
}

/// The answer in the request's encoding: an `ExportLogsServiceResponse` (with
/// `partial_success` when records were rejected), or for a failed request a `google.rpc.Status`
/// (protobuf: code and message) or the native JSON error.
fn respond(format: Format, rejected: Option<Rejected>, err: Option<ApiError>) -> Response {
    if let Some(e) = err {
        if format == Format::Json {
            return e.into_response();
        }
        let (status, retry_after) = (e.status, e.retry_after);
        let mut buf = Vec::new();
        // google.rpc.Status { int32 code = 1; string message = 2; }
        prost::encoding::int32::encode(1, &(status_code(status)), &mut buf);
        prost::encoding::string::encode(2, &e.message, &mut buf);
        let mut resp = (status, buf).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        if let Some(s) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return resp;
    }
    let partial = rejected
        .filter(|r| r.count > 0)
        .map(|r| proto::ExportLogsPartialSuccess { rejected_log_records: r.count, error_message: r.first_error });
    match format {
        Format::Protobuf => {
            let body = proto::ExportLogsServiceResponse { partial_success: partial }.encode_to_vec();
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
            resp
        }
        Format::Json => {
            let body = match partial {
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedLogRecords": p.rejected_log_records.to_string(), "errorMessage": p.error_message}}),
                None => serde_json::json!({}),
            };
            axum::Json(body).into_response()
        }
    }
}

/// The gRPC status code that goes with an HTTP status (for `google.rpc.Status.code`).
fn status_code(s: StatusCode) -> i32 {
    match s.as_u16() {
        400 | 413 | 415 | 422 => 3, // INVALID_ARGUMENT
        401 => 16,                  // UNAUTHENTICATED
        403 => 7,                   // PERMISSION_DENIED
        429 | 507 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,                  // UNAVAILABLE
        _ => 13,                    // INTERNAL
    }
}

pub async fn logs(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = match format_of(&headers) {
        Ok(f) => f,
        Err(e) => {
            crate::ingest::drain(body).await;
            return respond(Format::Json, None, Some(e));
        }
    };
    let now = crate::now_ns();
    match accept(&st, access, &headers, body, None, move |body, ctx| decode(body, format, ctx, now)).await {
        Ok((_, rejected)) => respond(format, Some(rejected), None),
        Err(e) => {
            st.metrics.rejected.with_label_values(&["otlp_logs", e.reason()]).inc();
            respond(format, None, Some(e))
        }
    }
}
