//! Health, readiness, metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Extension;
use prometheus::Encoder;

use crate::auth::Access;
use crate::{ApiError, AppState};

pub async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Ready once the WAL is replayed and writes are accepted; in cluster mode, while NATS is
/// connected and (store and query roles) the bucket answers.
pub async fn ready(State(st): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    if let Some(bus) = &st.cfg.bus {
        if !bus.0.connected() {
            return Err(ApiError::unavailable("nats_unreachable", "no connection to any NATS server".into()));
        }
    }
    if let (Some(storage), true) = (&st.cfg.storage, st.cfg.roles.store || st.cfg.roles.query) {
        let checked = tokio::time::timeout(std::time::Duration::from_secs(5), storage.catalog.check()).await;
        let why = match checked {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer within 5 s".to_string()),
        };
        if let Some(why) = why {
            return Err(ApiError::unavailable("object_storage_unreachable", format!("{}: {why}", storage.describe)));
        }
    }
    if st.cfg.roles.store && st.cfg.bus.is_none() {
        let engine = st.engine()?;
        if let Some(why) = engine.poisoned() {
            return Err(ApiError::unavailable("writes_stopped", why));
        }
    }
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

/// Per-app counters tell what apps exist and how busy they are: `admin` scope only.
pub async fn metrics(State(st): State<Arc<AppState>>, Extension(access): Extension<Access>) -> impl IntoResponse {
    if let Err(e) = access.check_admin() {
        return e.into_response();
    }
    if let Some(engine) = st.engine.get() {
        engine.refresh_gauges();
    }
    let mut buf = Vec::new();
    let enc = prometheus::TextEncoder::new();
    if let Err(e) = enc.encode(&st.registry.gather(), &mut buf) {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, enc.format_type().to_string())], buf).into_response()
}

/// `GET /api/v1/cluster`: the nodes, the stream and the store nodes' backlog (`admin` scope).
pub async fn cluster(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
) -> Result<impl IntoResponse, ApiError> {
    access.check_admin()?;
    let (Some(bus), Some(node)) = (&st.cfg.bus, &st.node) else {
        return Ok(axum::Json(serde_json::json!({"mode": "single", "roles": st.cfg.roles.names()})));
    };
    let status = bus.0.status().await.map_err(|e| ApiError::unavailable("nats_unreachable", e))?;
    let mut out = serde_json::json!({"mode": "cluster", "this_node": node.id, "cluster": status});
    if let Some(s) = &st.cfg.storage {
        out["object_storage"] = serde_json::json!(s.describe);
    }
    if let Some(store) = &st.store_node {
        out["store"] = serde_json::json!(store.stats());
    }
    if let Some(c) = &st.compactor {
        out["maintenance"] = serde_json::json!(c.stats());
    }
    out["maintenance_lease"] = serde_json::json!(bus.0.lease_holder(logpipe_cluster::compact::LEASE).await);
    if let Some(reader) = &st.reader {
        let (version, segments, bytes) = reader.catalog_stats();
        out["catalog"] = serde_json::json!({"version": version, "segments": segments, "bytes": bytes});
        out["cache"] = serde_json::json!(reader.cache_stats());
    }
    Ok(axum::Json(out))
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
