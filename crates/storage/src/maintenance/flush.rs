//! Flushing: a frozen memtable written into one segment per partition (partitions in
//! parallel), published, and the WAL files it covers deleted; a failed flush is retried.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::block::BlockOptions;
use crate::engine::{FlushJob, Inner, Stall};
use crate::memtable::{Frozen, MemChunk};
use crate::partition::PartitionKey;
use crate::segment::Segment;
use crate::{Result, StorageError};

/// How long a failed flush waits before it is tried again, at first and at most.
const FLUSH_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

pub(crate) fn flusher_loop(inner: Arc<Inner>, rx: Receiver<FlushJob>) {
    for mut job in rx {
        let mut wait = FLUSH_RETRY.0;
        loop {
            let failure = match flush(&inner, &job) {
                Ok(()) => {
                    let mut stalled = inner.stalled.lock();
                    if stalled.as_ref().is_some_and(|s| !s.rotation) {
                        *stalled = None;
                        tracing::info!("memtable flush succeeded again; writes resume");
                    }
                    if let Some(r) = job.reply.take() {
                        let _ = r.send(Ok(()));
                    }
                    break;
                }
                Err(f) => f,
            };
            inner.metrics.flush_failures.inc();
            let why = format!("flush failed: {}", failure.error);
            if !failure.retry || inner.shutting_down.load(Relaxed) {
                // The records stay in the WAL and in memory (still served). Without a retry
                // (the disk may hold part of this flush) stop taking more; at shutdown the
                // WAL replays them at the next start.
                if !failure.retry {
                    inner.poison(why);
                }
                if let Some(r) = job.reply.take() {
                    let _ = r.send(Err(failure.error));
                }
                break;
            }
            // Nothing of this flush is left on disk: writing it again is safe. Writes wait
            // (refused with 507 when the disk is full, 503 otherwise) until it succeeds.
            tracing::warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "memtable flush failed; retrying");
            let no_space = no_space(&failure.error);
            *inner.stalled.lock() = Some(Stall { why, no_space, rotation: false });
            if let Some(r) = job.reply.take() {
                let _ = r.send(Err(failure.error));
            }
            let until = Instant::now() + wait;
            while Instant::now() < until && !inner.shutting_down.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            wait = (wait * 2).min(FLUSH_RETRY.1);
        }
    }
}

/// Whether an error is a full disk (`ENOSPC`).
fn no_space(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { source, .. } if source.raw_os_error() == Some(28))
}

/// A failed flush, and whether it may be tried again: only when nothing of it is left on disk.
struct FlushFailure {
    error: StorageError,
    retry: bool,
}

fn flush(inner: &Inner, job: &FlushJob) -> std::result::Result<(), FlushFailure> {
    let frozen = &job.frozen;
    if frozen.table.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    // partitions are independent: write them in parallel so a flush keeps up with ingest
    let parts: Vec<_> = frozen.table.parts.iter().collect();
    let written = inner.flush_pool.install(|| {
        parts.par_iter().map(|(key, chunks)| write_partition(inner, frozen, key, chunks)).collect::<Vec<_>>()
    });
    let mut segs = Vec::with_capacity(written.len());
    let mut failed = None;
    for w in written {
        match w {
            Ok(s) => segs.push(s),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(error) = failed {
        // A failed partition left no file unless its directory entry could not be settled.
        // Take back the partitions that were written, so that a retry writes them once: the
        // records stay in the WAL and in memory until then. Should that fail too, the
        // segments stay (their watermark keeps a restart from replaying them twice) and no
        // retry may run.
        let retry = !matches!(error, StorageError::Unsettled { .. }) && unpublish(segs.iter().map(|(_, s)| s)).is_ok();
        return Err(FlushFailure { error, retry });
    }
    publish(inner, frozen, segs, started).map_err(|error| FlushFailure { error, retry: false })
}

/// Removes the files of segments written but not yet published, durably.
fn unpublish<'a>(segs: impl Iterator<Item = &'a Arc<Segment>>) -> Result<()> {
    let mut dirs = HashSet::new();
    for s in segs {
        std::fs::remove_file(s.path()).map_err(crate::io_err(s.path()))?;
        if let Some(d) = s.path().parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    dirs.iter().try_for_each(|d| crate::sync_dir(d))
}

/// Makes a flush's segments visible and lets go of what they replace: the memtable and the
/// WAL files through its watermark.
fn publish(
    inner: &Inner,
    frozen: &Arc<Frozen>,
    segs: Vec<(PartitionKey, Arc<Segment>)>,
    started: Instant,
) -> Result<()> {
    {
        let mut st = inner.state.write();
        let now = Instant::now();
        for (key, seg) in segs {
            st.last_flush.insert(key.clone(), now);
            st.partitions.entry(key).or_default().push(seg);
        }
        inner.note_segments(&st);
        st.frozen.retain(|f| !Arc::ptr_eq(f, frozen));
    }
    inner.flushed.notify_all();
    logpipe_wal::remove_through(&inner.wal_dir, frozen.watermark)?;
    inner.metrics.flushes.inc();
    tracing::debug!(records = frozen.table.records, ms = started.elapsed().as_millis() as u64, "memtable flushed");
    Ok(())
}

fn write_partition(
    inner: &Inner,
    frozen: &Frozen,
    key: &PartitionKey,
    chunks: &[Arc<MemChunk>],
) -> Result<(PartitionKey, Arc<Segment>)> {
    let recs = chunks.iter().flat_map(|c| c.rows()).collect();
    let opts = BlockOptions { level: inner.cfg.flush_level, ..inner.cfg.block };
    let dir = key.dir(&inner.root);
    let seg = crate::segment::write_records(&dir, inner.next_segment_id(), key, frozen.watermark, recs, opts)?;
    Ok((key.clone(), Arc::new(seg)))
}

/// Row order inside a partition: (timestamp, message, tags).
pub(crate) fn row_cmp(ta: i64, ma: &[u8], ga: &[String], tb: i64, mb: &[u8], gb: &[String]) -> Ordering {
    ta.cmp(&tb).then_with(|| ma.cmp(mb)).then_with(|| ga.cmp(gb))
}
