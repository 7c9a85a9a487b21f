//! The one place where errors become HTTP statuses:
//! `{"error": {"code": "...", "message": "..."}}`, with `Retry-After` on 429 and 503.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use logpipe_storage::{IngestError, StorageError};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields for the error object, e.g. the line of a bad record.
    pub detail: Option<(&'static str, serde_json::Value)>,
    /// `Retry-After` seconds of a 429/503 when not the default.
    pub retry_after: Option<u64>,
}

/// Seconds a refused client should wait before retrying.
const RETRY_AFTER_SECS: &str = "1";

impl ApiError {
    /// A cluster node without the query role was asked a query (or a live tail).
    pub fn no_query_role() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_query_role",
            "this node answers no queries (it runs without the query role); ask a query node",
        )
    }

    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), detail: None, retry_after: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unavailable(code: &'static str, message: String) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    pub fn with(mut self, key: &'static str, value: serde_json::Value) -> ApiError {
        self.detail = Some((key, value));
        self
    }

    /// Short label for the `reason` of the rejected-requests metric.
    pub fn reason(&self) -> &'static str {
        self.code
    }
}

impl From<logpipe_formats::Refused> for ApiError {
    fn from(r: logpipe_formats::Refused) -> ApiError {
        ApiError { status: r.status, code: r.code, message: r.message, detail: r.detail, retry_after: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if let Some((k, v)) = self.detail {
            err[k] = v;
        }
        let mut resp = (self.status, axum::Json(json!({ "error": err }))).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE {
            let v = match self.retry_after {
                Some(s) => HeaderValue::from(s),
                None => HeaderValue::from_static(RETRY_AFTER_SECS),
            };
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        match e {
            IngestError::QueueFull(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "ingest_queue_full", e.to_string())
            }
            IngestError::FlushBehind(_) => ApiError::unavailable("flush_behind", e.to_string()),
            IngestError::MergeBehind { .. } => ApiError::unavailable("merges_behind", e.to_string()),
            IngestError::Stopped(_) => ApiError::unavailable("writes_stopped", e.to_string()),
            IngestError::Retrying(_) => ApiError::unavailable("flush_retrying", e.to_string()),
            IngestError::Closed => ApiError::unavailable("shutting_down", e.to_string()),
            IngestError::DiskFull { .. } | IngestError::NoSpace(_) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", e.to_string())
            }
            IngestError::KeyConflict => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", e.to_string())
            }
        }
    }
}

impl From<logpipe_cluster::BusError> for ApiError {
    fn from(e: logpipe_cluster::BusError) -> ApiError {
        use logpipe_cluster::BusError;
        match e {
            BusError::TooLarge { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", e.to_string()),
            BusError::Refused(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "stream_full", e.to_string()),
            BusError::Unavailable(_) => ApiError::unavailable("stream_unavailable", e.to_string()),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        match e {
            StorageError::BadQuery(m) => ApiError::bad_request("bad_query", m),
            StorageError::Closed => ApiError::unavailable("shutting_down", e.to_string()),
            // only the server cancels, and it answers for itself (504, or nobody is listening)
            StorageError::Cancelled => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "query_cancelled", e.to_string()),
            StorageError::OverBudget { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "query_memory_exceeded", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", other.to_string())
            }
        }
    }
}
