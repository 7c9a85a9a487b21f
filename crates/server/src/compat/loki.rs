//! Grafana Loki's push API: `POST /loki/api/v1/push`, JSON (optionally gzip) or protobuf
//! compressed with snappy (with or without `Content-Encoding: snappy`). Answers `204`.
//!
//! Mapping (docs/INTEGRATIONS.md): every stream label becomes a tag (`env=prod`), and so does
//! each entry's structured metadata; the app is the value of the first of the app labels
//! (`--loki-app-label`, by default `app`, then `service_name`, then `job`) made a valid app
//! name, else `unknown_service`; the line is the message; the entry's timestamp is the time.
//! A push is all or nothing, as Loki's is for a malformed one: any bad entry fails it (`400`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::auth::Access;
use logpipe_formats::loki::{decode, Format};

use crate::ingest::accept;
use crate::{ApiError, AppState};

pub async fn push(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    mut headers: HeaderMap,
    body: Body,
) -> Response {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let format = if ct.starts_with("application/x-protobuf") || ct.starts_with("application/protobuf") {
        Format::Protobuf
    } else {
        Format::Json
    };
    // snappy is part of the protobuf body here, whether or not the header says so
    if headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"snappy")) {
        if format != Format::Protobuf {
            crate::ingest::drain(body).await;
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                "snappy goes with application/x-protobuf bodies",
            )
            .into_response();
        }
        headers.remove(header::CONTENT_ENCODING);
    }
    let app_labels = st.cfg.loki_app_labels.clone();
    let cap = st.cfg.max_body_bytes;
    match accept(&st, access, &headers, body, None, move |body, ctx| {
        decode(body, format, &app_labels, ctx, cap).map(|r| (r, ()))
    })
    .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            st.metrics.rejected.with_label_values(&["loki_push", e.reason()]).inc();
            e.into_response()
        }
    }
}
