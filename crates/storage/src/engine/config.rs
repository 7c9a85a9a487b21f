//! The engine's settings and their defaults.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use logpipe_model::{AppName, Timestamp};

use crate::block::BlockOptions;

/// How the WAL is made durable before a batch is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// fsync before every acknowledgement (shared by concurrent batches).
    Always,
    /// Acknowledge after `write`, fsync at most this long afterwards: an OS crash or power
    /// loss can lose up to this much acknowledged data; a process crash loses nothing.
    Interval(Duration),
    /// Acknowledge after `write`, never fsync the WAL (segments are still fsynced): an OS
    /// crash can lose everything not yet flushed to segments.
    Never,
}

/// Typed configuration; every default is a named constant.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub fsync: FsyncMode,
    /// Batches that may wait for the WAL writer before ingest is refused with "overloaded".
    pub ingest_queue: usize,
    /// Flush the memtable once it holds this many bytes...
    pub memtable_flush_bytes: usize,
    /// ...or once its oldest record is this old.
    pub memtable_flush_interval: Duration,
    /// Hold writes while memtables (active and being flushed) hold more than this...
    pub max_memtable_bytes: usize,
    /// ...for at most this long, then refuse them.
    pub flush_wait: Duration,
    /// Block options of merged segments, where most data ends up.
    pub block: BlockOptions,
    /// zstd level of freshly flushed segments: cheap, since merges rewrite them anyway.
    pub flush_level: i32,
    /// A partition whose day is over and that no flush touched for this long is rewritten
    /// into one segment at `cold_level`.
    pub settle_after: Duration,
    pub cold_level: i32,
    /// Merge a partition once it has more segments than this.
    pub max_segments_per_partition: usize,
    /// Hold writes while a partition has more segments than this (merges are behind), for at
    /// most `flush_wait`, then refuse them: the bound on merge debt, and so on the segments a
    /// query of fresh data opens.
    pub stall_segments_per_partition: usize,
    /// Segments merged at once.
    pub merge_fan_in: usize,
    /// Keep records this long; `None` keeps everything.
    pub retention: Option<Duration>,
    pub retention_per_app: HashMap<AppName, Duration>,
    pub regex_size_limit: usize,
    pub maintenance_interval: Duration,
    /// Threads writing a flush's partitions in parallel.
    pub flush_threads: usize,
    /// How long an idempotency key is remembered, and how many at most (the oldest go first).
    pub idempotency_window: Duration,
    pub idempotency_max_keys: usize,
    /// Bytes of segments and WAL the data directory may hold: past it, the oldest partitions
    /// (before today) are dropped, and when only today's are left ingest is refused.
    pub max_disk_usage: Option<u64>,
}

pub const DEFAULT_INGEST_QUEUE: usize = 256;
pub const DEFAULT_MEMTABLE_FLUSH_BYTES: usize = 32 << 20;
pub const DEFAULT_MEMTABLE_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_MEMTABLE_BYTES: usize = 96 << 20;
pub const DEFAULT_FLUSH_WAIT: Duration = Duration::from_secs(10);
pub const DEFAULT_FLUSH_LEVEL: i32 = 1;
pub const DEFAULT_SETTLE_AFTER: Duration = Duration::from_secs(30);
pub const DEFAULT_COLD_LEVEL: i32 = 9;
pub const DEFAULT_MAX_SEGMENTS_PER_PARTITION: usize = 4;
pub const DEFAULT_MERGE_FAN_IN: usize = 16;
pub const DEFAULT_STALL_SEGMENTS_PER_PARTITION: usize = 64;
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(600);
pub const DEFAULT_IDEMPOTENCY_MAX_KEYS: usize = 100_000;

impl EngineConfig {
    /// How long `app`'s records are kept: its own retention, else the global one.
    pub fn retention_for(&self, app: &AppName) -> Option<Duration> {
        self.retention_per_app.get(app).copied().or(self.retention)
    }

    /// The oldest timestamp of `app` still within its retention at `now`, if retention applies.
    pub fn retention_cutoff(&self, app: &AppName, now: Timestamp) -> Option<Timestamp> {
        self.retention_for(app).map(|keep| now.saturating_sub(i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX)))
    }

    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            fsync: FsyncMode::Always,
            ingest_queue: DEFAULT_INGEST_QUEUE,
            memtable_flush_bytes: DEFAULT_MEMTABLE_FLUSH_BYTES,
            memtable_flush_interval: DEFAULT_MEMTABLE_FLUSH_INTERVAL,
            max_memtable_bytes: DEFAULT_MAX_MEMTABLE_BYTES,
            flush_wait: DEFAULT_FLUSH_WAIT,
            block: BlockOptions::default(),
            flush_level: DEFAULT_FLUSH_LEVEL,
            settle_after: DEFAULT_SETTLE_AFTER,
            cold_level: DEFAULT_COLD_LEVEL,
            max_segments_per_partition: DEFAULT_MAX_SEGMENTS_PER_PARTITION,
            merge_fan_in: DEFAULT_MERGE_FAN_IN,
            stall_segments_per_partition: DEFAULT_STALL_SEGMENTS_PER_PARTITION,
            retention: None,
            retention_per_app: HashMap::new(),
            regex_size_limit: crate::DEFAULT_REGEX_SIZE_LIMIT,
            maintenance_interval: Duration::from_secs(1),
            flush_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            idempotency_max_keys: DEFAULT_IDEMPOTENCY_MAX_KEYS,
            max_disk_usage: None,
        }
    }
}
