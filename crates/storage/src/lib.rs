//! The logpipe storage engine.
//!
//! ```text
//! data_dir/
//!   wal/                         write-ahead log (logpipe-wal), one frame per ingest batch
//!   partitions/<app>/<YYYY-MM-DD>/<id>.seg   immutable columnar segments (see `segment`)
//! ```
//!
//! Storage → partition (one app, one UTC day) → segment (immutable file) → block (≤ 8192
//! sorted rows, three compressed columns, a bloom filter). Acknowledged batches live in the WAL
//! and in the memtable until a flush writes them into segments; background merges keep each
//! partition down to a few segments; retention drops whole partitions.
//!
//! This crate knows nothing of HTTP or wire formats: it takes validated [`Record`]s and
//! [`Query`]s and returns records, counts and histograms.
//!
//! [`Record`]: logpipe_model::Record

#![deny(unsafe_code)]

pub mod batch;
pub mod block;
pub mod bloom;
mod cost;
mod engine;
mod error;
pub mod files;
mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod idempotency;
mod maintenance;
mod memtable;
mod metrics;
pub mod partition;
mod search;
pub mod segment;
pub mod template;
pub mod varint;

/// Whether stored checksums are checked. Only fuzz builds (`--cfg fuzzing`) skip them, so the
/// fuzzer reaches the decoders behind them instead of stopping at the checksum.
pub(crate) const CHECK_CRC: bool = !cfg!(fuzzing);

pub use cost::{Cost, CostSummary};
pub use engine::{
    Acked, Engine, EngineConfig, EngineStats, FsyncMode, IngestError, IngestTicket, Stored, DEFAULT_COLD_LEVEL,
    TAIL_BACKLOG_BYTES, TAIL_BACKLOG_GROUPS,
};
pub use error::{Corruption, Result, StorageError};
pub use filter::{Filter, Query, DEFAULT_REGEX_SIZE_LIMIT, REGEX_NEST_LIMIT};
pub use idempotency::{IdempotencyKey, MAX_KEY_BYTES};
pub use maintenance::{merge_segments, pick_merge};
pub use memtable::{MemChunk, Row};
pub use metrics::EngineMetrics;
pub use search::{query_view, Answer, Cursor, Order, Request, Series};

/// Identifies a segment file; unique within a data directory, never reused.
pub type SegmentId = u64;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}

pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<()> {
    fail::fail_point!("storage::sync_dir", |_| Err(io_err(dir)(std::io::Error::other("injected fault"))));
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
}
