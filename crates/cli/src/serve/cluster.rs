//! The cluster settings of `logpipe serve` (docs/CLUSTER.md): the roles, NATS JetStream and
//! the object storage, checked against each other.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use logpipe_server::ServerConfig;

use super::ServeArgs;

/// `--role`: a comma-separated list of `ingest`, `query`, `store` and `all`.
pub(super) fn parse_roles(s: &str) -> Result<logpipe_server::Roles> {
    let mut r = logpipe_server::Roles { ingest: false, query: false, store: false };
    for part in s.split(',').map(str::trim) {
        match part {
            "all" => r = logpipe_server::Roles::ALL,
            "ingest" => r.ingest = true,
            "query" => r.query = true,
            "store" => r.store = true,
            other => bail!("--role: unknown role {other:?}; roles are ingest, query, store and all"),
        }
    }
    Ok(r)
}

/// The cluster settings, checked against the roles; `None` for the embedded single node.
pub(super) fn bus_config(args: &ServeArgs, roles: logpipe_server::Roles) -> Result<Option<logpipe_cluster::BusConfig>> {
    let Some(urls) = &args.nats_url else {
        anyhow::ensure!(
            roles == logpipe_server::Roles::ALL,
            "--role other than all needs the cluster settings (--nats-url; see docs/CLUSTER.md)"
        );
        return Ok(None);
    };
    anyhow::ensure!(
        roles.ingest || (args.syslog_tcp.is_none() && args.syslog_udp.is_none()),
        "--syslog-tcp and --syslog-udp take writes: they need the ingest role"
    );
    anyhow::ensure!(
        !(roles.query || roles.store) || args.s3_bucket.is_some(),
        "--role store and --role query need object storage: --s3-bucket (and --s3-endpoint or \
         AWS_ENDPOINT for a bucket outside AWS; see docs/CLUSTER.md)"
    );
    let mut cfg = logpipe_cluster::BusConfig::new(urls.split(',').map(|u| u.trim().to_string()).collect());
    if let Some(s) = &args.nats_stream {
        anyhow::ensure!(
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "--nats-stream: 1 to 64 letters, digits, '-' or '_'"
        );
        cfg.stream = s.clone();
    }
    if let Some(r) = args.nats_replicas {
        anyhow::ensure!((1..=5).contains(&r), "--nats-replicas: 1 to 5 (JetStream's limit)");
        cfg.replicas = r;
    }
    if let Some(b) = args.nats_max_bytes {
        anyhow::ensure!(b > 0, "--nats-max-bytes must be positive");
        cfg.max_bytes = b;
    }
    Ok(Some(cfg))
}

/// The object storage flags, taken before the rest of the flags are consumed.
pub(super) struct StorageArgs {
    pub s3_bucket: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_prefix: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub cache_size: Option<u64>,
    pub upload_interval: Option<String>,
    pub max_pending_bytes: Option<usize>,
    pub cluster_token: Option<String>,
}

/// Cluster mode: the bucket, and how the store and query roles use it.
pub(super) fn storage_config(args: &StorageArgs, cfg: &ServerConfig) -> Result<Option<logpipe_server::ClusterStorage>> {
    use logpipe_cluster::{catalog, reader, store};
    let Some(bucket) = &args.s3_bucket else { return Ok(None) };
    let prefix = args.s3_prefix.clone().unwrap_or_else(|| "logpipe".into());
    anyhow::ensure!(
        !prefix.is_empty()
            && prefix.len() <= 256
            && prefix.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
            && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)),
        "--s3-prefix: letters, digits, '-', '_', '.' and '/' between non-empty parts"
    );
    let s3 = catalog::S3Config {
        endpoint: args.s3_endpoint.clone(),
        bucket: bucket.clone(),
        region: args.s3_region.clone(),
        access_key_id: None,
        secret_access_key: None,
    };
    let object_store = catalog::s3_store(&s3).context("object storage")?;
    let at = args.s3_endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT").ok()).unwrap_or_else(|| "AWS".into());
    let data_dir = &cfg.engine.data_dir;
    let upload_interval = match &args.upload_interval {
        Some(v) => super::positive_duration(v, "--upload-interval")?,
        None => store::DEFAULT_UPLOAD_INTERVAL,
    };
    Ok(Some(logpipe_server::ClusterStorage {
        catalog: std::sync::Arc::new(catalog::Catalog::new(object_store, &prefix)),
        describe: format!("s3://{bucket}/{prefix} at {at}"),
        store: store::StoreSettings {
            upload_interval,
            max_pending_bytes: args.max_pending_bytes.unwrap_or(store::DEFAULT_MAX_PENDING_BYTES),
            work_dir: data_dir.join("upload"),
            block: logpipe_storage::block::BlockOptions { level: store::UPLOAD_LEVEL, ..cfg.engine.block },
        },
        compact: {
            let engine = cfg.engine.clone();
            logpipe_cluster::compact::CompactSettings {
                interval: Duration::from_secs(10).min(upload_interval.max(Duration::from_secs(1))),
                max_segments: cfg.engine.max_segments_per_partition,
                fan_in: cfg.engine.merge_fan_in,
                block: cfg.engine.block,
                settle_after: cfg.engine.settle_after,
                cold_level: cfg.engine.cold_level,
                retention: std::sync::Arc::new(move |app, now| engine.retention_cutoff(app, now)),
                delete_grace: logpipe_cluster::compact::DELETE_GRACE,
                work_dir: data_dir.join("compact"),
            }
        },
        reader: reader::ReaderSettings {
            cache_dir: args.cache_dir.clone().unwrap_or_else(|| data_dir.join("cache")),
            cache_bytes: args.cache_size.unwrap_or(reader::DEFAULT_CACHE_BYTES),
            scatter_timeout: reader::DEFAULT_SCATTER_TIMEOUT,
            token: args.cluster_token.clone(),
        },
    }))
}
