//! Merges and retention of the bucket's segments, on one store node at a time.
//!
//! Every store node runs [`run`]; only the holder of the maintenance lease works. The lease is
//! a key in the node registry (a JetStream KV bucket whose entries expire 15 s after their last
//! write): taken with create-if-absent, renewed with compare-and-set on its revision, so when
//! its holder dies another store node takes it within seconds. Every change to the catalog is
//! one compare-and-swap, and a merge that finds one of its inputs gone (a concurrent change,
//! or a lease that moved during a long merge) is dropped, so even two holders at once could
//! only waste work, never lose or double records.
//!
//! ```text
//! each round (lease held):
//!   retention: segments wholly past their app's retention leave the catalog
//!   merges:    an app-day with more than max_segments segments: a run of similar sizes (up
//!              to fan_in, up to MAX_MERGE_BYTES; `pick_merge`) is downloaded, merged into
//!              one, uploaded, and swapped for it in the catalog; a finished day is merged
//!              into one at the cold level, smallest first
//!   deletion:  objects that left the catalog are deleted DELETE_GRACE later (queries that
//!              planned with an older catalog read on meanwhile)
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use logpipe_model::AppName;
use logpipe_storage::block::BlockOptions;
use logpipe_storage::partition::{parse_day_name, PartitionKey};
use logpipe_storage::pick_merge;
use logpipe_storage::segment::Segment;

use crate::catalog::{Catalog, CatalogError, Garbage, SegmentEntry, Snapshot};
use crate::Bus;

/// The lease's key in the node registry.
pub const LEASE: &str = "lease_maintenance";
/// How long an object that left the catalog is kept before it is deleted.
pub const DELETE_GRACE: Duration = Duration::from_secs(300);
/// Bytes of input one merge takes at most.
pub const MAX_MERGE_BYTES: u64 = 1 << 30;

/// The oldest timestamp of an app still within its retention at a moment; `None` keeps them all.
pub type Retention = Arc<dyn Fn(&AppName, i64) -> Option<i64> + Send + Sync>;

#[derive(Clone)]
pub struct CompactSettings {
    pub interval: Duration,
    /// Merge an app-day once it has more segments than this...
    pub max_segments: usize,
    /// ...this many at once.
    pub fan_in: usize,
    pub block: BlockOptions,
    /// A day over for this long is merged into one segment at `cold_level`.
    pub settle_after: Duration,
    pub cold_level: i32,
    pub retention: Retention,
    pub delete_grace: Duration,
    /// Where inputs are downloaded and merges written (emptied at start).
    pub work_dir: PathBuf,
}

impl std::fmt::Debug for CompactSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactSettings")
            .field("interval", &self.interval)
            .field("max_segments", &self.max_segments)
            .field("fan_in", &self.fan_in)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct CompactStats {
    pub holds_lease: bool,
    pub merges: u64,
    pub segments_merged: u64,
    pub segments_expired: u64,
    pub objects_deleted: u64,
    pub failures: u64,
}

pub struct Compactor {
    bus: Arc<Bus>,
    catalog: Arc<Catalog>,
    cfg: CompactSettings,
    node_id: String,
    next: AtomicU64,
    holds: std::sync::atomic::AtomicBool,
    merges: AtomicU64,
    segments_merged: AtomicU64,
    segments_expired: AtomicU64,
    objects_deleted: AtomicU64,
    failures: AtomicU64,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

impl Compactor {
    pub fn new(bus: Arc<Bus>, catalog: Arc<Catalog>, cfg: CompactSettings, node_id: String) -> std::io::Result<Self> {
        if cfg.work_dir.exists() {
            std::fs::remove_dir_all(&cfg.work_dir)?;
        }
        std::fs::create_dir_all(&cfg.work_dir)?;
        Ok(Compactor {
            bus,
            catalog,
            cfg,
            node_id,
            next: AtomicU64::new(0),
            holds: Default::default(),
            merges: AtomicU64::new(0),
            segments_merged: AtomicU64::new(0),
            segments_expired: AtomicU64::new(0),
            objects_deleted: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> CompactStats {
        CompactStats {
            holds_lease: self.holds.load(Relaxed),
            merges: self.merges.load(Relaxed),
            segments_merged: self.segments_merged.load(Relaxed),
            segments_expired: self.segments_expired.load(Relaxed),
            objects_deleted: self.objects_deleted.load(Relaxed),
            failures: self.failures.load(Relaxed),
        }
    }

    /// Works while it holds the lease, until `stop` turns true; then gives the lease up.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut rev: Option<u64> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if !self.bus.hold_lease(LEASE, &self.node_id, &mut rev).await {
                self.holds.store(false, Relaxed);
                continue;
            }
            if !self.holds.swap(true, Relaxed) {
                tracing::info!("this node took the maintenance lease");
            }
            if let Err(e) = self.round(&mut rev).await {
                self.failures.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "bucket maintenance failed; retried next round");
            }
        }
        self.bus.release_lease(LEASE, rev).await;
    }

    /// One round: retention, merges, deletions. Renews the lease between merges and stops
    /// as soon as it is lost.
    async fn round(&self, rev: &mut Option<u64>) -> Result<(), CatalogError> {
        // one read of the catalog plans the round: merges check their inputs again when they
        // swap, and garbage only becomes due minutes after it is listed
        let snap = self.expire().await?;
        for inputs in self.plan(&snap) {
            if !self.bus.hold_lease(LEASE, &self.node_id, rev).await {
                self.holds.store(false, Relaxed);
                return Ok(());
            }
            self.merge(inputs).await?;
        }
        self.delete_garbage(&snap).await
    }

    /// Drops the segments wholly past their app's retention from the catalog; returns the
    /// newest catalog.
    async fn expire(&self) -> Result<Snapshot, CatalogError> {
        let now = now_ns();
        let retention = self.cfg.retention.clone();
        let expired = move |e: &SegmentEntry| {
            AppName::parse(&e.app).ok().and_then(|a| retention(&a, now)).is_some_and(|cutoff| e.max_ts < cutoff)
        };
        let mut dropped = 0;
        let grace = self.cfg.delete_grace;
        let snap = self
            .catalog
            .update(|snap| {
                let (gone, kept): (Vec<SegmentEntry>, Vec<SegmentEntry>) =
                    std::mem::take(&mut snap.segments).into_iter().partition(|e| expired(e));
                snap.segments = kept;
                dropped = gone.len();
                snap.garbage.extend(gone.into_iter().map(|e| Garbage::after(e.key, grace)));
                dropped > 0
            })
            .await?;
        if dropped > 0 {
            tracing::info!(segments = dropped, "segments past their retention left the catalog");
            self.segments_expired.fetch_add(dropped as u64, Relaxed);
        }
        Ok(snap)
    }

    /// The merges due: per app-day, a run of similar sizes when it has too many (see
    /// `pick_merge`), or a settled day's smallest, until it is one.
    fn plan(&self, snap: &Snapshot) -> Vec<Vec<SegmentEntry>> {
        let mut parts: HashMap<(&str, &str), Vec<&SegmentEntry>> = HashMap::new();
        for e in &snap.segments {
            parts.entry((e.app.as_str(), e.day.as_str())).or_default().push(e);
        }
        let settled_before = now_ns() - self.cfg.settle_after.as_nanos() as i64;
        let mut out = Vec::new();
        for ((_, day), mut segs) in parts {
            let day_end = parse_day_name(day).map_or(i64::MAX, |d| (i64::from(d) + 1) * 86_400 * 1_000_000_000);
            let settled = day_end <= settled_before;
            let due = segs.len() > self.cfg.max_segments || (settled && segs.len() > 1);
            if !due {
                continue;
            }
            if !settled {
                // a day still written to: runs of similar sizes, never a small segment into a
                // big one (see `pick_merge`)
                let sizes: Vec<u64> = segs.iter().map(|e| e.bytes).collect();
                if let Some(pick) = pick_merge(&sizes, self.cfg.max_segments, self.cfg.fan_in, MAX_MERGE_BYTES) {
                    out.push(pick.into_iter().map(|i| segs[i].clone()).collect());
                }
                continue;
            }
            segs.sort_by_key(|e| e.bytes);
            let mut take = Vec::new();
            let mut bytes = 0;
            for e in segs {
                if take.len() >= self.cfg.fan_in.max(2) || (bytes + e.bytes > MAX_MERGE_BYTES && take.len() >= 2) {
                    break;
                }
                bytes += e.bytes;
                take.push(e.clone());
            }
            if take.len() >= 2 {
                out.push(take);
            }
        }
        out
    }

    /// Downloads `inputs`, merges them into one segment, uploads it, and swaps it for them in
    /// the catalog (unless one of them is gone meanwhile).
    async fn merge(&self, inputs: Vec<SegmentEntry>) -> Result<(), CatalogError> {
        let first = &inputs[0];
        let app = AppName::parse(&first.app).map_err(|e| CatalogError::Local(e.to_string()))?;
        let day = parse_day_name(&first.day).ok_or_else(|| CatalogError::Local(format!("bad day {:?}", first.day)))?;
        let n = self.next.fetch_add(1, Relaxed);
        let dir = self.cfg.work_dir.join(format!("m{n}"));
        tokio::fs::create_dir_all(&dir).await.map_err(|e| CatalogError::Local(e.to_string()))?;
        let result = self.merge_in(&dir, n, PartitionKey { app, day }, &inputs).await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result
    }

    async fn merge_in(
        &self,
        dir: &std::path::Path,
        n: u64,
        key: PartitionKey,
        inputs: &[SegmentEntry],
    ) -> Result<(), CatalogError> {
        let local = |e: std::io::Error| CatalogError::Local(e.to_string());
        let mut paths = Vec::with_capacity(inputs.len());
        for (i, e) in inputs.iter().enumerate() {
            let bytes = self.catalog.get_object(&e.key).await?;
            let path = dir.join(format!("{i:016x}.seg"));
            tokio::fs::write(&path, &bytes).await.map_err(local)?;
            paths.push(path);
        }
        let settled =
            now_ns() - self.cfg.settle_after.as_nanos() as i64 >= (i64::from(key.day) + 1) * 86_400_000_000_000;
        let opts = if settled {
            BlockOptions { level: self.cfg.cold_level, templates: true, ..self.cfg.block }
        } else {
            self.cfg.block
        };
        let out_dir = dir.join("out");
        let (merged, rows) = tokio::task::spawn_blocking({
            let key = key.clone();
            move || -> Result<(PathBuf, Segment), String> {
                let segs: Vec<Arc<Segment>> = paths
                    .iter()
                    .map(|p| Segment::open(p).map(Arc::new))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                let seg = logpipe_storage::merge_segments(&out_dir, n, &key, &segs, opts).map_err(|e| e.to_string())?;
                Ok((seg.path().to_path_buf(), seg))
            }
        })
        .await
        .map_err(|e| CatalogError::Local(e.to_string()))?
        .map_err(CatalogError::Local)?;
        let want: u64 = inputs.iter().map(|e| e.records).sum();
        if rows.meta.rows != want {
            return Err(CatalogError::Local(format!("merged {} rows from inputs listing {want}", rows.meta.rows)));
        }
        let entry = SegmentEntry {
            key: format!("segments/{}/{}/{}-m{n}.seg", key.app.as_str(), inputs[0].day, self.node_id),
            app: inputs[0].app.clone(),
            day: inputs[0].day.clone(),
            min_ts: rows.meta.min_ts,
            max_ts: rows.meta.max_ts,
            records: rows.meta.rows,
            bytes: rows.file_len,
        };
        let body = tokio::fs::read(&merged).await.map_err(local)?;
        self.catalog.put_object(&entry.key, body).await?;
        let keys: Vec<&str> = inputs.iter().map(|e| e.key.as_str()).collect();
        let grace = self.cfg.delete_grace;
        let mut swapped = false;
        self.catalog
            .update(|snap| {
                let present = keys.iter().filter(|k| snap.segments.iter().any(|e| e.key == **k)).count();
                swapped = present == keys.len();
                if !swapped {
                    return false;
                }
                snap.segments.retain(|e| !keys.contains(&e.key.as_str()));
                snap.segments.push(entry.clone());
                snap.garbage.extend(keys.iter().map(|k| Garbage::after(k.to_string(), grace)));
                true
            })
            .await?;
        if !swapped {
            tracing::info!("a merge's inputs changed meanwhile; dropped");
            let _ = self.catalog.delete_object(&entry.key).await;
            return Ok(());
        }
        self.merges.fetch_add(1, Relaxed);
        self.segments_merged.fetch_add(inputs.len() as u64, Relaxed);
        tracing::debug!(app = %entry.app, day = %entry.day, inputs = inputs.len(), rows = entry.records, "merged in the bucket");
        Ok(())
    }

    /// Deletes the objects whose grace is over, then forgets them.
    async fn delete_garbage(&self, snap: &Snapshot) -> Result<(), CatalogError> {
        let now = now_ns();
        let due: Vec<String> = snap.garbage.iter().filter(|g| g.delete_after <= now).map(|g| g.key.clone()).collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut deleted = Vec::new();
        for k in &due {
            match self.catalog.delete_object(k).await {
                Ok(()) | Err(CatalogError::Store(object_store::Error::NotFound { .. })) => deleted.push(k.clone()),
                Err(e) => tracing::warn!(key = %k, error = %e, "deleting an old segment object failed"),
            }
        }
        self.catalog
            .update(|snap| {
                let before = snap.garbage.len();
                snap.garbage.retain(|g| !deleted.contains(&g.key));
                snap.garbage.len() != before
            })
            .await?;
        self.objects_deleted.fetch_add(deleted.len() as u64, Relaxed);
        Ok(())
    }
}
