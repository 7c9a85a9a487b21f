//! Background work, a file per concept: flushing frozen memtables (`flush.rs`), merging
//! segments (`merge.rs`), settling finished days (`settle.rs`), and retention and the disk
//! budget (`retention.rs`). This file holds the threads' loops and the partition claims
//! that keep two of them from rewriting the same partition.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Inner;
use crate::partition::PartitionKey;

mod flush;
mod merge;
mod retention;
mod settle;

pub(crate) use flush::{flusher_loop, row_cmp};
pub(crate) use merge::merge_once;
pub use merge::{merge_segments, pick_merge};
pub(crate) use retention::{apply_retention, enforce_disk_budget};
pub(crate) use settle::settle_once;

pub(crate) fn maintenance_loop(inner: Arc<Inner>, stop: Receiver<()>) {
    let mut last_retention = std::time::Instant::now() - std::time::Duration::from_secs(3600);
    run_until_stopped(&inner, &stop, || {
        if let Err(e) = enforce_disk_budget(&inner) {
            tracing::error!(error = %e, "enforcing the disk budget failed");
        }
        if last_retention.elapsed() >= std::time::Duration::from_secs(60) {
            last_retention = std::time::Instant::now();
            if let Err(e) = apply_retention(&inner) {
                tracing::error!(error = %e, "retention failed");
            }
        }
        merge_once(&inner).unwrap_or_else(|e| {
            tracing::error!(error = %e, "merge failed");
            false
        })
    });
}

/// Settles finished days on a thread of its own: rewriting a whole day at the cold level may
/// take minutes, and today's merges go on meanwhile (writes wait on their debt).
pub(crate) fn settle_loop(inner: Arc<Inner>, stop: Receiver<()>) {
    run_until_stopped(&inner, &stop, || {
        settle_once(&inner).unwrap_or_else(|e| {
            tracing::error!(error = %e, "settling a partition failed");
            false
        })
    });
}

/// Calls `step` until `stop` is closed: back to back while it finds work (returns true),
/// checking for shutdown between calls, or segments pile up under heavy ingest; every
/// `maintenance_interval` while it finds none.
fn run_until_stopped(inner: &Inner, stop: &Receiver<()>, mut step: impl FnMut() -> bool) {
    let mut idle = true;
    loop {
        let wait = if idle { inner.cfg.maintenance_interval } else { Duration::ZERO };
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        idle = !step();
    }
}

/// A partition being rewritten by a merge or settle (see `Inner::busy`), until dropped.
struct Claim<'a> {
    inner: &'a Inner,
    key: PartitionKey,
}

impl<'a> Claim<'a> {
    /// Claims `key`, unless a merge or settle is rewriting it.
    fn take(inner: &'a Inner, key: &PartitionKey) -> Option<Claim<'a>> {
        inner.busy.lock().insert(key.clone()).then(|| Claim { inner, key: key.clone() })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.inner.busy.lock().remove(&self.key);
    }
}
