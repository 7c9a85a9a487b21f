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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use logpipe_model::{AppName, Record};
use logpipe_wal::Wal;
use parking_lot::{Mutex, RwLock};

use crate::block::BlockOptions;
use crate::cost::Cost;
use crate::filter::{Filter, Query};
use crate::idempotency::{self, Check, IdempotencyKey, Seen};
use crate::memtable::{self, Frozen, MemChunk, Memtable};
use crate::metrics::EngineMetrics;
use crate::partition::{parse_day_name, PartitionKey};
use crate::search::{self, Answer, Request, Source};
use crate::segment::{self, Segment};
use crate::{batch, io_err, maintenance, Result, SegmentId, StorageError};

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
    /// Keep records this long (ns); `None` keeps everything.
    pub retention: Option<i64>,
    pub retention_per_app: HashMap<AppName, i64>,
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
    /// How long `app`'s records are kept (ns): its own retention, else the global one.
    pub fn retention_for(&self, app: &AppName) -> Option<i64> {
        self.retention_per_app.get(app).copied().or(self.retention)
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

    pub fn retention_for(&self, app: &AppName) -> Option<i64> {
        self.cfg.retention_for(app)
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

type Reply = tokio::sync::oneshot::Sender<std::result::Result<Stored, IngestError>>;

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
struct HeldBytes {
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

/// Resolves once a submitted batch is durable (per the fsync mode) and queryable, or refused.
pub type IngestTicket = tokio::sync::oneshot::Receiver<std::result::Result<Stored, IngestError>>;

enum WriterMsg {
    Append {
        payload: Vec<u8>,
        /// The batch as memtable chunks, cut on the submitting thread.
        chunks: Vec<(PartitionKey, MemChunk)>,
        count: usize,
        /// The records as they came, kept only while a live tail listens (in their order).
        records: Option<Vec<Record>>,
        bytes: usize,
        reply: Reply,
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

        let now = now_ns();
        inner.idem.lock().load(&inner.cfg.data_dir, now);
        let mut replayed = 0u64;
        let mut bad_frames = 0u64;
        let stats = logpipe_wal::replay(&wal_dir, |seq, payload| {
            let Ok((key, records)) = batch::decode_keyed(payload) else {
                bad_frames += 1;
                return;
            };
            if let Some((k, at)) = key {
                let seen = Seen { body_hash: k.body_hash, records: records.len() as u64, at };
                inner.idem.lock().insert(k.key, seen);
            }
            let keep: Vec<Record> = records
                .into_iter()
                .filter(|r| watermarks.get(&PartitionKey::of(&r.app, r.ts)).is_none_or(|&w| w < seq))
                .filter(|r| inner.retention_for(&r.app).is_none_or(|keep| r.ts >= now - keep))
                .collect();
            replayed += keep.len() as u64;
            let bytes = keep.iter().map(Record::mem_size).sum();
            inner.state.write().active.insert(keep, bytes, &inner.tag_sets);
        })?;
        if bad_frames > 0 {
            tracing::error!(bad_frames, "wal frames with a valid checksum did not decode; skipped");
        }
        tracing::info!(
            files = stats.files,
            frames = stats.frames,
            records = replayed,
            cuts = stats.cut.len(),
            "wal replayed"
        );
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
        match self.tx.try_send(WriterMsg::Append { payload, chunks, count, records, bytes, reply, key }) {
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
    pub fn retention_cutoff(&self, app: &AppName) -> Option<i64> {
        self.inner.retention_for(app).map(|keep| now_ns() - keep)
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

/// Upper bound on the bytes one group commit gathers before writing.
const MAX_GROUP_BYTES: usize = 64 << 20;

fn writer_loop(inner: Arc<Inner>, mut wal: Wal, rx: Receiver<WriterMsg>, flush_tx: mpsc::Sender<FlushJob>) {
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
                    if let WriterMsg::Append { payload, .. } = &m {
                        bytes += payload.len();
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
                WriterMsg::Append { payload, chunks, count, records, bytes, reply, key } => {
                    queued += 1;
                    if let Some((k, at)) = key {
                        let mut table = inner.idem.lock();
                        match table.check(&k, at) {
                            Check::Again(n) => {
                                again.push((reply, n));
                                continue;
                            }
                            Check::Conflict => {
                                let _ = reply.send(Err(IngestError::KeyConflict));
                                continue;
                            }
                            Check::New => {
                                let seen = Seen { body_hash: k.body_hash, records: count as u64, at };
                                new_keys.push(k.key.clone());
                                table.insert(k.key, seen);
                            }
                        }
                    }
                    appends.push((payload, chunks, count, records, bytes, reply));
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
            let mut res = appends.iter().try_for_each(|(p, ..)| wal.append(p)).and_then(|()| wal.write());
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
                        let count: usize = appends.iter().map(|(_, _, count, ..)| *count).sum();
                        let bytes: usize = appends.iter().map(|(.., bytes, _)| *bytes).sum();
                        if inner.tail_held.load(Ordering::Relaxed) + bytes > TAIL_BACKLOG_BYTES {
                            return (count, 0, Vec::new());
                        }
                        let mut records = Vec::with_capacity(count);
                        for (_, chunks, _, kept, ..) in &mut appends {
                            match kept.take() {
                                Some(kept) => records.extend(kept),
                                // a tail that began after the batch was submitted: the batch's
                                // records partition by partition
                                None => {
                                    records.extend(chunks.iter().flat_map(|(_, c)| c.rows().map(|r| r.to_record())))
                                }
                            }
                        }
                        (count, bytes, records)
                    });
                    let mut st = inner.state.write();
                    let mut replies = Vec::with_capacity(appends.len());
                    for (_, chunks, _, _, bytes, reply) in appends {
                        st.active.insert_chunks(chunks, bytes);
                        replies.push(reply);
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
                    for (.., reply) in appends {
                        let _ = reply.send(Err(refusal(&e)));
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

/// Opens every segment under `root`, deleting leftovers of interrupted writes and merges.
fn load_partitions(root: &Path, metrics: &EngineMetrics) -> Result<(Partitions, SegmentId)> {
    let mut parts = BTreeMap::new();
    let mut max_id = 0;
    for app_entry in std::fs::read_dir(root).map_err(io_err(root))? {
        let app_entry = app_entry.map_err(io_err(root))?;
        let name = app_entry.file_name();
        let Some(app) = name.to_str().and_then(|n| AppName::parse(n).ok()).filter(|a| a.as_str() == name) else {
            tracing::warn!(path = %app_entry.path().display(), "ignoring unexpected entry in partitions/");
            continue;
        };
        let app_dir = app_entry.path();
        for day_entry in std::fs::read_dir(&app_dir).map_err(io_err(&app_dir))? {
            let day_entry = day_entry.map_err(io_err(&app_dir))?;
            let Some(day) = day_entry.file_name().to_str().and_then(parse_day_name) else {
                tracing::warn!(path = %day_entry.path().display(), "ignoring unexpected entry");
                continue;
            };
            let key = PartitionKey { app: app.clone(), day };
            let segs = load_partition(&day_entry.path(), metrics, &mut max_id)?;
            if !segs.is_empty() {
                parts.insert(key, segs);
            }
        }
    }
    Ok((parts, max_id))
}

fn load_partition(dir: &Path, metrics: &EngineMetrics, max_id: &mut SegmentId) -> Result<Vec<Arc<Segment>>> {
    let mut segs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.ends_with(".tmp") {
            // an interrupted flush or merge: never visible, never acknowledged on its own
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            continue;
        }
        let Some(id) = segment::parse_file_name(&name) else {
            continue;
        };
        *max_id = (*max_id).max(id);
        match Segment::open(&path) {
            Ok(s) => segs.push(s),
            // a segment of another format version is not damage: refuse to start rather than set
            // aside data this build cannot read
            Err(e @ StorageError::Corrupt { .. }) => {
                tracing::error!(error = %e, "setting aside unreadable segment");
                metrics.corrupt_files.inc();
                let aside = path.with_extension("seg.corrupt");
                std::fs::rename(&path, &aside).map_err(io_err(&path))?;
            }
            Err(e) => return Err(e),
        }
    }
    let replaced: HashSet<SegmentId> = segs.iter().flat_map(|s| s.meta.replaces.iter().copied()).collect();
    let mut live = Vec::new();
    for s in segs {
        if replaced.contains(&s.id()) {
            tracing::info!(path = %s.path().display(), "deleting segment superseded by a merge");
            std::fs::remove_file(s.path()).map_err(io_err(s.path()))?;
        } else {
            live.push(Arc::new(s));
        }
    }
    live.sort_by_key(|s| s.id());
    Ok(live)
}
