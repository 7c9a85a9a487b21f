//! The WAL writer thread: group commit, acknowledgement, the copies for live tails, and
//! handing full memtables to the flusher.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logpipe_model::Record;
use logpipe_wal::Wal;

use crate::idempotency::{self, Check, IdempotencyKey, Seen};
use crate::memtable::{Frozen, MemChunk, Memtable};
use crate::partition::PartitionKey;
use crate::{Result, StorageError};

use super::*;

pub(super) type Reply = tokio::sync::oneshot::Sender<std::result::Result<Stored, IngestError>>;

/// A submitted batch on its way through the writer: written to the WAL with its group, then
/// inserted into the memtable and acknowledged.
pub(super) struct Pending {
    /// The batch as the WAL stores it.
    pub payload: Vec<u8>,
    /// The batch as memtable chunks, cut on the submitting thread.
    pub chunks: Vec<(PartitionKey, MemChunk)>,
    /// Records in the batch.
    pub count: usize,
    /// The records as they came, kept only while a live tail listens (in their order).
    pub records: Option<Vec<Record>>,
    /// The records' size in memory, as the memtable counts it.
    pub bytes: usize,
    pub reply: Reply,
}

pub(super) enum WriterMsg {
    Append {
        batch: Pending,
        /// The batch's idempotency key and when it was submitted.
        key: Option<(IdempotencyKey, i64)>,
    },
    /// Freeze the memtable and flush it; reply once the segments are published.
    Flush {
        reply: mpsc::Sender<Result<()>>,
    },
    Shutdown {
        reply: mpsc::Sender<Result<()>>,
    },
}

/// Acknowledged records, in the order they were acknowledged, as live tails receive them.
#[derive(Debug)]
pub struct Acked {
    /// Number of the first record among all records acknowledged while a tail listened: a
    /// tail that finds a gap between the end of one group and the start of the next knows how
    /// many it missed.
    pub first: u64,
    /// Records acknowledged in this group...
    pub count: u64,
    /// ...and the records themselves, or none when the tails' backlog was full.
    pub records: Vec<Record>,
    _held: HeldBytes,
}

impl Acked {
    pub fn new(first: u64, count: u64, records: Vec<Record>) -> Acked {
        Acked { first, count, records, _held: HeldBytes::default() }
    }
}

/// Bytes of acknowledged records waiting for live tails, given back when the last tail is done.
#[derive(Debug, Default)]
pub(super) struct HeldBytes {
    bytes: usize,
    counter: Option<Arc<AtomicUsize>>,
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        if let Some(c) = &self.counter {
            c.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// Acknowledged groups live tails may fall behind by before they miss some...
pub const TAIL_BACKLOG_GROUPS: usize = 1024;
/// ...and the records' bytes (in memory) those groups may hold.
pub const TAIL_BACKLOG_BYTES: usize = 64 << 20;

/// Upper bound on the bytes one group commit gathers before writing.
const MAX_GROUP_BYTES: usize = 64 << 20;

pub(super) fn writer_loop(inner: Arc<Inner>, mut wal: Wal, rx: Receiver<WriterMsg>, flush_tx: mpsc::Sender<FlushJob>) {
    let tick = Duration::from_millis(100);
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let first = match rx.recv_timeout(tick) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if let FsyncMode::Interval(d) = inner.cfg.fsync {
                    if unsynced && last_sync.elapsed() >= d {
                        sync_wal(&inner, &mut wal);
                        last_sync = Instant::now();
                        unsynced = false;
                    }
                }
                maybe_flush(&inner, &mut wal, &flush_tx, false, None);
                inner.idem.lock().expire(now_ns());
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut group = vec![first];
        let mut bytes = 0;
        while bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(m) => {
                    if let WriterMsg::Append { batch, .. } = &m {
                        bytes += batch.payload.len();
                    }
                    group.push(m);
                }
                Err(_) => break,
            }
        }
        let mut appends = Vec::new();
        let mut controls = Vec::new();
        // batches whose key was seen: answered with the group, once what they repeat is durable
        let mut again: Vec<(Reply, u64)> = Vec::new();
        // keys first seen in this group: forgotten again if the group is not written
        let mut new_keys: Vec<String> = Vec::new();
        let mut queued = 0;
        for m in group {
            match m {
                WriterMsg::Append { batch, key } => {
                    queued += 1;
                    if let Some((k, at)) = key {
                        let mut table = inner.idem.lock();
                        match table.check(&k, at) {
                            Check::Again(n) => {
                                again.push((batch.reply, n));
                                continue;
                            }
                            Check::Conflict => {
                                let _ = batch.reply.send(Err(IngestError::KeyConflict));
                                continue;
                            }
                            Check::New => {
                                let seen = Seen { body_hash: k.body_hash, records: batch.count as u64, at };
                                new_keys.push(k.key.clone());
                                table.insert(k.key, seen);
                            }
                        }
                    }
                    appends.push(batch);
                }
                other => controls.push(other),
            }
        }
        if queued > 0 {
            inner.queued.fetch_sub(queued, Ordering::Relaxed);
            inner.metrics.ingest_queue_depth.set(inner.queued.load(Ordering::Relaxed) as i64);
        }
        if appends.is_empty() {
            for (reply, n) in again.drain(..) {
                let _ = reply.send(Ok(Stored::Again { records: n }));
            }
        }
        if !appends.is_empty() {
            inner.metrics.wal_group_batches.observe(appends.len() as f64);
            let mut res = appends.iter().try_for_each(|b| wal.append(&b.payload)).and_then(|()| wal.write());
            if res.is_ok() {
                match inner.cfg.fsync {
                    FsyncMode::Always => {
                        let t = Instant::now();
                        res = wal.sync();
                        inner.metrics.wal_fsync_seconds.observe(t.elapsed().as_secs_f64());
                    }
                    FsyncMode::Interval(d) => {
                        unsynced = true;
                        if last_sync.elapsed() >= d {
                            sync_wal(&inner, &mut wal);
                            last_sync = Instant::now();
                            unsynced = false;
                        }
                    }
                    FsyncMode::Never => {}
                }
            }
            match res {
                Ok(()) => {
                    // copies for live tails only while one listens, and only while those not
                    // yet seen by every tail fit the backlog
                    let tailed = (inner.tail.receiver_count() > 0).then(|| {
                        let count: usize = appends.iter().map(|b| b.count).sum();
                        let bytes: usize = appends.iter().map(|b| b.bytes).sum();
                        if inner.tail_held.load(Ordering::Relaxed) + bytes > TAIL_BACKLOG_BYTES {
                            return (count, 0, Vec::new());
                        }
                        let mut records = Vec::with_capacity(count);
                        for b in &mut appends {
                            match b.records.take() {
                                Some(kept) => records.extend(kept),
                                // a tail that began after the batch was submitted: the batch's
                                // records partition by partition
                                None => {
                                    records.extend(b.chunks.iter().flat_map(|(_, c)| c.rows().map(|r| r.to_record())))
                                }
                            }
                        }
                        (count, bytes, records)
                    });
                    let mut st = inner.state.write();
                    let mut replies = Vec::with_capacity(appends.len());
                    for b in appends {
                        st.active.insert_chunks(b.chunks, b.bytes);
                        replies.push(b.reply);
                    }
                    drop(st);
                    for r in replies {
                        let _ = r.send(Ok(Stored::New));
                    }
                    for (reply, n) in again.drain(..) {
                        let _ = reply.send(Ok(Stored::Again { records: n }));
                    }
                    if let Some((count, bytes, records)) = tailed {
                        let first = inner.tail_seq.fetch_add(count as u64, Ordering::Relaxed);
                        inner.tail_held.fetch_add(bytes, Ordering::Relaxed);
                        let held = HeldBytes { bytes, counter: Some(inner.tail_held.clone()) };
                        let _ = inner.tail.send(Arc::new(Acked { first, count: count as u64, records, _held: held }));
                    }
                }
                Err(e) => {
                    // nothing of the group is stored: its keys must not answer a retry
                    let mut table = inner.idem.lock();
                    for k in new_keys.drain(..) {
                        table.forget(&k);
                    }
                    drop(table);
                    let refusal = |e: &logpipe_wal::WalError| match e {
                        // the WAL cut the torn write back: writing goes on once there is room
                        logpipe_wal::WalError::NoSpace { .. } => IngestError::NoSpace(e.to_string()),
                        _ => IngestError::Stopped(e.to_string()),
                    };
                    if !matches!(e, logpipe_wal::WalError::NoSpace { .. }) {
                        inner.poison(e.to_string());
                    }
                    for b in appends {
                        let _ = b.reply.send(Err(refusal(&e)));
                    }
                    for (reply, _) in again.drain(..) {
                        let _ = reply.send(Err(refusal(&e)));
                    }
                }
            }
        }
        let mut stop = false;
        for c in controls {
            match c {
                WriterMsg::Flush { reply } => maybe_flush(&inner, &mut wal, &flush_tx, true, Some(reply)),
                WriterMsg::Shutdown { reply } => {
                    if inner.poisoned.lock().is_none() {
                        sync_wal(&inner, &mut wal);
                    }
                    maybe_flush(&inner, &mut wal, &flush_tx, true, Some(reply));
                    stop = true;
                }
                WriterMsg::Append { .. } => unreachable!("appends were split out"),
            }
        }
        if stop {
            break;
        }
        maybe_flush(&inner, &mut wal, &flush_tx, false, None);
    }
    // dropping flush_tx lets the flusher finish its queue and exit
}

fn sync_wal(inner: &Inner, wal: &mut Wal) {
    let t = Instant::now();
    if let Err(e) = wal.write().and_then(|()| wal.sync()) {
        inner.poison(e.to_string());
    }
    inner.metrics.wal_fsync_seconds.observe(t.elapsed().as_secs_f64());
}

/// Freezes the memtable and hands it to the flusher when it is big or old enough (or `force`).
fn maybe_flush(
    inner: &Inner,
    wal: &mut Wal,
    flush_tx: &mpsc::Sender<FlushJob>,
    force: bool,
    reply: Option<mpsc::Sender<Result<()>>>,
) {
    let due = {
        let st = inner.state.read();
        let a = &st.active;
        // a rotation that met a full disk is tried again on every tick
        let retry = inner.stalled.lock().as_ref().is_some_and(|s| s.rotation);
        !a.is_empty()
            && (force
                || retry
                || a.bytes >= inner.cfg.memtable_flush_bytes
                || a.since.is_some_and(|s| s.elapsed() >= inner.cfg.memtable_flush_interval))
    };
    if !due {
        if let Some(r) = reply {
            // nothing new to freeze; wait for flushes already under way by queueing an empty job
            let frozen = Arc::new(Frozen { watermark: 0, table: Memtable::default() });
            let _ = flush_tx.send(FlushJob { frozen, reply: Some(r) });
        }
        return;
    }
    if let Some(why) = inner.poisoned.lock().clone() {
        if let Some(r) = reply {
            let _ = r.send(Err(StorageError::Wal(logpipe_wal::WalError::Poisoned(why))));
        }
        return;
    }
    if let Some(stall) = inner.stalled.lock().clone().filter(|s| !s.rotation) {
        // the failed flush goes first; freeze nothing more behind it
        if let Some(r) = reply {
            let _ = r.send(Err(StorageError::FlushFailing(stall.why)));
        }
        return;
    }
    let watermark = match wal.rotate() {
        Ok(seq) => {
            let mut stalled = inner.stalled.lock();
            if stalled.as_ref().is_some_and(|s| s.rotation) {
                tracing::info!("the WAL started its next file; writes resume");
                *stalled = None;
            }
            seq
        }
        Err(e) => {
            if let logpipe_wal::WalError::NoSpace { .. } = e {
                // nothing changed: the current file goes on, and the next tick tries again
                let why = format!("starting the next WAL file: {e}");
                tracing::warn!(reason = %why, "WAL rotation failed; retrying");
                *inner.stalled.lock() = Some(Stall { why, no_space: true, rotation: true });
            } else {
                inner.poison(e.to_string());
            }
            if let Some(r) = reply {
                let _ = r.send(Err(e.into()));
            }
            return;
        }
    };
    // the WAL files this flush lets go of may hold idempotency keys: save them first
    let mut keys = inner.idem.lock();
    if keys.len() > 0 || inner.cfg.data_dir.join(idempotency::FILE).exists() {
        if let Err(e) = keys.save(&inner.cfg.data_dir, now_ns()) {
            inner.poison(e.to_string());
            if let Some(r) = reply {
                let _ = r.send(Err(e));
            }
            return;
        }
    }
    drop(keys);
    let frozen = {
        let mut st = inner.state.write();
        let table = std::mem::take(&mut st.active);
        let frozen = Arc::new(Frozen { watermark, table });
        st.frozen.push(frozen.clone());
        frozen
    };
    let _ = flush_tx.send(FlushJob { frozen, reply });
}
