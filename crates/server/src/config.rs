//! Typed server configuration. Only the binary reads files, flags and the environment.

use logpipe_model::Limits;
use logpipe_storage::EngineConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";
/// Largest ingest body, after decompression.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;
/// Ingest requests admitted beyond the ones being worked on.
pub const DEFAULT_INGEST_QUEUE: usize = 512;
/// Queries admitted beyond the ones being worked on.
pub const DEFAULT_QUERY_QUEUE: usize = 64;
/// Budget for ingest bodies held in memory at once (raw, before decompression).
pub const DEFAULT_INGEST_MEMORY_BYTES: usize = 256 << 20;
pub const DEFAULT_QUERY_LIMIT: usize = 100;
pub const DEFAULT_MAX_QUERY_LIMIT: usize = 10_000;
/// Histogram buckets one answer may hold.
pub const MAX_HISTOGRAM_BUCKETS: usize = 100_000;
/// Bytes of results in progress one query may hold (records of a page, buckets, values).
pub const DEFAULT_QUERY_MEMORY_BYTES: usize = 256 << 20;
/// Series of `histogram ... by (key)` when no `| limit` says otherwise.
pub const DEFAULT_SERIES_LIMIT: usize = 10;
/// Live tails open at once.
pub const DEFAULT_MAX_TAILS: usize = 64;
/// Matching records one live tail may hold for a slow reader (by their in-memory size).
pub const DEFAULT_TAIL_BUFFER_BYTES: usize = 8 << 20;
/// How long a query may run before it is stopped and answered with `504`.
pub const DEFAULT_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub engine: EngineConfig,
    pub limits: Limits,
    pub max_body_bytes: usize,
    pub ingest_workers: usize,
    pub ingest_queue: usize,
    pub ingest_memory_bytes: usize,
    pub query_workers: usize,
    pub query_queue: usize,
    pub max_query_limit: usize,
    pub query_timeout: std::time::Duration,
    pub query_memory_bytes: usize,
    pub max_tails: usize,
    /// Bearer tokens; empty: no authentication.
    pub tokens: Vec<crate::TokenSpec>,
    /// Ingest limits of every app, and of named apps (which replace the default).
    pub app_limit: crate::AppLimit,
    pub app_limits: std::collections::HashMap<logpipe_model::AppName, crate::AppLimit>,
    /// Serve HTTPS with this certificate and key; `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    pub tail_buffer_bytes: usize,
    /// Resident memory past which ingest is refused (`429 memory_pressure`); 0: no limit.
    pub max_memory_bytes: u64,
    /// Loki pushes: the stream labels whose value is the app, first found wins.
    pub loki_app_labels: Vec<String>,
    /// Syslog: TCP connections served at once, and the largest frame.
    pub syslog_max_connections: usize,
    pub syslog_max_frame: usize,
    /// What this process does; all three (the embedded single node) unless told otherwise.
    pub roles: Roles,
    /// Cluster mode: the JetStream stream batches travel on, connected and checked at start-up.
    pub bus: Option<Bus>,
    /// Cluster mode: the URL other nodes and operators reach this node's API on (default:
    /// the address it listens on).
    pub advertise_url: Option<String>,
    /// Cluster mode: the object storage holding segments and the catalog (store and query
    /// roles), and how those roles use it.
    pub storage: Option<ClusterStorage>,
}

/// The roles of one process (`logpipe serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Takes writes over HTTP; in cluster mode, publishes them to the stream.
    pub ingest: bool,
    /// Answers queries.
    pub query: bool,
    /// Holds a storage engine; in cluster mode, turns the stream's batches into segments in
    /// object storage.
    pub store: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { ingest: true, query: true, store: true };

    /// The roles' names, in the order `ingest`, `query`, `store`.
    pub fn names(&self) -> Vec<&'static str> {
        [(self.ingest, "ingest"), (self.query, "query"), (self.store, "store")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }
}

/// The cluster's stream, shared by the handlers.
#[derive(Clone)]
pub struct Bus(pub std::sync::Arc<logpipe_cluster::Bus>);

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("stream", &self.0.config().stream).finish()
    }
}

/// The cluster's object storage and the settings of the roles that use it.
#[derive(Clone)]
pub struct ClusterStorage {
    pub catalog: std::sync::Arc<logpipe_cluster::catalog::Catalog>,
    /// Where the bucket is, for `GET /api/v1/cluster` (no credentials).
    pub describe: String,
    pub store: logpipe_cluster::store::StoreSettings,
    pub compact: logpipe_cluster::compact::CompactSettings,
    pub reader: logpipe_cluster::reader::ReaderSettings,
}

impl std::fmt::Debug for ClusterStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStorage").field("at", &self.describe).finish_non_exhaustive()
    }
}

impl ServerConfig {
    pub fn new(engine: EngineConfig) -> ServerConfig {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        ServerConfig {
            engine,
            limits: Limits::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            ingest_workers: cores,
            ingest_queue: DEFAULT_INGEST_QUEUE,
            ingest_memory_bytes: DEFAULT_INGEST_MEMORY_BYTES,
            query_workers: cores,
            query_queue: DEFAULT_QUERY_QUEUE,
            max_query_limit: DEFAULT_MAX_QUERY_LIMIT,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            query_memory_bytes: DEFAULT_QUERY_MEMORY_BYTES,
            max_tails: DEFAULT_MAX_TAILS,
            tokens: Vec::new(),
            app_limit: crate::AppLimit::default(),
            app_limits: std::collections::HashMap::new(),
            tls: None,
            tail_buffer_bytes: DEFAULT_TAIL_BUFFER_BYTES,
            max_memory_bytes: crate::memory::default_limit(),
            loki_app_labels: logpipe_formats::loki::DEFAULT_APP_LABELS.iter().map(|s| s.to_string()).collect(),
            syslog_max_connections: crate::compat::syslog::DEFAULT_MAX_CONNECTIONS,
            syslog_max_frame: crate::compat::syslog::DEFAULT_MAX_FRAME,
            roles: Roles::ALL,
            bus: None,
            advertise_url: None,
            storage: None,
        }
    }
}
