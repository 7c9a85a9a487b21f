//! Requests between cluster nodes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use logpipe_cluster::reader::{encode_pending, WireQuery};

use crate::auth::Access;
use crate::{ApiError, AppState};

/// `POST /internal/v1/pending` (store role, `admin` scope): the batches this store node holds
/// and has not uploaded yet that hold a match of the query in the body, for a query node.
pub async fn pending(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> Result<Response, ApiError> {
    access.check_admin()?;
    let Some(store) = st.store_node.clone() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_store_role", "this node holds no batches"));
    };
    let wire: WireQuery = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("not a query: {e}")))?;
    let q = wire.query().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e))?;
    let regex_limit = st.cfg.engine.regex_size_limit;
    let place = st.query_pool.admit(StatusCode::SERVICE_UNAVAILABLE)?;
    let out = st
        .query_pool
        .run(move || -> Result<Vec<u8>, ApiError> {
            let _place = place;
            let f = logpipe_storage::Filter::compile(&q, regex_limit)?;
            Ok(encode_pending(&store.pending(|r| f.row_matches(r))))
        })
        .await??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], out).into_response())
}
