use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: &'static str },
    #[error("{path} has format version {version}, which this build cannot read")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("compression failed: {0}")]
    Compress(std::io::Error),
    /// The segment file was renamed into place but the directory entry could not be made
    /// durable: after a crash it may or may not be there.
    #[error("{path} was published but its directory could not be synced: {source}")]
    Unsettled { path: PathBuf, source: std::io::Error },
    /// A memtable flush failed and is being retried; writes wait for it.
    #[error("flushing memtables to segments fails and is being retried: {0}")]
    FlushFailing(String),
    #[error("segment has no rows")]
    EmptySegment,
    #[error(transparent)]
    Wal(#[from] logpipe_wal::WalError),
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("the engine is shut down")]
    Closed,
    /// A block of a segment kept elsewhere (object storage) could not be fetched: queries
    /// leave it out and say their answer is partial.
    #[error("{what} could not be fetched: {source}")]
    Unavailable { what: String, source: std::io::Error },
    #[error("the query was cancelled")]
    Cancelled,
    #[error(
        "the query needs more than its memory budget of {limit} bytes for {what}; narrow it \
         (time range, apps, filters, a smaller limit or a larger step)"
    )]
    OverBudget { limit: u64, what: &'static str },
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Where a corruption would be reported: a file and an offset in it.
#[derive(Debug, Clone)]
pub struct Corruption {
    pub path: Arc<PathBuf>,
    pub offset: u64,
}

impl Corruption {
    pub fn err(&self, reason: &'static str) -> StorageError {
        StorageError::Corrupt { path: self.path.to_path_buf(), offset: self.offset, reason }
    }
}
