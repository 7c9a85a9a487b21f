//! Start-up: the segments on disk (leftovers of interrupted writes and merges removed) and
//! the WAL replayed over them.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use logpipe_model::AppName;

use crate::metrics::EngineMetrics;
use crate::partition::{parse_day_name, PartitionKey};
use crate::segment::{self, Segment};
use crate::{io_err, Result, SegmentId, StorageError};

use super::*;

/// Replays the WAL into the memtable: the records of every frame that no segment of their
/// partition covers yet (by its WAL watermark) and that retention still keeps, and the
/// idempotency keys the frames carry.
pub(super) fn replay_wal(inner: &Inner, wal_dir: &Path, watermarks: &HashMap<PartitionKey, u64>) -> Result<()> {
    let now = now_ns();
    inner.idem.lock().load(&inner.cfg.data_dir, now);
    let mut replayed = 0u64;
    let mut bad_frames = 0u64;
    let stats = logpipe_wal::replay(wal_dir, |seq, payload| {
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
            .filter(|r| inner.retention_cutoff(&r.app, now).is_none_or(|cutoff| r.ts >= cutoff))
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
    Ok(())
}

/// Opens every segment under `root`, deleting leftovers of interrupted writes and merges.
pub(super) fn load_partitions(root: &Path, metrics: &EngineMetrics) -> Result<(Partitions, SegmentId)> {
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
