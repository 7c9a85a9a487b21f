//! The store role: takes batches from the stream, writes them into segments, uploads those
//! to object storage, records them in the catalog, and only then acknowledges the messages.
//!
//! ```text
//! pull (durable consumer logpipe-store) ─▶ held: decoded batches, unacknowledged, served to
//!   query nodes (GET /internal/v1/pending)
//! every --upload-interval (or --max-pending-bytes):
//!   held ─▶ one segment per app-day ─▶ PUT segments/<app>/<day>/<id>.seg (create-if-absent)
//!        ─▶ catalog: +segments, +their stream sequences (one compare-and-swap)
//!        ─▶ ack every held message
//! ```
//!
//! JetStream is the write-ahead log: a held batch is on a quorum of NATS servers' disks, so a
//! store node keeps nothing on its own disk that matters. If it dies, JetStream hands its
//! unacknowledged batches to another store node after the ack wait. The catalog records every
//! stream sequence it holds, and a change that would record a sequence twice is refused and
//! redone without it, so a batch is in exactly one catalogued segment: one that was uploaded
//! and catalogued but whose acknowledgement was lost is found in the catalog on redelivery and
//! acknowledged without being stored again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use logpipe_model::Record;
use logpipe_storage::block::BlockOptions;
use logpipe_storage::partition::{day_name, PartitionKey};
use logpipe_storage::{segment, MemChunk, Row};
use parking_lot::Mutex;

use crate::catalog::{Catalog, CatalogError, SegmentEntry, SeqSet};
use crate::{decode, Bus, ENCODING, ENCODING_HEADER};

/// How a store node batches its uploads.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Upload what is held at least this often...
    pub upload_interval: Duration,
    /// ...or as soon as it holds this many bytes (records, as held in memory); fetching from
    /// the stream pauses while an upload cannot bring it back under.
    pub max_pending_bytes: usize,
    /// Where segments are built before upload (emptied at start).
    pub work_dir: PathBuf,
    /// Block options of uploaded segments.
    pub block: BlockOptions,
}

pub const DEFAULT_UPLOAD_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_PENDING_BYTES: usize = 256 << 20;
/// zstd level of uploaded segments: they are written once and read by every query node.
pub const UPLOAD_LEVEL: i32 = 3;

/// A batch taken from the stream and not yet in a catalogued segment.
struct Held {
    seq: u64,
    chunk: Arc<MemChunk>,
    bytes: usize,
    msg: jetstream::Message,
}

/// Counters for `GET /api/v1/cluster` and metrics.
#[derive(Debug, Default, serde::Serialize)]
pub struct StoreStats {
    pub uploads: u64,
    pub segments_uploaded: u64,
    pub bytes_uploaded: u64,
    pub records_uploaded: u64,
    pub upload_failures: u64,
    /// Redelivered batches found already catalogued and acknowledged without storing them.
    pub duplicates_skipped: u64,
    pub held_batches: u64,
    pub held_bytes: u64,
}

pub struct StoreNode {
    bus: Arc<Bus>,
    catalog: Arc<Catalog>,
    cfg: StoreSettings,
    node_id: String,
    /// What is held, for queries (the run loop owns the messages).
    visible: Mutex<Vec<(u64, Arc<MemChunk>)>>,
    /// Sequences catalogued as of the newest catalog this node has seen.
    stored: Mutex<SeqSet>,
    next_object: AtomicU64,
    uploads: AtomicU64,
    segments_uploaded: AtomicU64,
    bytes_uploaded: AtomicU64,
    records_uploaded: AtomicU64,
    upload_failures: AtomicU64,
    duplicates_skipped: AtomicU64,
    held_bytes: AtomicU64,
}

impl StoreNode {
    pub fn new(
        bus: Arc<Bus>,
        catalog: Arc<Catalog>,
        cfg: StoreSettings,
        node_id: String,
    ) -> std::io::Result<StoreNode> {
        // leftovers of a previous run are segments that were never catalogued
        if cfg.work_dir.exists() {
            std::fs::remove_dir_all(&cfg.work_dir)?;
        }
        std::fs::create_dir_all(&cfg.work_dir)?;
        Ok(StoreNode {
            bus,
            catalog,
            cfg,
            node_id,
            visible: Mutex::new(Vec::new()),
            stored: Mutex::new(SeqSet::default()),
            next_object: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            segments_uploaded: AtomicU64::new(0),
            bytes_uploaded: AtomicU64::new(0),
            records_uploaded: AtomicU64::new(0),
            upload_failures: AtomicU64::new(0),
            duplicates_skipped: AtomicU64::new(0),
            held_bytes: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            uploads: self.uploads.load(Relaxed),
            segments_uploaded: self.segments_uploaded.load(Relaxed),
            bytes_uploaded: self.bytes_uploaded.load(Relaxed),
            records_uploaded: self.records_uploaded.load(Relaxed),
            upload_failures: self.upload_failures.load(Relaxed),
            duplicates_skipped: self.duplicates_skipped.load(Relaxed),
            held_batches: self.visible.lock().len() as u64,
            held_bytes: self.held_bytes.load(Relaxed),
        }
    }

    /// The held batches (stream sequence and records) that hold a record `keep` accepts.
    pub fn pending(&self, keep: impl Fn(&Row<'_>) -> bool) -> Vec<(u64, Vec<Record>)> {
        let held: Vec<(u64, Arc<MemChunk>)> = self.visible.lock().clone();
        held.into_iter()
            .filter_map(|(seq, c)| {
                let hits: Vec<Record> = c.rows().filter(|r| keep(r)).map(|r| r.to_record()).collect();
                (!hits.is_empty()).then_some((seq, hits))
            })
            .collect()
    }

    /// Takes batches until `stop` turns true; then uploads what it holds (or hands it back).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        // query nodes list the store nodes to ask at most NODE_LIST_TTL ago: hold nothing
        // before every one of them can know this node (it registers as it starts)
        tokio::select! {
            _ = tokio::time::sleep(crate::reader::STORE_START_DELAY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let consumer = loop {
            match self.bus.consumer().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the store consumer; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        let mut held: Vec<Held> = Vec::new();
        let mut first_at: Option<Instant> = None;
        let mut retry_at = Instant::now();
        let mut last_progress = Instant::now();
        let progress_every = self.bus.config().ack_wait / 3;
        loop {
            if *stop.borrow() {
                break;
            }
            let held_bytes: usize = held.iter().map(|h| h.bytes).sum();
            self.held_bytes.store(held_bytes as u64, Relaxed);
            let due = first_at.is_some_and(|t| t.elapsed() >= self.cfg.upload_interval)
                || held_bytes >= self.cfg.max_pending_bytes;
            if due && Instant::now() >= retry_at {
                match self.upload(&mut held).await {
                    Ok(()) => first_at = None,
                    Err(e) => {
                        self.upload_failures.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, held = held.len(), "upload failed; the batches stay held and are retried");
                        retry_at = Instant::now() + Duration::from_secs(1);
                    }
                }
                if held.is_empty() {
                    first_at = None;
                }
                continue;
            }
            if !held.is_empty() && last_progress.elapsed() >= progress_every {
                // still working on them: JetStream must not hand them to another node yet
                for h in &held {
                    let _ = h.msg.ack_with(AckKind::Progress).await;
                }
                last_progress = Instant::now();
            }
            if held_bytes >= self.cfg.max_pending_bytes {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            let fetched = tokio::select! {
                f = consumer.fetch().max_messages(256).expires(Duration::from_millis(500)).messages() => f,
                _ = stop.wait_for(|s| *s) => break,
            };
            let mut batch = match fetched {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "fetching from JetStream failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(m) = batch.next().await {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(error = %e, "fetch ended");
                        break;
                    }
                };
                if let Some(h) = self.take(m).await {
                    if let Some(same) = held.iter_mut().find(|x| x.seq == h.seq) {
                        // delivered again while held (a progress report JetStream missed): keep
                        // one copy, acknowledged through the newest delivery
                        same.msg = h.msg;
                        continue;
                    }
                    if held.is_empty() {
                        first_at = Some(Instant::now());
                        last_progress = Instant::now();
                    }
                    self.visible.lock().push((h.seq, h.chunk.clone()));
                    held.push(h);
                }
            }
        }
        if !held.is_empty() {
            // a clean stop uploads what it holds; what cannot be uploaded goes to the others now
            let upload = tokio::time::timeout(Duration::from_secs(20), self.upload(&mut held)).await;
            if !matches!(upload, Ok(Ok(()))) {
                tracing::warn!(held = held.len(), "stopping with batches not uploaded; handing them back");
                for h in held {
                    let _ = h.msg.ack_with(AckKind::Nak(None)).await;
                }
            }
        }
        self.visible.lock().clear();
    }

    /// Decodes a message; `None` once it is dealt with (already catalogued, or not a batch).
    async fn take(&self, m: jetstream::Message) -> Option<Held> {
        let seq = match m.info() {
            Ok(i) => i.stream_sequence,
            Err(e) => {
                tracing::error!(error = %e, "a message without JetStream metadata; dropped");
                let _ = m.ack_with(AckKind::Term).await;
                return None;
            }
        };
        if self.stored.lock().contains(seq) {
            self.duplicates_skipped.fetch_add(1, Relaxed);
            let _ = m.double_ack().await;
            return None;
        }
        let encoding = m.headers.as_ref().and_then(|h| h.get(ENCODING_HEADER)).map(|v| v.as_str().to_string());
        let records = if encoding.as_deref() != Some(ENCODING) {
            Err(format!("{ENCODING_HEADER} is {encoding:?}, not {ENCODING:?}"))
        } else {
            decode(&m.payload)
        };
        match records {
            Ok(records) if !records.is_empty() => {
                let bytes = records.iter().map(Record::mem_size).sum();
                Some(Held { seq, chunk: Arc::new(MemChunk::new(records)), bytes, msg: m })
            }
            Ok(_) => {
                let _ = m.double_ack().await;
                None
            }
            Err(why) => {
                tracing::error!(seq, reason = %why, "a message on the stream is not a logpipe batch; dropped");
                let _ = m.ack_with(AckKind::Term).await;
                None
            }
        }
    }

    /// Uploads everything in `held` and acknowledges it; on success `held` is empty.
    async fn upload(&self, held: &mut Vec<Held>) -> Result<(), CatalogError> {
        loop {
            if held.is_empty() {
                return Ok(());
            }
            let built = self.build(held).await?;
            let mut entries = Vec::with_capacity(built.len());
            let mut uploaded = Vec::with_capacity(built.len());
            let mut result = Ok(());
            for (entry, path) in built {
                let put = match tokio::fs::read(&path).await {
                    Ok(bytes) => self.catalog.put_object(&entry.key, bytes).await,
                    Err(e) => Err(CatalogError::Local(format!("{}: {e}", path.display()))),
                };
                let _ = tokio::fs::remove_file(&path).await;
                match put {
                    Ok(()) => {
                        uploaded.push(entry.key.clone());
                        entries.push(entry);
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if let Err(e) = result {
                self.forget(&uploaded).await;
                return Err(e);
            }
            let seqs: Vec<u64> = held.iter().map(|h| h.seq).collect();
            let mut taken = Vec::new();
            let committed = self
                .catalog
                .update(|snap| {
                    taken = seqs.iter().copied().filter(|&s| snap.stored.contains(s)).collect();
                    if !taken.is_empty() {
                        return false;
                    }
                    snap.segments.extend(entries.iter().cloned());
                    for &s in &seqs {
                        snap.stored.insert(s);
                    }
                    true
                })
                .await;
            let snap = match committed {
                Ok(s) => s,
                Err(e) => {
                    // the change may have landed even so (a lost reply): the segments stay
                    // where they are, and a retry finds its sequences taken and rebuilds
                    return Err(e);
                }
            };
            *self.stored.lock() = snap.stored.clone();
            if !taken.is_empty() {
                // another store node stored some of these after JetStream handed them over:
                // build again without them
                tracing::info!(batches = taken.len(), "batches already catalogued by another store node");
                self.forget(&uploaded).await;
                let (dup, keep): (Vec<Held>, Vec<Held>) = held.drain(..).partition(|h| taken.contains(&h.seq));
                *held = keep;
                self.release(&dup);
                for h in dup {
                    self.duplicates_skipped.fetch_add(1, Relaxed);
                    let _ = h.msg.double_ack().await;
                }
                continue;
            }
            self.uploads.fetch_add(1, Relaxed);
            self.segments_uploaded.fetch_add(entries.len() as u64, Relaxed);
            self.bytes_uploaded.fetch_add(entries.iter().map(|e| e.bytes).sum(), Relaxed);
            self.records_uploaded.fetch_add(entries.iter().map(|e| e.records).sum(), Relaxed);
            let done: Vec<Held> = std::mem::take(held);
            self.release(&done);
            for h in done {
                if let Err(e) = h.msg.double_ack().await {
                    // catalogued: a redelivery is found in the catalog and not stored again
                    tracing::warn!(seq = h.seq, error = %e, "acknowledging an uploaded batch failed");
                }
            }
            return Ok(());
        }
    }

    /// Drops `done` from what queries see.
    fn release(&self, done: &[Held]) {
        let gone: std::collections::HashSet<u64> = done.iter().map(|h| h.seq).collect();
        self.visible.lock().retain(|(seq, _)| !gone.contains(seq));
    }

    /// Deletes uploaded objects no catalog version refers to (best effort).
    async fn forget(&self, keys: &[String]) {
        for k in keys {
            let _ = self.catalog.delete_object(k).await;
        }
    }

    /// Writes the held records into one segment per app-day in the work directory.
    async fn build(&self, held: &[Held]) -> Result<Vec<(SegmentEntry, PathBuf)>, CatalogError> {
        let chunks: Vec<Arc<MemChunk>> = held.iter().map(|h| h.chunk.clone()).collect();
        let dir = self.cfg.work_dir.clone();
        let opts = self.cfg.block;
        let first = self.next_object.fetch_add(chunks.len() as u64, Relaxed);
        let node = self.node_id.clone();
        tokio::task::spawn_blocking(move || {
            let mut parts: HashMap<PartitionKey, Vec<Row<'_>>> = HashMap::new();
            for c in &chunks {
                for r in c.rows() {
                    parts.entry(PartitionKey::of(r.app, r.ts)).or_default().push(r);
                }
            }
            let mut out = Vec::with_capacity(parts.len());
            for (i, (key, records)) in parts.into_iter().enumerate() {
                let id = first + i as u64;
                let seg = segment::write_records(&dir, id, &key, 0, records, opts)
                    .map_err(|e| CatalogError::Local(e.to_string()))?;
                let day = day_name(key.day);
                let entry = SegmentEntry {
                    // node ids are unique per process run, and the counter per node
                    key: format!("segments/{}/{day}/{node}-{id}.seg", key.app.as_str()),
                    app: key.app.as_str().to_string(),
                    day,
                    min_ts: seg.meta.min_ts,
                    max_ts: seg.meta.max_ts,
                    records: seg.meta.rows,
                    bytes: seg.file_len,
                };
                out.push((entry, seg.path().to_path_buf()));
            }
            Ok(out)
        })
        .await
        .map_err(|e| CatalogError::Local(format!("building segments panicked: {e}")))?
    }
}
