//! VictoriaLogs' JSON lines: `POST /insert/jsonline`, so pipelines and handlers written for
//! VictoriaLogs can point at logpipe unchanged.
//!
//! One JSON object per line. Query parameters (or the `VL-*` headers VictoriaLogs also reads)
//! name the fields: `_msg_field` (default `_msg`; a comma-separated list, the first present
//! wins), `_time_field` (default `_time`: RFC 3339, or a Unix timestamp in seconds —
//! fractional allowed —, milliseconds, microseconds or nanoseconds, told apart by size),
//! `_stream_fields`, `ignore_fields`, `extra_fields` (`k=v,…`, added to every record). The
//! app is logpipe's own `app` parameter, else the record's `app` field, else the value of the
//! first stream field, else `unknown_service`. Every other field becomes a tag, nested objects
//! flattened with dots. A request is all or nothing (`400` naming the line).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::auth::Access;
use logpipe_formats::vlogs::{decode, Fields};

use crate::ingest::accept;
use crate::{ApiError, AppState};

pub async fn jsonline(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let fields = match Fields::from_request(raw.as_deref(), &headers) {
        Ok(f) => f,
        Err(e) => {
            crate::ingest::drain(body).await;
            return ApiError::from(e).into_response();
        }
    };
    let now = crate::now_ns();
    match accept(&st, access, &headers, body, None, move |body, ctx| decode(body, &fields, ctx, now).map(|r| (r, ())))
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            st.metrics.rejected.with_label_values(&["vlogs_jsonline", e.reason()]).inc();
            e.into_response()
        }
    }
}
