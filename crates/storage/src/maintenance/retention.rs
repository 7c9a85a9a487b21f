//! Retention and the disk budget: whole partitions dropped when their day is past their
//! app's retention, or, over `--max-disk-usage`, oldest first.

use crate::engine::{now_ns, Inner, State};
use crate::partition::PartitionKey;
use crate::Result;

use super::*;

/// Deletes every partition whose whole day is older than its app's retention.
/// Bytes of segment and WAL files.
fn disk_usage(inner: &Inner) -> u64 {
    let segments: u64 = inner.state.read().partitions.values().flatten().map(|s| s.file_len).sum();
    let wal: u64 = std::fs::read_dir(&inner.wal_dir)
        .map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    segments + wal
}

/// Over `--max-disk-usage`: drops whole partitions, oldest day first, never today's; if only
/// today's are left and it is still over, ingest is refused until it is not.
pub(crate) fn enforce_disk_budget(inner: &Inner) -> Result<()> {
    let Some(budget) = inner.cfg.max_disk_usage else { return Ok(()) };
    let mut used = disk_usage(inner);
    if used > budget {
        let today = logpipe_model::day_of(now_ns());
        let mut candidates: Vec<(PartitionKey, u64)> = {
            let st = inner.state.read();
            st.partitions
                .iter()
                .filter(|(k, _)| k.day < today && !in_memory(&st, k))
                .map(|(k, segs)| (k.clone(), segs.iter().map(|s| s.file_len).sum()))
                .collect()
        };
        candidates.sort_by(|a, b| (a.0.day, &a.0.app).cmp(&(b.0.day, &b.0.app)));
        for (key, bytes) in candidates {
            if used <= budget {
                break;
            }
            if !drop_partition(inner, &key)? {
                continue;
            }
            used = used.saturating_sub(bytes);
            tracing::warn!(app = %key.app, day = %crate::partition::day_name(key.day), bytes, budget,
                "disk budget: dropped the oldest partition");
        }
    }
    let over = (used > budget).then_some(used);
    let mut flag = inner.disk_over.lock();
    if over.is_some() != flag.is_some() {
        match over {
            Some(used) => tracing::error!(used, budget, "disk budget exhausted by today's data: refusing ingest"),
            None => tracing::info!(used, budget, "back under the disk budget: accepting ingest"),
        }
    }
    *flag = over;
    Ok(())
}

/// Whether `key` has records in a memtable. Such a partition is not dropped: their flush
/// would write into the directory being removed (and bring the partition back).
fn in_memory(st: &State, key: &PartitionKey) -> bool {
    std::iter::once(&st.active).chain(st.frozen.iter().map(|f| &f.table)).any(|t| t.parts.contains_key(key))
}

/// Deletes partition `key`; returns false, doing nothing, while a merge or settle rewrites it
/// (the next round drops it).
fn drop_partition(inner: &Inner, key: &PartitionKey) -> Result<bool> {
    let Some(_claim) = Claim::take(inner, key) else { return Ok(false) };
    let segs = inner.state.read().partitions.get(key).cloned().unwrap_or_default();
    for s in &segs {
        // a query may still hold the segment: it reads on from the open file
        s.keep_open()?;
    }
    {
        let mut st = inner.state.write();
        st.partitions.remove(key);
        inner.note_segments(&st);
    }
    let dir = key.dir(&inner.root);
    std::fs::remove_dir_all(&dir).map_err(crate::io_err(&dir))?;
    if let Some(app_dir) = dir.parent() {
        // only succeeds when no other day is left
        let _ = std::fs::remove_dir(app_dir);
    }
    inner.metrics.partitions_dropped.inc();
    Ok(true)
}

pub(crate) fn apply_retention(inner: &Inner) -> Result<()> {
    let now = now_ns();
    let doomed: Vec<PartitionKey> = {
        let st = inner.state.read();
        st.partitions
            .keys()
            .filter(|k| {
                inner.retention_cutoff(&k.app, now).is_some_and(|cutoff| k.end() <= cutoff) && !in_memory(&st, k)
            })
            .cloned()
            .collect()
    };
    for key in doomed {
        if !drop_partition(inner, &key)? {
            continue;
        }
        tracing::info!(app = %key.app, day = %crate::partition::day_name(key.day), "retention dropped partition");
    }
    Ok(())
}
