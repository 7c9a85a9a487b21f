//! `logpipe serve`: flags and an optional TOML file become a typed `ServerConfig`.
//! A flag wins over the file; the file wins over the built-in default.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use logpipe_model::{parse_duration, AppName, AppPattern};
use logpipe_server::{ServerConfig, DEFAULT_LISTEN};
use logpipe_storage::{EngineConfig, FsyncMode};
use serde::{Deserialize, Serialize};

mod cluster;
use cluster::{bus_config, parse_roles, storage_config, StorageArgs};

pub const DEFAULT_DATA_DIR: &str = "./logpipe-data";

/// Every setting, as a flag or as a key of the `--config` TOML file (same name, `_` for `-`).
#[derive(Args, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "LOGPIPE_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7171]. Port 0 picks a free port.
    #[arg(long, env = "LOGPIPE_LISTEN")]
    listen: Option<String>,
    /// Data directory (WAL and segments) [default: ./logpipe-data].
    #[arg(long, env = "LOGPIPE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// When to fsync the WAL: `always` (before every acknowledgement, the default),
    /// `interval:<duration>` (e.g. interval:100ms) or `never`.
    #[arg(long, env = "LOGPIPE_FSYNC")]
    fsync: Option<String>,
    /// Keep records this long, e.g. 30d [default: keep everything].
    #[arg(long, env = "LOGPIPE_RETENTION")]
    retention: Option<String>,
    /// Per-app retention, `app=duration`; repeatable.
    #[arg(long = "retention-app", value_name = "APP=DURATION")]
    #[serde(skip)]
    retention_app: Vec<String>,
    /// Per-app retention in the config file: a table of app = "duration".
    #[arg(skip)]
    retention_per_app: Option<HashMap<String, String>>,
    /// Records per second each app may ingest; past it, 429 for that app alone [default:
    /// unlimited].
    #[arg(long, env = "LOGPIPE_APP_RECORDS_PER_SECOND")]
    app_records_per_second: Option<f64>,
    /// Bytes (messages and tags) per second each app may ingest [default: unlimited].
    #[arg(long, env = "LOGPIPE_APP_BYTES_PER_SECOND")]
    app_bytes_per_second: Option<f64>,
    /// Limits of named apps, in the config file only: `[app_limits.web]` with
    /// `records_per_second` and/or `bytes_per_second` (replacing the defaults above).
    #[arg(skip)]
    app_limits: Option<HashMap<String, AppLimitEntry>>,
    /// Bearer tokens, in the config file only (`[[tokens]]` tables; see docs/SECURITY.md).
    #[arg(skip)]
    tokens: Option<Vec<TokenEntry>>,
    /// Listen beyond loopback without tokens: anyone who can reach the port can read and write
    /// everything.
    #[arg(long, env = "LOGPIPE_INSECURE_NO_AUTH")]
    #[serde(default)]
    insecure_no_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key", env = "LOGPIPE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, requires = "tls_cert", env = "LOGPIPE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Threads that decode ingest bodies [default: number of cores].
    #[arg(long, env = "LOGPIPE_INGEST_WORKERS")]
    ingest_workers: Option<usize>,
    /// Ingest requests admitted beyond the busy workers before 429 [default: 512].
    #[arg(long, env = "LOGPIPE_INGEST_QUEUE")]
    ingest_queue: Option<usize>,
    /// Batches that may wait for the WAL writer before 429 [default: 256].
    #[arg(long, env = "LOGPIPE_WAL_QUEUE")]
    wal_queue: Option<usize>,
    /// Memory for ingest bodies in flight, bytes [default: 256 MiB].
    #[arg(long, env = "LOGPIPE_INGEST_MEMORY_BYTES")]
    ingest_memory_bytes: Option<usize>,
    /// Threads that run queries [default: number of cores].
    #[arg(long, env = "LOGPIPE_QUERY_WORKERS")]
    query_workers: Option<usize>,
    /// Queries admitted beyond the busy workers before 503 [default: 64].
    #[arg(long, env = "LOGPIPE_QUERY_QUEUE")]
    query_queue: Option<usize>,
    /// Largest ingest body after decompression, bytes [default: 64 MiB].
    #[arg(long, env = "LOGPIPE_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Largest message, bytes [default: 256 KiB].
    #[arg(long, env = "LOGPIPE_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<usize>,
    /// Most tags per record [default: 128].
    #[arg(long, env = "LOGPIPE_MAX_TAGS")]
    max_tags: Option<usize>,
    /// Largest tag, bytes [default: 1 KiB].
    #[arg(long, env = "LOGPIPE_MAX_TAG_BYTES")]
    max_tag_bytes: Option<usize>,
    /// Largest `limit` of one query page [default: 10000].
    #[arg(long, env = "LOGPIPE_MAX_QUERY_LIMIT")]
    max_query_limit: Option<usize>,
    /// Stop a query that runs longer than this and answer 504 [default: 30s].
    #[arg(long, env = "LOGPIPE_QUERY_TIMEOUT")]
    query_timeout: Option<String>,
    /// Bytes of results in progress one query may hold (a page's records, histogram buckets,
    /// distinct values); past it the query fails with 422 [default: 256 MiB].
    #[arg(long, env = "LOGPIPE_QUERY_MEMORY_BYTES")]
    query_memory_bytes: Option<usize>,
    /// Receive syslog over TCP on this address (RFC 5424 and 3164; octet-counted, newline or
    /// NUL framing) [default: off].
    #[arg(long, value_name = "ADDR", env = "LOGPIPE_SYSLOG_TCP")]
    syslog_tcp: Option<String>,
    /// Receive syslog over UDP on this address [default: off].
    #[arg(long, value_name = "ADDR", env = "LOGPIPE_SYSLOG_UDP")]
    syslog_udp: Option<String>,
    /// Syslog TCP connections served at once [default: 256].
    #[arg(long, env = "LOGPIPE_SYSLOG_MAX_CONNECTIONS")]
    syslog_max_connections: Option<usize>,
    /// Largest syslog frame, bytes [default: 64 KiB].
    #[arg(long, env = "LOGPIPE_SYSLOG_MAX_FRAME_BYTES")]
    syslog_max_frame_bytes: Option<usize>,
    /// Loki pushes: a stream label whose value is the app; repeatable, the first found wins
    /// [default: app, service_name, job].
    #[arg(long = "loki-app-label", value_name = "LABEL")]
    #[serde(default)]
    loki_app_label: Vec<String>,
    /// Resident memory of the server, bytes, past which ingest is refused with 429
    /// memory_pressure until it is back under; 0: no limit [default: 60% of physical memory].
    #[arg(long, env = "LOGPIPE_MAX_MEMORY_BYTES")]
    max_memory_bytes: Option<u64>,
    /// Segment files kept open at once; past it the least recently read are closed and opened
    /// again when needed [default: half the open-file limit, which logpipe raises to its hard
    /// limit at start-up, at most 65536].
    #[arg(long, env = "LOGPIPE_MAX_OPEN_SEGMENT_FILES")]
    max_open_segment_files: Option<usize>,
    /// Bytes of segments and WAL the data directory may hold; past it the oldest partitions
    /// (before today) are dropped, then ingest is refused with 507 [default: unlimited].
    #[arg(long, env = "LOGPIPE_MAX_DISK_USAGE")]
    max_disk_usage: Option<u64>,
    /// How long an `Idempotency-Key` is remembered: a batch sent again under it within this
    /// time is acknowledged again and not stored twice [default: 10m].
    #[arg(long, env = "LOGPIPE_IDEMPOTENCY_WINDOW")]
    idempotency_window: Option<String>,
    /// Most idempotency keys remembered; past it the oldest are forgotten [default: 100000].
    #[arg(long, env = "LOGPIPE_IDEMPOTENCY_MAX_KEYS")]
    idempotency_max_keys: Option<usize>,
    /// Live tails open at once; past it, 429 [default: 64].
    #[arg(long, env = "LOGPIPE_MAX_TAILS")]
    max_tails: Option<usize>,
    /// Matching records one live tail holds for a slow reader before it skips, bytes
    /// [default: 8 MiB].
    #[arg(long, env = "LOGPIPE_TAIL_BUFFER_BYTES")]
    tail_buffer_bytes: Option<usize>,
    /// Flush the memtable into segments at this size, bytes [default: 32 MiB].
    #[arg(long, env = "LOGPIPE_MEMTABLE_FLUSH_BYTES")]
    memtable_flush_bytes: Option<usize>,
    /// Flush the memtable when its oldest record is this old [default: 10s].
    #[arg(long, env = "LOGPIPE_MEMTABLE_FLUSH_INTERVAL")]
    memtable_flush_interval: Option<String>,
    /// Hold writes while unflushed memtables hold more than this, bytes [default: 96 MiB].
    #[arg(long, env = "LOGPIPE_MAX_MEMTABLE_BYTES")]
    max_memtable_bytes: Option<usize>,
    /// How long a held write waits for a flush before it is refused with 503 [default: 10s].
    #[arg(long, env = "LOGPIPE_FLUSH_WAIT")]
    flush_wait: Option<String>,
    /// Merge a partition once it has more segments than this [default: 4].
    #[arg(long, env = "LOGPIPE_MAX_SEGMENTS_PER_PARTITION")]
    max_segments_per_partition: Option<usize>,
    /// Hold writes while a partition has more segments than this (merges are behind); after
    /// --flush-wait they get 503 merges_behind [default: 64].
    #[arg(long, env = "LOGPIPE_STALL_SEGMENTS_PER_PARTITION")]
    stall_segments_per_partition: Option<usize>,
    /// zstd level for merged segment columns [default: 3].
    #[arg(long, env = "LOGPIPE_COMPRESSION_LEVEL")]
    compression_level: Option<i32>,
    /// Rewrite a partition into one segment at --cold-level once its day is over and no flush
    /// touched it for this long [default: 30s].
    #[arg(long, env = "LOGPIPE_SETTLE_AFTER")]
    settle_after: Option<String>,
    /// zstd level of settled partitions [default: 9].
    #[arg(long, env = "LOGPIPE_COLD_LEVEL")]
    cold_level: Option<i32>,
    /// What this process does, comma-separated: `ingest`, `query`, `store`, or `all` (the
    /// default; with no --nats-url, the embedded single node). See docs/CLUSTER.md.
    #[arg(long, env = "LOGPIPE_ROLE")]
    role: Option<String>,
    /// Cluster mode: NATS server URLs, comma-separated (e.g. nats://10.0.0.1:4222).
    #[arg(long, env = "LOGPIPE_NATS_URL")]
    nats_url: Option<String>,
    /// Name of the JetStream stream batches travel on [default: logpipe].
    #[arg(long, env = "LOGPIPE_NATS_STREAM")]
    nats_stream: Option<String>,
    /// JetStream replicas of the stream [default: 3].
    #[arg(long, env = "LOGPIPE_NATS_REPLICAS")]
    nats_replicas: Option<usize>,
    /// Bytes the stream may hold waiting for store nodes before ingest gets 429 [default: 8 GiB].
    #[arg(long, env = "LOGPIPE_NATS_MAX_BYTES")]
    nats_max_bytes: Option<i64>,
    /// Cluster mode: the URL this node's API is reached on, as listed by /api/v1/cluster
    /// [default: the address it listens on].
    #[arg(long, env = "LOGPIPE_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Cluster mode (store and query roles): the S3 bucket holding segments and the catalog.
    #[arg(long, env = "LOGPIPE_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// S3 endpoint, e.g. http://10.0.0.5:8333 for SeaweedFS or MinIO [default: AWS_ENDPOINT,
    /// else AWS]. Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "LOGPIPE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "LOGPIPE_S3_REGION")]
    s3_region: Option<String>,
    /// Key prefix of everything logpipe writes in the bucket [default: logpipe].
    #[arg(long, env = "LOGPIPE_S3_PREFIX")]
    s3_prefix: Option<String>,
    /// Query role: directory of the local cache of segment byte ranges [default:
    /// <data-dir>/cache].
    #[arg(long, env = "LOGPIPE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Query role: bytes the cache may hold [default: 1 GiB].
    #[arg(long, env = "LOGPIPE_CACHE_SIZE")]
    cache_size: Option<u64>,
    /// Store role: upload held batches at least this often [default: 5s].
    #[arg(long, env = "LOGPIPE_UPLOAD_INTERVAL")]
    upload_interval: Option<String>,
    /// Store role: upload as soon as held batches take this many bytes [default: 256 MiB].
    #[arg(long, env = "LOGPIPE_MAX_PENDING_BYTES")]
    max_pending_bytes: Option<usize>,
    /// Cluster mode: bearer token this node presents to other nodes (an admin token when
    /// [[tokens]] are configured).
    #[arg(long, env = "LOGPIPE_CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppLimitEntry {
    records_per_second: Option<f64>,
    bytes_per_second: Option<f64>,
}

fn positive(v: Option<f64>, what: &str) -> Result<Option<f64>> {
    match v {
        Some(x) if !(x > 0.0 && x.is_finite()) => bail!("{what}: must be a positive number, not {x}"),
        _ => Ok(v),
    }
}

/// One `[[tokens]]` table of the config file. The secret is given inline (`token`) or, to keep
/// it out of the file, as the name of an environment variable (`token_env`).
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    name: String,
    token: Option<String>,
    token_env: Option<String>,
    scopes: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry").field("name", &self.name).field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

impl TokenEntry {
    fn spec(&self) -> Result<logpipe_server::TokenSpec> {
        let name = &self.name;
        let token = match (&self.token, &self.token_env) {
            (Some(t), None) => t.clone(),
            (None, Some(var)) => std::env::var(var).with_context(|| format!("token {name:?}: ${var} is not set"))?,
            _ => bail!("token {name:?}: give exactly one of token and token_env"),
        };
        let scopes = self
            .scopes
            .iter()
            .map(|s| s.parse::<logpipe_server::Scope>().map_err(|e| anyhow::anyhow!("token {name:?}: {e}")))
            .collect::<Result<_>>()?;
        let apps = self
            .apps
            .iter()
            .map(|a| AppPattern::parse(a).with_context(|| format!("token {name:?}: apps")))
            .collect::<Result<_>>()?;
        Ok(logpipe_server::TokenSpec { name: name.clone(), token, scopes, apps })
    }
}

/// A rustls server configuration from PEM files.
fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> Result<std::sync::Arc<rustls::ServerConfig>> {
    let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate in it", cert.display());
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .with_context(|| format!("{}: not a PEM private key", key.display()))?
        .with_context(|| format!("{}: no private key in it", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not go together")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(cfg))
}

impl ServeArgs {
    /// Fills every setting not given by a flag or an environment variable from the config
    /// file, in one pass over all of them: the file and the flags meet as key/value maps, so
    /// a setting cannot be left out of the merge. A key the file may not have (a typo, a
    /// flag-only setting) is an error naming it and its line.
    fn merge_file(self) -> Result<ServeArgs> {
        let Some(path) = self.config.clone() else { return Ok(self) };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str::<ServeArgs>(&text).with_context(|| format!("parsing {}", path.display()))?;
        let file: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut merged = serde_json::to_value(file)?;
        let serde_json::Value::Object(flags) = serde_json::to_value(&self)? else { unreachable!("a struct") };
        for (key, value) in flags {
            let unset = match &value {
                serde_json::Value::Null | serde_json::Value::Bool(false) => true,
                serde_json::Value::Array(a) => a.is_empty(),
                _ => false,
            };
            if !unset {
                merged[key] = value;
            }
        }
        let mut out: ServeArgs =
            serde_json::from_value(merged).with_context(|| format!("applying {}", path.display()))?;
        // the flag-only settings
        out.config = self.config;
        out.retention_app = self.retention_app;
        Ok(out)
    }

    fn into_config(self) -> Result<(String, ServerConfig, Option<logpipe_cluster::BusConfig>)> {
        let roles = parse_roles(self.role.as_deref().unwrap_or("all"))?;
        let storage_args = StorageArgs {
            s3_bucket: self.s3_bucket.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            s3_prefix: self.s3_prefix.clone(),
            cache_dir: self.cache_dir.clone(),
            cache_size: self.cache_size,
            upload_interval: self.upload_interval.clone(),
            max_pending_bytes: self.max_pending_bytes,
            cluster_token: self.cluster_token.clone(),
        };
        let mut bus = bus_config(&self, roles)?;
        let mut engine = EngineConfig::new(self.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)));
        if let Some(f) = &self.fsync {
            engine.fsync = parse_fsync(f)?;
        }
        if let Some(r) = &self.retention {
            engine.retention = Some(duration(r).context("--retention")?);
        }
        let mut per_app: Vec<(String, String)> = self.retention_per_app.unwrap_or_default().into_iter().collect();
        for spec in &self.retention_app {
            let Some((app, d)) = spec.split_once('=') else { bail!("--retention-app {spec:?}: expected app=duration") };
            per_app.push((app.into(), d.into()));
        }
        for (app, d) in per_app {
            let app = AppName::parse(&app).context("retention per app")?;
            engine.retention_per_app.insert(app, duration(&d).context("retention per app")?);
        }
        if let Some(v) = self.wal_queue {
            engine.ingest_queue = v.max(1);
        }
        if let Some(v) = self.memtable_flush_bytes {
            engine.memtable_flush_bytes = v;
        }
        if let Some(v) = &self.memtable_flush_interval {
            engine.memtable_flush_interval = duration(v).context("--memtable-flush-interval")?;
        }
        if let Some(v) = self.max_memtable_bytes {
            engine.max_memtable_bytes = v;
        }
        if let Some(v) = &self.flush_wait {
            engine.flush_wait = duration(v).context("--flush-wait")?;
        }
        if let Some(v) = self.max_segments_per_partition {
            engine.max_segments_per_partition = v.max(1);
        }
        if let Some(v) = self.stall_segments_per_partition {
            engine.stall_segments_per_partition = v.max(1);
        }
        if let Some(v) = self.compression_level {
            engine.block.level = v;
        }
        if let Some(v) = &self.settle_after {
            engine.settle_after = duration(v).context("--settle-after")?;
        }
        if let Some(v) = self.cold_level {
            engine.cold_level = v;
        }
        if let Some(v) = &self.idempotency_window {
            engine.idempotency_window = positive_duration(v, "--idempotency-window")?;
        }
        engine.max_disk_usage = self.max_disk_usage;
        if let Some(v) = self.idempotency_max_keys {
            engine.idempotency_max_keys = v.max(1);
        }
        let mut cfg = ServerConfig::new(engine);
        macro_rules! set {
            ($($field:ident => $($target:ident).+),*) => { $( if let Some(v) = self.$field { cfg.$($target).+ = v; } )* };
        }
        set!(
            ingest_workers => ingest_workers,
            ingest_queue => ingest_queue,
            ingest_memory_bytes => ingest_memory_bytes,
            query_workers => query_workers,
            query_queue => query_queue,
            max_body_bytes => max_body_bytes,
            max_message_bytes => limits.max_message_bytes,
            max_tags => limits.max_tags,
            max_tag_bytes => limits.max_tag_bytes,
            max_query_limit => max_query_limit,
            query_memory_bytes => query_memory_bytes,
            max_tails => max_tails,
            tail_buffer_bytes => tail_buffer_bytes,
            max_memory_bytes => max_memory_bytes,
            syslog_max_connections => syslog_max_connections,
            syslog_max_frame_bytes => syslog_max_frame
        );
        cfg.app_limit = logpipe_server::AppLimit {
            records_per_second: positive(self.app_records_per_second, "--app-records-per-second")?,
            bytes_per_second: positive(self.app_bytes_per_second, "--app-bytes-per-second")?,
        };
        for (app, l) in self.app_limits.iter().flatten() {
            let name = AppName::parse(app).with_context(|| format!("app_limits.{app}"))?;
            let limit = logpipe_server::AppLimit {
                records_per_second: positive(l.records_per_second, &format!("app_limits.{app}.records_per_second"))?,
                bytes_per_second: positive(l.bytes_per_second, &format!("app_limits.{app}.bytes_per_second"))?,
            };
            cfg.app_limits.insert(name, limit);
        }
        if !self.loki_app_label.is_empty() {
            cfg.loki_app_labels = self.loki_app_label.clone();
        }
        cfg.tokens = self.tokens.iter().flatten().map(TokenEntry::spec).collect::<Result<_>>()?;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            cfg.tls = Some(tls_config(cert, key)?);
        }
        if let Some(v) = &self.query_timeout {
            cfg.query_timeout = positive_duration(v, "--query-timeout")?;
        }
        let explicit = Explicit {
            ingest_memory: self.ingest_memory_bytes.is_some(),
            max_memtable: self.max_memtable_bytes.is_some(),
            memtable_flush: self.memtable_flush_bytes.is_some(),
            query_memory: self.query_memory_bytes.is_some(),
        };
        fit_to_memory_limit(&mut cfg, explicit);
        cfg.roles = roles;
        cfg.advertise_url = self.advertise_url.clone();
        if bus.is_some() {
            cfg.storage = storage_config(&storage_args, &cfg)?;
        }
        if let Some(bus) = &mut bus {
            // a retried batch with the same Idempotency-Key is dropped by JetStream within this window
            bus.duplicate_window = cfg.engine.idempotency_window;
        }
        Ok((self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string()), cfg, bus))
    }
}

/// Which memory budgets were set by flag or config file.
#[derive(Clone, Copy)]
struct Explicit {
    ingest_memory: bool,
    max_memtable: bool,
    memtable_flush: bool,
    query_memory: bool,
}

/// The memory budgets not set explicitly are shrunk to fit `--max-memory-bytes`: each of
/// ingest bodies in flight, memtables and one query's working set to an eighth of it (memtables
/// cost about twice their bytes in allocator terms), so that their sum stays under the limit
/// that the resident-memory check enforces. Ingest bodies keep room for one body of the
/// largest size.
fn fit_to_memory_limit(cfg: &mut ServerConfig, set: Explicit) {
    let limit = usize::try_from(cfg.max_memory_bytes).unwrap_or(usize::MAX);
    if limit == 0 {
        return;
    }
    let eighth = (limit / 8).max(1 << 20);
    if !set.ingest_memory {
        cfg.ingest_memory_bytes = cfg.ingest_memory_bytes.min(eighth).max(cfg.max_body_bytes + 1024);
    }
    if !set.max_memtable {
        cfg.engine.max_memtable_bytes = cfg.engine.max_memtable_bytes.min(eighth);
    }
    if !set.memtable_flush {
        cfg.engine.memtable_flush_bytes = cfg.engine.memtable_flush_bytes.min(cfg.engine.max_memtable_bytes / 4);
    }
    if !set.query_memory {
        cfg.query_memory_bytes = cfg.query_memory_bytes.min(eighth);
    }
}

/// A setting's duration (`500ms`, `90s`, `30d`, ...); every duration setting is a [`Duration`].
fn duration(v: &str) -> Result<Duration> {
    Ok(Duration::from_nanos(parse_duration(v)? as u64))
}

/// [`duration`], refusing zero.
fn positive_duration(v: &str, flag: &str) -> Result<Duration> {
    let d = duration(v).context(flag.to_string())?;
    anyhow::ensure!(!d.is_zero(), "{flag} must be positive");
    Ok(d)
}

fn parse_fsync(s: &str) -> Result<FsyncMode> {
    Ok(match s {
        "always" => FsyncMode::Always,
        "never" => FsyncMode::Never,
        _ => match s.strip_prefix("interval:") {
            Some(d) => FsyncMode::Interval(duration(d)?),
            None => bail!("--fsync {s:?}: expected always, interval:<duration> or never"),
        },
    })
}

/// Raises the soft limit on open files to the hard limit (as Go programs such as VictoriaLogs
/// do): the usual soft limit of 1,024 is a leftover of `select(2)`. Returns the soft limit in
/// force.
fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a live rlimit.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

pub fn run(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = args.merge_file()?;
    let nofile = raise_open_file_limit();
    let max_open = args.max_open_segment_files.unwrap_or((nofile / 2).clamp(64, 65536) as usize);
    logpipe_storage::files::set_max_open(max_open);
    tracing::debug!(nofile, max_open, "open-file limits");
    let insecure_no_auth = args.insecure_no_auth;
    let (syslog_tcp, syslog_udp) = (args.syslog_tcp.clone(), args.syslog_udp.clone());
    let (listen, mut cfg, bus) = args.into_config()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        if let Some(bus) = bus {
            // refuses old or JetStream-less NATS servers before anything listens
            let bus = logpipe_cluster::Bus::connect(bus).await?;
            cfg.bus = Some(logpipe_server::Bus(std::sync::Arc::new(bus)));
        }
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() && cfg.tokens.is_empty() {
            if !insecure_no_auth {
                bail!(
                    "refusing to listen on {addr} without authentication: configure [[tokens]] in the \
                     config file (docs/SECURITY.md), listen on loopback, or pass --insecure-no-auth"
                );
            }
            tracing::warn!(%addr, "listening beyond loopback without authentication (--insecure-no-auth)");
        }
        // syslog has no authentication at all: beyond loopback only when asked for
        let mut syslog = logpipe_server::SyslogListeners::default();
        let open = |addr: std::net::SocketAddr, what: &str| -> Result<()> {
            if !addr.ip().is_loopback() && !insecure_no_auth {
                bail!("refusing syslog {what} on {addr}: syslog has no authentication; listen on loopback or pass --insecure-no-auth");
            }
            Ok(())
        };
        if let Some(a) = &syslog_tcp {
            let l = tokio::net::TcpListener::bind(a).await.with_context(|| format!("syslog tcp on {a}"))?;
            open(l.local_addr()?, "tcp")?;
            println!("logpipe syslog tcp on {}", l.local_addr()?);
            syslog.tcp = Some(l);
        }
        if let Some(a) = &syslog_udp {
            let u = tokio::net::UdpSocket::bind(a).await.with_context(|| format!("syslog udp on {a}"))?;
            open(u.local_addr()?, "udp")?;
            println!("logpipe syslog udp on {}", u.local_addr()?);
            syslog.udp = Some(u);
        }
        // the line tests and scripts read to find a port picked with :0 (printed last)
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        println!("logpipe listening on {scheme}://{addr}");
        tracing::info!(%addr, data_dir = %cfg.engine.data_dir.display(), fsync = ?cfg.engine.fsync, "starting");
        logpipe_server::serve_all(cfg, listener, syslog, shutdown_signal()).await?;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // without signal handlers the process still stops on the default action
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logpipe.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nfsync = \"interval:100ms\"\nretention = \"30d\"\nquery_workers = 3\n[retention_per_app]\nhdfs = \"7d\"\n",
        )
        .unwrap();
        let args = ServeArgs { config: Some(path), query_workers: Some(5), ..Default::default() };
        let (listen, cfg, _) = args.merge_file().unwrap().into_config().unwrap();
        assert_eq!(listen, "127.0.0.1:9999");
        assert_eq!(cfg.query_workers, 5);
        assert_eq!(cfg.engine.fsync, FsyncMode::Interval(Duration::from_millis(100)));
        assert_eq!(cfg.engine.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(cfg.engine.retention_per_app[&AppName::parse("hdfs").unwrap()], Duration::from_secs(7 * 86_400));
        assert!(parse_fsync("sometimes").is_err());
    }

    #[test]
    fn every_key_of_the_file_takes_effect_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logpipe.toml");
        // settings a hand-kept merge list once left out are merged like any other
        std::fs::write(
            &path,
            "max_tails = 7\ncold_level = 12\nloki_app_label = [\"svc\"]\ninsecure_no_auth = true\n\
             syslog_max_frame_bytes = 4096\n[app_limits.web]\nrecords_per_second = 10.0\n",
        )
        .unwrap();
        let args = ServeArgs { config: Some(path.clone()), max_tails: Some(9), ..Default::default() };
        let merged = args.merge_file().unwrap();
        assert!(merged.insecure_no_auth);
        assert!(merged.app_limits.as_ref().is_some_and(|l| l.contains_key("web")));
        let (_, cfg, _) = merged.into_config().unwrap();
        assert_eq!(cfg.max_tails, 9, "a flag wins over the file");
        assert_eq!(cfg.engine.cold_level, 12);
        assert_eq!(cfg.loki_app_labels, ["svc"]);
        assert_eq!(cfg.syslog_max_frame, 4096);

        std::fs::write(&path, "max_tail = 7\n").unwrap();
        let err = format!("{:#}", ServeArgs { config: Some(path), ..Default::default() }.merge_file().unwrap_err());
        assert!(err.contains("max_tail"), "{err}");
    }

    #[test]
    fn environment_variables_set_flags() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        use clap::Parser;
        // a variable no other test reads
        std::env::set_var("LOGPIPE_SETTLE_AFTER", "45s");
        let cli = Cli::try_parse_from(["logpipe", "--max-tails", "3"]).unwrap();
        std::env::remove_var("LOGPIPE_SETTLE_AFTER");
        assert_eq!(cli.serve.settle_after.as_deref(), Some("45s"));
        assert_eq!(cli.serve.max_tails, Some(3));
    }
}
