//! Write-ahead log of opaque byte records.
//!
//! The log is a directory of numbered files, `00000000000000000001.wal`, … Each file is a
//! header followed by frames; a frame carries one payload (logpipe puts one encoded ingest
//! batch in each). The WAL knows nothing of records: it stores bytes, checks them, and gives
//! them back in order after a crash.
//!
//! ```text
//! file    := header frame*
//! header  := magic "LOGPWAL1" (8 B) | version u32 LE | reserved u32 (16 B in all)
//! frame   := len u32 LE | crc32c u32 LE | payload (len bytes)
//!            crc32c covers the 4 length bytes and the payload, so a torn or
//!            zeroed length is caught as well as a torn payload
//! ```
//!
//! Durability is the caller's choice of when to call [`Wal::sync`]; logpipe's engine does
//! group commit on top: it appends every waiting batch, syncs once, then acknowledges them
//! all. A failed sync poisons the log: every later call fails, because after a failed
//! `fsync` the kernel may have dropped the dirty pages and a retry could report success
//! for data that is gone.

#![deny(unsafe_code)]

mod frame;
mod reader;
mod writer;

pub use frame::{decode_frame, encode_frame, FrameError, FRAME_HEADER_LEN, MAX_FRAME_LEN};
pub use reader::{replay, verify, ReplayStats};
pub use writer::{remove_through, Wal};

use std::path::PathBuf;

use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"LOGPWAL1";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 16;

/// Sequence number of a WAL file; files are replayed in increasing order.
pub type FileSeq = u64;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("wal i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("wal is poisoned after a failed fsync; writes stop until restart: {0}")]
    Poisoned(String),
    #[error("wal file {path} has a bad header")]
    BadHeader { path: PathBuf },
    #[error("payload of {len} bytes is over the frame limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// The disk is full: nothing of the failed write is left in the file, and writing may go
    /// on once there is room.
    #[error("no space left for the wal ({path}); nothing of the failed write was kept")]
    NoSpace { path: PathBuf },
}

/// The error a fail point injects: `enospc`, or any other text for a plain i/o error.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) fn injected(arg: Option<String>) -> std::io::Error {
    match arg.as_deref() {
        Some("enospc") => std::io::Error::from_raw_os_error(28),
        other => std::io::Error::other(format!("injected fault: {}", other.unwrap_or("error"))),
    }
}

pub type Result<T> = std::result::Result<T, WalError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

pub(crate) fn file_name(seq: FileSeq) -> String {
    format!("{seq:020}.wal")
}

pub(crate) fn parse_file_name(name: &str) -> Option<FileSeq> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The WAL files in `dir`, sorted by sequence number.
pub fn list_files(dir: &std::path::Path) -> Result<Vec<(FileSeq, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_file_name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn file_header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Makes a directory entry change (create, rename, delete) durable.
pub fn sync_dir(dir: &std::path::Path) -> Result<()> {
    fail::fail_point!("wal::sync_dir", |arg| Err(io_err(dir)(injected(arg))));
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
}
