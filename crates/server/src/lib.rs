//! logpipe's HTTP server: the native ingest and query API, health and metrics, admission
//! control. Only this crate maps errors to HTTP status codes (see `error`).
//!
//! Work never runs on the async runtime's threads: decoding and validating ingest bodies runs
//! on the ingest pool, queries on the query pool (two separate rayon pools, so neither can
//! starve the other), and each pool admits a bounded number of requests; past that, requests
//! get `429`/`503` with `Retry-After` at once.

#![deny(unsafe_code)]

mod admin;
mod admission;
mod auth;
mod compat;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod ingest;
mod internal;
mod memory;
mod metrics;
mod params;
mod query;
mod ratelimit;
mod tail;
mod tls;
mod ui;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::routing::{get, post};
use axum::Router;
use logpipe_storage::Engine;
use tokio::net::TcpListener;

pub use auth::{Scope, TokenSpec, MIN_TOKEN_LEN};
pub use config::{Bus, ClusterStorage, Roles, ServerConfig, DEFAULT_LISTEN};
pub use error::ApiError;
/// Every protocol's decoder and sample encoders, for the decoding benchmark. Not an API.
#[doc(hidden)]
pub use logpipe_formats::bench;
pub use logpipe_formats::parse_records;
pub use ratelimit::AppLimit;

use admission::Pool;
use metrics::ServerMetrics;

pub(crate) struct AppState {
    pub cfg: ServerConfig,
    /// Set once the WAL is replayed; until then `/ready` says 503 and data endpoints refuse.
    pub engine: OnceLock<Arc<Engine>>,
    pub startup_error: OnceLock<String>,
    pub ingest_pool: Pool,
    pub query_pool: Pool,
    /// Bytes of ingest bodies held in memory, in KiB permits.
    pub ingest_memory: Arc<tokio::sync::Semaphore>,
    /// Places for live tails.
    pub tails: Arc<tokio::sync::Semaphore>,
    /// Set when shutdown begins: live tails end so the server can finish its requests.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Configured bearer tokens; `None`: authentication is off.
    pub tokens: Option<auth::Tokens>,
    /// Per-app ingest rates; `None` when no app is limited.
    pub rate_limits: Option<Arc<ratelimit::RateLimits>>,
    pub metrics: ServerMetrics,
    pub registry: prometheus::Registry,
    /// The process-wide memory limit, checked at ingest admission.
    pub memory: Arc<memory::MemoryLimit>,
    /// Cluster mode: this node's entry in the node registry.
    pub node: Option<logpipe_cluster::Node>,
    /// Cluster mode, store role: the batches taken from the stream and their uploads.
    pub store_node: Option<Arc<logpipe_cluster::store::StoreNode>>,
    /// Cluster mode, store role: merges and retention in the bucket, under a lease.
    pub compactor: Option<Arc<logpipe_cluster::compact::Compactor>>,
    /// Cluster mode, query role: reads the catalog, object storage and the store nodes.
    pub reader: Option<Arc<logpipe_cluster::reader::Reader>>,
}

/// The wall-clock time, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) use logpipe_formats::now_ns;

impl AppState {
    pub fn engine(&self) -> Result<&Arc<Engine>, ApiError> {
        if self.cfg.bus.is_some() {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_IMPLEMENTED,
                "not_in_cluster_mode",
                "this endpoint is not available in cluster mode yet (see docs/CLUSTER.md)",
            ));
        }
        if !self.cfg.roles.store {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "no_store_role",
                "this node holds no data (it runs without the store role); ask a store node",
            ));
        }
        match self.engine.get() {
            Some(e) => Ok(e),
            None => Err(match self.startup_error.get() {
                Some(e) => ApiError::unavailable("startup_failed", format!("storage failed to open: {e}")),
                None => ApiError::unavailable("starting", "the write-ahead log is being replayed".into()),
            }),
        }
    }
}

/// This node's registry entry: a unique id (host name, process id, start time), its roles and
/// the URL its HTTP API answers on.
fn node_entry(roles: &Roles, url: String) -> logpipe_cluster::Node {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // registry keys take letters, digits, '-' and '_'
    let host: String =
        host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(64).collect();
    let started = now_ns();
    logpipe_cluster::Node {
        id: format!("{}-{}-{:x}", if host.is_empty() { "node" } else { &host }, std::process::id(), started),
        roles: roles.names().into_iter().map(String::from).collect(),
        url,
        version: env!("CARGO_PKG_VERSION").to_string(),
        started: logpipe_model::format_time(started),
    }
}

/// Cluster mode: the store role's uploader and the query role's reader, as the roles ask.
type ClusterRoles = (
    Option<Arc<logpipe_cluster::store::StoreNode>>,
    Option<Arc<logpipe_cluster::compact::Compactor>>,
    Option<Arc<logpipe_cluster::reader::Reader>>,
);

fn cluster_roles(cfg: &ServerConfig, node: Option<&logpipe_cluster::Node>) -> Result<ClusterRoles, ServerError> {
    let (Some(bus), Some(node)) = (&cfg.bus, node) else { return Ok((None, None, None)) };
    let needs_storage = cfg.roles.store || cfg.roles.query;
    let storage = match &cfg.storage {
        Some(s) => s,
        None if needs_storage => {
            return Err(ServerError::Setup(
                "the store and query roles need object storage (--s3-bucket; see docs/CLUSTER.md)".into(),
            ))
        }
        None => return Ok((None, None, None)),
    };
    let setup = |what: &str, e: std::io::Error| ServerError::Setup(format!("{what}: {e}"));
    let store_node = match cfg.roles.store {
        true => Some(Arc::new(
            logpipe_cluster::store::StoreNode::new(
                bus.0.clone(),
                storage.catalog.clone(),
                storage.store.clone(),
                node.id.clone(),
            )
            .map_err(|e| setup("the store role's work directory", e))?,
        )),
        false => None,
    };
    let compactor = match cfg.roles.store {
        true => Some(Arc::new(
            logpipe_cluster::compact::Compactor::new(
                bus.0.clone(),
                storage.catalog.clone(),
                storage.compact.clone(),
                node.id.clone(),
            )
            .map_err(|e| setup("the store role's merge directory", e))?,
        )),
        false => None,
    };
    let reader = match cfg.roles.query {
        true => Some(Arc::new(
            logpipe_cluster::reader::Reader::new(
                bus.0.clone(),
                storage.catalog.clone(),
                storage.reader.clone(),
                store_node.clone().map(|s| (node.id.clone(), s)),
            )
            .map_err(|e| setup("the query role's cache directory", e))?,
        )),
        false => None,
    };
    Ok((store_node, compactor, reader))
}

/// Where accepted batches go: the local engine, or (cluster mode) the stream.
#[derive(Clone)]
pub(crate) enum Sink {
    Engine(Arc<Engine>),
    Bus(Arc<logpipe_cluster::Bus>),
}

impl Sink {
    /// Records older than this are past their app's retention and refused at the edge.
    pub fn retention_cutoff(&self, cfg: &ServerConfig, app: &logpipe_model::AppName) -> Option<i64> {
        match self {
            Sink::Engine(e) => e.retention_cutoff(app),
            Sink::Bus(_) => cfg.engine.retention_cutoff(app, now_ns()),
        }
    }
}

impl AppState {
    /// Where this node puts the batches it accepts.
    pub fn sink(&self) -> Result<Sink, ApiError> {
        if !self.cfg.roles.ingest {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "no_ingest_role",
                "this node takes no writes (it runs without the ingest role); send them to an ingest node",
            ));
        }
        match &self.cfg.bus {
            Some(bus) => Ok(Sink::Bus(bus.0.clone())),
            None => Ok(Sink::Engine(self.engine()?.clone())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("storage: {0}")]
    Storage(#[from] logpipe_storage::StorageError),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// `GET /`: the web UI to a browser, Elasticsearch's banner to its clients.
async fn root(headers: axum::http::HeaderMap) -> axum::response::Response {
    if ui::wants_html(&headers) {
        ui::index()
    } else {
        compat::elastic::root().await
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(admin::health))
        .route("/ready", get(admin::ready))
        .route("/metrics", get(admin::metrics))
        .route("/api/v1/cluster", get(admin::cluster))
        .route(logpipe_cluster::reader::PENDING_PATH, post(internal::pending))
        .route("/api/v1/logs", post(ingest::ingest).get(query::logs))
        .route("/api/v1/count", get(query::count))
        .route("/api/v1/histogram", get(query::histogram))
        .route("/api/v1/query", get(query::query))
        .route("/api/v1/explain", get(query::explain))
        .route("/api/v1/tail", get(tail::tail))
        .route("/", get(root).head(compat::elastic::root_head))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/app.css", get(ui::app_css))
        .route("/v1/logs", post(compat::otlp::logs))
        .route("/loki/api/v1/push", post(compat::loki::push))
        .route("/loki/api/v1/query_range", get(compat::loki_query::query_range).post(compat::loki_query::query_range))
        .route("/loki/api/v1/query", get(compat::loki_query::query).post(compat::loki_query::query))
        .route("/loki/api/v1/labels", get(compat::loki_query::labels).post(compat::loki_query::labels))
        .route("/loki/api/v1/label", get(compat::loki_query::labels).post(compat::loki_query::labels))
        .route(
            "/loki/api/v1/label/{name}/values",
            get(compat::loki_query::label_values).post(compat::loki_query::label_values),
        )
        .route("/loki/api/v1/series", get(compat::loki_query::series).post(compat::loki_query::series))
        .route("/loki/api/v1/index/stats", get(compat::loki_query::index_stats).post(compat::loki_query::index_stats))
        .route(
            "/loki/api/v1/format_query",
            get(compat::loki_query::format_query).post(compat::loki_query::format_query),
        )
        .route("/loki/api/v1/status/buildinfo", get(compat::loki_query::buildinfo))
        .route("/insert/jsonline", post(compat::vlogs::jsonline))
        .route("/_bulk", post(compat::elastic::bulk).put(compat::elastic::bulk))
        .route("/{index}/_bulk", post(compat::elastic::bulk).put(compat::elastic::bulk))
        .fallback(admin::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting, finishes in-flight
/// requests, flushes the memtable into segments and returns.
///
/// Storage opens in the background: `/health` answers at once, `/ready` once the WAL has been
/// replayed.
pub async fn serve(
    cfg: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_all(cfg, listener, SyslogListeners::default(), shutdown).await
}

/// Sockets for syslog, bound by the caller (so it can report their addresses).
#[derive(Default)]
pub struct SyslogListeners {
    pub tcp: Option<TcpListener>,
    pub udp: Option<tokio::net::UdpSocket>,
}

/// [`serve`], and syslog on the given sockets once storage is open.
pub async fn serve_all(
    cfg: ServerConfig,
    listener: TcpListener,
    syslog: SyslogListeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let registry = prometheus::Registry::new();
    let metrics = ServerMetrics::new(&registry).map_err(|e| ServerError::Setup(e.to_string()))?;
    let tokens = match cfg.tokens.as_slice() {
        [] => None,
        specs => Some(auth::Tokens::new(specs).map_err(ServerError::Setup)?),
    };
    let limits = ratelimit::RateLimits::new(cfg.app_limit, cfg.app_limits.clone());
    let node = match &cfg.bus {
        None => None,
        Some(_) => {
            let scheme = if cfg.tls.is_some() { "https" } else { "http" };
            let url = match &cfg.advertise_url {
                Some(u) => u.clone(),
                None => format!("{scheme}://{}", listener.local_addr()?),
            };
            Some(node_entry(&cfg.roles, url))
        }
    };
    let (store_node, compactor, reader) = cluster_roles(&cfg, node.as_ref())?;
    let state = Arc::new(AppState {
        rate_limits: (!limits.is_unlimited()).then(|| Arc::new(limits)),
        tokens,
        ingest_pool: Pool::new("ingest", cfg.ingest_workers, cfg.ingest_queue, metrics.clone())?,
        query_pool: Pool::new("query", cfg.query_workers, cfg.query_queue, metrics.clone())?,
        ingest_memory: Arc::new(tokio::sync::Semaphore::new(cfg.ingest_memory_bytes / 1024)),
        tails: Arc::new(tokio::sync::Semaphore::new(cfg.max_tails)),
        stopping: tokio::sync::watch::channel(false).0,
        engine: OnceLock::new(),
        startup_error: OnceLock::new(),
        memory: Arc::new(memory::MemoryLimit::new(cfg.max_memory_bytes)),
        node,
        store_node,
        compactor,
        reader,
        metrics,
        registry,
        cfg,
    });
    {
        // resident memory, sampled for ingest admission and /metrics
        let (memory, gauge, mut stop) =
            (state.memory.clone(), state.metrics.resident_bytes.clone(), state.stopping.subscribe());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(memory::SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => gauge.set(memory.sample() as i64),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    let opener = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let local = state.cfg.roles.store && state.cfg.bus.is_none();
            match local.then(|| Engine::open(state.cfg.engine.clone())) {
                // an ingest-only node, and every cluster node, has no local storage to open
                None => Ok(()),
                Some(Ok(engine)) => {
                    if let Err(e) = engine.metrics().register(&state.registry) {
                        tracing::error!(error = %e, "cannot register storage metrics");
                    }
                    let _ = state.engine.set(Arc::new(engine));
                    tracing::info!("storage ready");
                    Ok(())
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "storage failed to open");
                    let _ = state.startup_error.set(e.to_string());
                    Err(e)
                }
            }
        })
    };

    let app = router(state.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopping = state.clone();
    let shutdown = async move {
        let mut stop_rx = stop_rx;
        tokio::select! {
            _ = shutdown => {}
            _ = stop_rx.wait_for(|s| *s) => {}
        }
        // live tails never end by themselves; graceful shutdown waits for every response
        stopping.stopping.send_replace(true);
    };
    let server = match state.cfg.tls.clone() {
        None => tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await }),
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls)?;
            tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await })
        }
    };

    let opened = opener.await.map_err(|e| ServerError::Setup(e.to_string()))?;
    if let Err(e) = opened {
        let _ = stop_tx.send(true);
        let _ = server.await;
        return Err(e.into());
    }
    // cluster mode: the node registry lists this node until shutdown begins...
    let registry_task = match (&state.cfg.bus, &state.node) {
        (Some(bus), Some(node)) => Some(tokio::spawn(bus.0.clone().register(node.clone(), state.stopping.subscribe()))),
        _ => None,
    };
    // ...and a store node turns the stream's batches into segments in object storage
    let store_task = state.store_node.clone().map(|n| tokio::spawn(n.run(state.stopping.subscribe())));
    let compact_task = state.compactor.clone().map(|c| tokio::spawn(c.run(state.stopping.subscribe())));
    let mut syslog_tasks = Vec::new();
    // syslog goes where this node's writes go: its engine, or (cluster mode) the stream
    if let Ok(sink) = state.sink() {
        if let Some(tcp) = syslog.tcp {
            syslog_tasks.push(tokio::spawn(compat::syslog::serve_tcp(state.clone(), tcp, sink.clone())));
        }
        if let Some(udp) = syslog.udp {
            syslog_tasks.push(tokio::spawn(compat::syslog::serve_udp(state.clone(), udp, sink)));
        }
    }
    server.await.map_err(|e| ServerError::Setup(e.to_string()))??;
    for t in syslog_tasks {
        let _ = t.await;
    }
    for t in [store_task, compact_task, registry_task].into_iter().flatten() {
        let _ = t.await;
    }
    tracing::info!("http server stopped; flushing storage");
    if let Some(engine) = state.engine.get().cloned() {
        tokio::task::spawn_blocking(move || engine.close()).await.map_err(|e| ServerError::Setup(e.to_string()))??;
    }
    Ok(())
}
