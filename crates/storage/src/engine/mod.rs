//! The engine: WAL group commit, memtable, snapshots for queries, and the background threads.
//!
//! Threads and who owns what:
//! - the *writer* thread owns the WAL. It takes every waiting batch, appends them, syncs once
//!   (group commit), inserts them into the memtable and only then acknowledges them. Because
//!   one thread both appends and rotates the WAL, "every record in the frozen memtable came
//!   from a WAL file `<= watermark`" holds by construction.
//! - the *flusher* thread writes frozen memtables into segments, publishes them, and deletes
//!   the WAL files they cover.
//! - the *maintenance* thread merges segments and applies retention and the disk budget; the
//!   *settle* thread rewrites finished days at the cold level. A merge or settle claims its
//!   partition (`Inner::busy`), so the two never work on the same one, and the long rewrite
//!   of a finished day does not hold up the merges of today's partitions.
//!
//! Queries take a snapshot (cloned `Arc`s of blocks and memtable chunks) under a read lock held
//! for microseconds, then run without locks on the caller's rayon pool.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use logpipe_model::{AppName, Record, Timestamp};
use logpipe_wal::Wal;
use parking_lot::{Mutex, RwLock};

use crate::cost::Cost;
use crate::filter::{Filter, Query};
use crate::idempotency::{self, IdempotencyKey, Seen};
use crate::memtable::{self, Frozen, Memtable};
use crate::metrics::EngineMetrics;
use crate::partition::PartitionKey;
use crate::search::{self, Answer, Request, Source};
use crate::segment::Segment;
use crate::{batch, io_err, maintenance, Result, SegmentId, StorageError};

mod config;
mod recovery;
mod writer;

pub use config::*;
use recovery::load_partitions;
use writer::{writer_loop, Pending, WriterMsg};
pub use writer::{Acked, TAIL_BACKLOG_BYTES, TAIL_BACKLOG_GROUPS};

/// Why an ingest batch was not acknowledged. Nothing of a refused batch is kept.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("ingest queue is full ({0} batches waiting)")]
    QueueFull(usize),
    #[error("memtables hold {0} bytes waiting for flush, and it did not catch up in time; retry later")]
    FlushBehind(usize),
    #[error(
        "a partition holds {segments} segments, more than the {limit} that hold writes, and merges did not \
         catch up in time; retry later"
    )]
    MergeBehind { segments: usize, limit: usize },
    #[error("writes are stopped: {0}")]
    Stopped(String),
    #[error("the engine is shutting down")]
    Closed,
    #[error("this idempotency key was used for a different batch within the window")]
    KeyConflict,
    #[error(
        "the data directory holds {used} bytes, over its budget of {budget} (--max-disk-usage), and only \
         today's partitions are left to drop; free space or raise the budget"
    )]
    DiskFull { used: u64, budget: u64 },
    #[error("{0}; retry when there is room")]
    NoSpace(String),
    #[error("{0}; it is being retried, and writes resume when it succeeds")]
    Retrying(String),
}

/// How an acknowledged batch was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written now.
    New,
    /// Its idempotency key was seen within the window, with the same content: not written
    /// again; the first submission stored `records` records.
    Again { records: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub partitions: usize,
    pub segments: usize,
    pub segment_bytes: u64,
    pub segment_records: u64,
    pub memtable_records: u64,
    pub memtable_bytes: usize,
}

pub(crate) type Partitions = BTreeMap<PartitionKey, Vec<Arc<Segment>>>;

pub(crate) struct State {
    pub active: Memtable,
    pub frozen: Vec<Arc<Frozen>>,
    pub partitions: Partitions,
    /// When a flush last added a segment to each partition (settling waits for quiet).
    pub last_flush: HashMap<PartitionKey, Instant>,
}

/// What the engine's threads share.
///
/// Lock order: `busy`, then `state`, then `stalled` (a merge claims its partition under `busy`
/// while it reads `state`; the writer reads `state` and checks `stalled`). `idem`, `poisoned`,
/// `disk_over` and `flushed_lock` are leaves: nothing else is locked while one of them is held.
pub(crate) struct Inner {
    pub cfg: EngineConfig,
    pub root: PathBuf,
    pub wal_dir: PathBuf,
    pub state: RwLock<State>,
    next_id: AtomicU64,
    poisoned: Mutex<Option<String>>,
    pub metrics: EngineMetrics,
    queued: AtomicUsize,
    pub shutting_down: AtomicBool,
    /// Threads that write flushed partitions in parallel.
    pub flush_pool: rayon::ThreadPool,
    /// Tag sets shared by memtable chunks.
    tag_sets: memtable::TagSetInterner,
    /// Signalled whenever a flush publishes its segments and frees memtable room.
    pub flushed: parking_lot::Condvar,
    pub flushed_lock: Mutex<()>,
    /// Whether the last merge found room on disk (see `maintenance::room_for_merge`).
    pub merge_room: AtomicBool,
    /// The most segments one partition holds, of those merges may fold (see
    /// [`Inner::note_segments`]): what writes compare with the stall limit, read without a lock.
    most_segments: AtomicUsize,
    /// Partitions a merge, settle or drop is working on: each claims its partition, and the
    /// others leave it alone until it is done. Two merges of one partition could otherwise both
    /// publish and, after a crash, leave two segments holding the same rows; a drop could
    /// remove the directory a merge is writing into.
    pub busy: Mutex<HashSet<PartitionKey>>,
    pub opened: Instant,
    /// Acknowledged batches for live tails; sent to only while someone listens.
    tail: tokio::sync::broadcast::Sender<Arc<Acked>>,
    /// Records sent to `tail` so far: the number of the next one.
    tail_seq: AtomicU64,
    /// Bytes of records in groups not yet seen by every tail.
    tail_held: Arc<AtomicUsize>,
    /// Idempotency keys of the window; checked and filled by the writer.
    idem: Mutex<idempotency::Table>,
    /// Bytes of segments and WAL when the disk budget was last enforced, if over it.
    pub disk_over: Mutex<Option<u64>>,
    /// Why writes wait, while they do: a failed flush being retried, or a WAL rotation that
    /// met a full disk. Cleared when that succeeds.
    pub stalled: Mutex<Option<Stall>>,
}

impl Inner {
    /// Segments in one partition past which writes wait for merges: above the merge budget,
    /// whatever the settings, so that a held write always has a merge to wait for.
    pub(crate) fn stall_limit(&self) -> usize {
        self.cfg.stall_segments_per_partition.max(self.cfg.max_segments_per_partition + 1)
    }

    /// Records the most segments one partition of `st` holds, of those merges may fold: a
    /// segment with a quarantined block is left out of merges (see `maintenance::sound`), so
    /// it does not count (else writes would wait for merges that never come). Called, under
    /// the state's write lock, wherever a partition's segments change.
    pub(crate) fn note_segments(&self, st: &State) {
        let most =
            st.partitions.values().map(|segs| segs.iter().filter(|s| s.quarantined() == 0).count()).max().unwrap_or(0);
        self.most_segments.store(most, Ordering::Relaxed);
    }

    pub fn next_segment_id(&self) -> SegmentId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn poison(&self, why: String) {
        tracing::error!(reason = %why, "storage engine stops accepting writes");
        self.poisoned.lock().get_or_insert(why);
    }

    /// The oldest timestamp of `app` still within its retention at `now`.
    pub fn retention_cutoff(&self, app: &AppName, now: Timestamp) -> Option<Timestamp> {
        self.cfg.retention_cutoff(app, now)
    }
}

/// Why writes wait for a moment (see `Inner::stalled`).
#[derive(Clone, Debug)]
pub(crate) struct Stall {
    pub why: String,
    /// The disk is full: writes get `NoSpace` (507).
    pub no_space: bool,
    /// The WAL could not start its next file; the writer tries again on its next tick.
    pub rotation: bool,
}

/// Resolves once a submitted batch is durable (per the fsync mode) and queryable, or refused.
pub type IngestTicket = tokio::sync::oneshot::Receiver<std::result::Result<Stored, IngestError>>;

pub(crate) struct FlushJob {
    pub frozen: Arc<Frozen>,
    pub reply: Option<mpsc::Sender<Result<()>>>,
}

pub struct Engine {
    inner: Arc<Inner>,
    tx: SyncSender<WriterMsg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    maint_stop: Mutex<Vec<mpsc::Sender<()>>>,
    _lock: File,
}

impl Engine {
    /// Opens (or creates) the data directory: loads segments, replays the WAL, and starts the
    /// writer, flusher and maintenance threads.
    pub fn open(cfg: EngineConfig) -> Result<Engine> {
        let root = cfg.data_dir.join("partitions");
        let wal_dir = cfg.data_dir.join("wal");
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        std::fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;
        let lock_path = cfg.data_dir.join("LOCK");
        let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
        lock.try_lock().map_err(|_| StorageError::Io {
            path: lock_path.clone(),
            source: std::io::Error::other("data directory is in use by another logpipe process"),
        })?;

        let metrics = EngineMetrics::new();
        let (partitions, max_id) = load_partitions(&root, &metrics)?;
        let watermarks: HashMap<PartitionKey, u64> = partitions
            .iter()
            .map(|(k, segs)| (k.clone(), segs.iter().map(|s| s.meta.wal_watermark).max().unwrap_or(0)))
            .collect();

        let inner = Arc::new(Inner {
            root,
            wal_dir: wal_dir.clone(),
            state: RwLock::new(State {
                active: Memtable::default(),
                frozen: Vec::new(),
                partitions,
                last_flush: HashMap::new(),
            }),
            next_id: AtomicU64::new(max_id + 1),
            poisoned: Mutex::new(None),
            stalled: Mutex::new(None),
            metrics,
            queued: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            flushed: parking_lot::Condvar::new(),
            flushed_lock: Mutex::new(()),
            busy: Mutex::new(HashSet::new()),
            merge_room: AtomicBool::new(true),
            most_segments: AtomicUsize::new(0),
            opened: Instant::now(),
            tail: tokio::sync::broadcast::channel(TAIL_BACKLOG_GROUPS).0,
            tail_seq: AtomicU64::new(0),
            tail_held: Arc::new(AtomicUsize::new(0)),
            disk_over: Mutex::new(None),
            idem: Mutex::new(idempotency::Table::new(
                cfg.idempotency_window.as_nanos().min(i64::MAX as u128) as i64,
                cfg.idempotency_max_keys,
            )),
            tag_sets: memtable::TagSetInterner::default(),
            flush_pool: rayon::ThreadPoolBuilder::new()
                .num_threads(cfg.flush_threads.max(1))
                .thread_name(|i| format!("logpipe-flush-{i}"))
                .build()
                .map_err(|e| StorageError::Io { path: cfg.data_dir.clone(), source: std::io::Error::other(e) })?,
            cfg,
        });
        inner.note_segments(&inner.state.read());

        recovery::replay_wal(&inner, &wal_dir, &watermarks)?;
        let wal = Wal::create(&wal_dir)?;

        let (tx, rx) = mpsc::sync_channel(inner.cfg.ingest_queue);
        let (flush_tx, flush_rx) = mpsc::channel::<FlushJob>();
        let (maint_tx, maint_rx) = mpsc::channel::<()>();
        let (settle_tx, settle_rx) = mpsc::channel::<()>();
        let mut threads = Vec::new();
        let i = inner.clone();
        threads.push(spawn("logpipe-wal", move || writer_loop(i, wal, rx, flush_tx)));
        let i = inner.clone();
        threads.push(spawn("logpipe-flush", move || maintenance::flusher_loop(i, flush_rx)));
        let i = inner.clone();
        threads.push(spawn("logpipe-maint", move || maintenance::maintenance_loop(i, maint_rx)));
        let i = inner.clone();
        threads.push(spawn("logpipe-settle", move || maintenance::settle_loop(i, settle_rx)));
        let engine = Engine {
            inner,
            tx,
            threads: Mutex::new(threads),
            maint_stop: Mutex::new(vec![maint_tx, settle_tx]),
            _lock: lock,
        };
        engine.refresh_gauges();
        Ok(engine)
    }

    /// Makes `records` durable (per the fsync mode) and queryable, or refuses all of them.
    /// Blocks until the WAL writer has answered; async callers use [`Engine::submit`].
    pub fn ingest(&self, records: Vec<Record>) -> std::result::Result<(), IngestError> {
        self.submit(records)?.blocking_recv().unwrap_or(Err(IngestError::Closed)).map(|_| ())
    }

    /// Like [`Engine::submit`], with an idempotency key: a batch whose key was seen within
    /// `idempotency_window` resolves to [`Stored::Again`] and is not stored again.
    pub fn submit_keyed(
        &self,
        records: Vec<Record>,
        key: Option<IdempotencyKey>,
    ) -> std::result::Result<IngestTicket, IngestError> {
        self.submit_inner(records, key)
    }

    /// Queues `records` for the WAL writer. Refuses at once (nothing kept) when writes are
    /// stopped, the queue is full or memtables are over their budget.
    pub fn submit(&self, records: Vec<Record>) -> std::result::Result<IngestTicket, IngestError> {
        self.submit_inner(records, None)
    }

    fn submit_inner(
        &self,
        records: Vec<Record>,
        key: Option<IdempotencyKey>,
    ) -> std::result::Result<IngestTicket, IngestError> {
        if let Some(why) = self.poisoned() {
            return Err(IngestError::Stopped(why));
        }
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(IngestError::Closed);
        }
        if let (Some(used), Some(budget)) = (*self.inner.disk_over.lock(), self.inner.cfg.max_disk_usage) {
            return Err(IngestError::DiskFull { used, budget });
        }
        self.stalled()?;
        self.wait_for_room()?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        if records.is_empty() {
            let _ = reply.send(Ok(Stored::New));
            return Ok(rx);
        }
        let key = key.map(|k| (k, now_ns()));
        let payload = batch::encode_keyed(&records, key.as_ref().map(|(k, at)| (k, *at)));
        let bytes = records.iter().map(Record::mem_size).sum();
        let count = records.len();
        // the memtable's form is made here, on the ingest worker that parsed the records, so
        // their allocations are freed by the thread that made them
        let (chunks, records) = if self.inner.tail.receiver_count() > 0 {
            (memtable::chunks(records.clone(), &self.inner.tag_sets), Some(records))
        } else {
            (memtable::chunks(records, &self.inner.tag_sets), None)
        };
        let depth = self.inner.queued.fetch_add(1, Ordering::Relaxed) + 1;
        self.inner.metrics.ingest_queue_depth.set(depth as i64);
        match self
            .tx
            .try_send(WriterMsg::Append { batch: Pending { payload, chunks, count, records, bytes, reply }, key })
        {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.inner.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => IngestError::QueueFull(self.inner.cfg.ingest_queue),
                    TrySendError::Disconnected(_) => IngestError::Closed,
                })
            }
        }
    }

    /// Backpressure by latency first: while memtables are over budget, or merges are behind
    /// (a partition has more than `stall_segments_per_partition` segments), wait (up to
    /// `flush_wait`) for a flush or a merge to publish, which holds the calling ingest worker
    /// and so slows admission; refuse only if they do not catch up in time.
    fn wait_for_room(&self) -> std::result::Result<(), IngestError> {
        let deadline = Instant::now() + self.inner.cfg.flush_wait;
        let limit = self.inner.stall_limit();
        loop {
            let held = self.memtable_bytes();
            let segments = self.inner.most_segments.load(Ordering::Relaxed);
            if held <= self.inner.cfg.max_memtable_bytes && segments <= limit {
                return Ok(());
            }
            if let Some(why) = self.poisoned() {
                return Err(IngestError::Stopped(why));
            }
            self.stalled()?;
            let now = Instant::now();
            if now >= deadline || self.inner.shutting_down.load(Ordering::Relaxed) {
                return Err(if held > self.inner.cfg.max_memtable_bytes {
                    IngestError::FlushBehind(held)
                } else {
                    IngestError::MergeBehind { segments, limit }
                });
            }
            let mut g = self.inner.flushed_lock.lock();
            self.inner.flushed.wait_for(&mut g, (deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Refuses writes while they are stalled: `NoSpace` for a full disk.
    fn stalled(&self) -> std::result::Result<(), IngestError> {
        match self.inner.stalled.lock().as_ref() {
            None => Ok(()),
            Some(s) if s.no_space => Err(IngestError::NoSpace(s.why.clone())),
            Some(s) => Err(IngestError::Retrying(s.why.clone())),
        }
    }

    /// Runs a query on the current rayon pool.
    pub fn query(&self, q: &Query, req: &Request) -> Result<Answer> {
        self.query_with_cost(q, req, &Cost::default())
    }

    /// Runs a query on the current rayon pool, counting what it costs into `cost` (which
    /// holds what was counted so far if the query fails).
    pub fn query_with_cost(&self, q: &Query, req: &Request, cost: &Cost) -> Result<Answer> {
        let f = Filter::compile(&search::after_cursor(q, req), self.inner.cfg.regex_size_limit)?;
        let sources = self.snapshot(&f, cost);
        search::run(sources, &f, req, cost)
    }

    fn snapshot(&self, f: &Filter, cost: &Cost) -> Vec<Source> {
        let st = self.inner.state.read();
        let mut out = Vec::new();
        for (key, segs) in &st.partitions {
            Cost::add(&cost.partitions, 1);
            if !f.app_matches(&key.app) || !f.overlaps(key.start(), key.end() - 1) {
                Cost::add(&cost.partitions_pruned, 1);
                continue;
            }
            for seg in segs {
                search::push_blocks(seg, f, cost, &mut out);
            }
        }
        for table in std::iter::once(&st.active).chain(st.frozen.iter().map(|fz| &fz.table)) {
            for (key, chunks) in &table.parts {
                if !f.app_matches(&key.app) {
                    continue;
                }
                for c in chunks {
                    if f.overlaps(c.min_ts, c.max_ts) {
                        out.push(Source::Mem(c.clone()));
                    }
                }
            }
        }
        out
    }

    /// Compiles `q` the way queries do, to test single records with [`Filter::record_matches`].
    pub fn compile(&self, q: &Query) -> Result<Filter> {
        Filter::compile(q, self.inner.cfg.regex_size_limit)
    }

    /// Every batch acknowledged from now on, in acknowledgement order. A receiver that falls
    /// more than [`TAIL_BACKLOG_GROUPS`] groups behind misses the oldest (and can count them
    /// from [`Acked::first`]); ingest never waits for a receiver. Also returns the number the
    /// next record will have, so that records missed before the first one received count too.
    pub fn subscribe(&self) -> (tokio::sync::broadcast::Receiver<Arc<Acked>>, u64) {
        let rx = self.inner.tail.subscribe();
        // read after subscribing: a batch numbered before this is either received or older
        (rx, self.inner.tail_seq.load(Ordering::Relaxed))
    }

    /// Writes everything in memory into segments; returns once they are published.
    pub fn flush(&self) -> Result<()> {
        let (reply, rx) = mpsc::channel();
        self.tx.send(WriterMsg::Flush { reply }).map_err(|_| StorageError::Closed)?;
        rx.recv().unwrap_or(Err(StorageError::Closed))
    }

    /// Runs merges until every partition is within its segment budget.
    pub fn merge_all(&self) -> Result<()> {
        while maintenance::merge_once(&self.inner)? {}
        Ok(())
    }

    /// Settles every partition that is due (see `EngineConfig::settle_after`).
    pub fn settle_all(&self) -> Result<()> {
        while maintenance::settle_once(&self.inner)? {}
        Ok(())
    }

    /// Applies retention now.
    pub fn apply_retention(&self) -> Result<()> {
        maintenance::apply_retention(&self.inner)
    }

    /// The oldest timestamp ingest accepts for `app`, if retention applies.
    pub fn retention_cutoff(&self, app: &AppName) -> Option<Timestamp> {
        self.inner.retention_cutoff(app, now_ns())
    }

    pub fn poisoned(&self) -> Option<String> {
        self.inner.poisoned.lock().clone()
    }

    /// Stops writes as after a failed fsync; reads keep working. For fault-injection tests.
    pub fn poison(&self, why: &str) {
        self.inner.poison(why.to_string());
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    fn memtable_bytes(&self) -> usize {
        memtable_bytes(&self.inner.state.read())
    }

    pub fn stats(&self) -> EngineStats {
        let st = self.inner.state.read();
        let segs = st.partitions.values().flatten();
        EngineStats {
            partitions: st.partitions.len(),
            segments: st.partitions.values().map(Vec::len).sum(),
            segment_bytes: segs.clone().map(|s| s.file_len).sum(),
            segment_records: segs.map(|s| s.meta.rows).sum(),
            memtable_records: st.active.records + st.frozen.iter().map(|f| f.table.records).sum::<u64>(),
            memtable_bytes: memtable_bytes(&st),
        }
    }

    /// Brings the gauges (segments, bytes on disk, memtable) up to date.
    pub fn refresh_gauges(&self) {
        let s = self.stats();
        let m = &self.inner.metrics;
        m.partitions.set(s.partitions as i64);
        m.segments.set(s.segments as i64);
        m.disk_bytes.set(s.segment_bytes as i64);
        m.memtable_bytes.set(s.memtable_bytes as i64);
        m.memtable_records.set(s.memtable_records as i64);
        let files = crate::files::stats();
        m.open_segment_files.set(files.open as i64);
        m.segment_file_opens.inc_by(files.opens.saturating_sub(m.segment_file_opens.get()));
    }

    /// Flushes the memtable, stops the background threads and waits for them.
    pub fn close(&self) -> Result<()> {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let (reply, rx) = mpsc::channel();
        let res = match self.tx.send(WriterMsg::Shutdown { reply }) {
            Ok(()) => rx.recv().unwrap_or(Err(StorageError::Closed)),
            Err(_) => Ok(()),
        };
        self.maint_stop.lock().clear();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        res
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.threads.lock().is_empty() {
            let _ = self.close();
        }
    }
}

/// Bytes held by the active memtable and by those being flushed.
fn memtable_bytes(st: &State) -> usize {
    st.active.bytes + st.frozen.iter().map(|f| f.table.bytes).sum::<usize>()
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new().name(name.into()).spawn(f).expect("spawn engine thread")
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}
