//! Background work: flushing frozen memtables, merging segments, applying retention.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::block::{Messages, Tags};
use rayon::prelude::*;

use crate::block::BlockOptions;
use crate::engine::{now_ns, FlushJob, Inner, Stall, State};
use crate::memtable::{Frozen, MemChunk};
use crate::partition::PartitionKey;
use crate::segment::{Segment, SegmentWriter};
use crate::{Result, SegmentId, StorageError};

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

/// The segments a merge may read: a segment with a quarantined block is left as it is, served
/// without that block, so its damaged bytes stay on disk for an operator to look at instead of
/// being merged away.
fn sound(segs: &[Arc<Segment>]) -> Vec<Arc<Segment>> {
    segs.iter().filter(|s| s.quarantined() == 0).cloned().collect()
}

/// The least a merge must grow its largest input by: merging a small segment into a large one
/// would rewrite the large one for little gain, and doing that after every flush rewrites a
/// growing partition again and again (quadratic in its size).
pub const MIN_MERGE_GROWTH: f64 = 1.5;

/// Which segments of a partition to merge, given their sizes: `None` while there are at most
/// `max_segments`. Otherwise, among the segments sorted by size, the run of 2 to `fan_in`
/// neighbours (at most `max_bytes` together) whose sum is the largest multiple of its biggest
/// member, if that multiple is at least `MIN_MERGE_GROWTH` (1.5); on a tie, the longer run.
///
/// Each merge thus at least multiplies the size of what it rewrites, so a record is rewritten
/// a logarithmic number of times however large its partition grows, while fresh flushes are
/// folded together as soon as there are too many. Segments that no run may merge differ in
/// size by more than 2x from one to the next, so their number is at most about
/// log2(largest / smallest) above `max_segments`.
pub fn pick_merge(sizes: &[u64], max_segments: usize, fan_in: usize, max_bytes: u64) -> Option<Vec<usize>> {
    if sizes.len() <= max_segments.max(1) {
        return None;
    }
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    let fan_in = fan_in.max(2);
    let mut best: Option<(f64, usize, usize)> = None; // (growth, start, len)
    for start in 0..order.len() {
        let mut sum = 0u64;
        for len in 1..=fan_in.min(order.len() - start) {
            let size = sizes[order[start + len - 1]];
            sum = sum.saturating_add(size);
            if sum > max_bytes {
                break;
            }
            if len < 2 {
                continue;
            }
            let growth = sum as f64 / size.max(1) as f64;
            let better = match best {
                None => true,
                Some((g, _, l)) => growth > g || (growth == g && len > l),
            };
            if growth >= MIN_MERGE_GROWTH && better {
                best = Some((growth, start, len));
            }
        }
    }
    best.map(|(_, start, len)| order[start..start + len].to_vec())
}

/// The `fan_in` (at least 2) smallest of `sizes`.
fn smallest(sizes: &[u64], fan_in: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    order.truncate(fan_in.max(2));
    order
}

/// Merges segments of the partition with the most segments over budget (see [`pick_merge`]).
/// Returns whether it merged anything.
pub(crate) fn merge_once(inner: &Inner) -> Result<bool> {
    let picked = {
        let mut busy = inner.busy.lock();
        let st = inner.state.read();
        let mut over: Vec<_> = st
            .partitions
            .iter()
            .filter(|(k, _)| !busy.contains(*k))
            .map(|(k, segs)| (k, sound(segs)))
            .filter(|(_, segs)| segs.len() > inner.cfg.max_segments_per_partition)
            .collect();
        over.sort_by_key(|(_, segs)| std::cmp::Reverse(segs.len()));
        let picked = over.into_iter().find_map(|(k, segs)| {
            let sizes: Vec<u64> = segs.iter().map(|s| s.file_len).collect();
            let (max, fan_in) = (inner.cfg.max_segments_per_partition, inner.cfg.merge_fan_in);
            // past the stall limit writes wait for this partition: merge its smallest even
            // when no run grows enough
            let pick = pick_merge(&sizes, max, fan_in, u64::MAX)
                .or_else(|| (segs.len() > inner.stall_limit()).then(|| smallest(&sizes, fan_in)))?;
            Some((k.clone(), pick.into_iter().map(|i| segs[i].clone()).collect::<Vec<_>>()))
        });
        picked.map(|(key, inputs)| {
            busy.insert(key.clone());
            (Claim { inner, key }, inputs)
        })
    };
    let Some((claim, inputs)) = picked else {
        return Ok(false);
    };
    merge_and_publish(inner, &claim.key, &inputs, inner.cfg.block)
}

/// Rewrites one settled partition (its day is over and no flush touched it for
/// `settle_after`) into a single segment at the cold zstd level: the smallest, fastest form
/// for data that will only be read from now on. Returns whether it did anything.
pub(crate) fn settle_once(inner: &Inner) -> Result<bool> {
    let now = now_ns();
    let picked = {
        let mut busy = inner.busy.lock();
        let st = inner.state.read();
        let picked = st
            .partitions
            .iter()
            .filter(|(k, _)| !busy.contains(*k))
            .map(|(k, segs)| (k, sound(segs)))
            .find(|(k, segs)| {
                let quiet_since = st.last_flush.get(*k).copied().unwrap_or(inner.opened);
                k.end() <= now
                    && quiet_since.elapsed() >= inner.cfg.settle_after
                    && (segs.len() > 1 || segs.iter().any(|s| s.meta.level < inner.cfg.cold_level))
            })
            .map(|(k, segs)| (k.clone(), segs));
        picked.map(|(key, inputs)| {
            busy.insert(key.clone());
            (Claim { inner, key }, inputs)
        })
    };
    let Some((claim, inputs)) = picked else {
        return Ok(false);
    };
    merge_and_publish(
        inner,
        &claim.key,
        &inputs,
        BlockOptions { level: inner.cfg.cold_level, templates: true, ..inner.cfg.block },
    )
}

/// Free space a merge leaves on the data directory's file system, beyond its own output: room
/// for the WAL (which must not meet a full disk because a merge took the last of it) while the
/// merge runs and until its inputs are deleted.
const MERGE_SPACE_RESERVE: u64 = 64 << 20;

/// Whether the data directory's file system has room for a merge writing `bytes` (as much as
/// its inputs hold) and the reserve. Unknown free space counts as room.
fn room_for_merge(inner: &Inner, bytes: u64) -> bool {
    let Ok(fs) = rustix::fs::statvfs(&inner.root) else { return true };
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    let room = free >= bytes.saturating_add(MERGE_SPACE_RESERVE);
    if room != inner.merge_room.swap(room, std::sync::atomic::Ordering::Relaxed) {
        if room {
            tracing::info!(free, "room on disk again: merges resume");
        } else {
            tracing::warn!(
                free,
                needed = bytes,
                reserve = MERGE_SPACE_RESERVE,
                "too little free space for a merge: merges wait"
            );
        }
    }
    room
}

fn merge_and_publish(inner: &Inner, key: &PartitionKey, inputs: &[Arc<Segment>], opts: BlockOptions) -> Result<bool> {
    if !room_for_merge(inner, inputs.iter().map(|s| s.file_len).sum()) {
        return Ok(false);
    }
    let started = std::time::Instant::now();
    let merged = merge_segments(&key.dir(&inner.root), inner.next_segment_id(), key, inputs, opts)?;
    let rows = merged.meta.rows;
    let merged = Arc::new(merged);
    let ids: HashSet<SegmentId> = inputs.iter().map(|s| s.id()).collect();
    let published = {
        let mut st = inner.state.write();
        match st.partitions.get_mut(key) {
            Some(segs) if ids.iter().all(|id| segs.iter().any(|s| s.id() == *id)) => {
                segs.retain(|s| !ids.contains(&s.id()));
                segs.push(merged.clone());
                inner.note_segments(&st);
                true
            }
            _ => false,
        }
    };
    let doomed: Vec<&Segment> = if published { inputs.iter().map(|s| &**s).collect() } else { vec![&*merged] };
    for s in doomed {
        // a query may still hold the segment: it reads on from the open file
        s.keep_open()?;
        std::fs::remove_file(s.path()).map_err(crate::io_err(s.path()))?;
    }
    crate::sync_dir(&key.dir(&inner.root))?;
    inner.metrics.merges.inc();
    // writes held on merge debt look again
    inner.flushed.notify_all();
    tracing::debug!(app = %key.app, day = key.day, inputs = inputs.len(), rows, ms = started.elapsed().as_millis() as u64, "merged");
    Ok(published)
}

/// Streams the inputs (segments of partition `key`), in row order, into a new segment `id` in
/// `dir`.
pub fn merge_segments(
    dir: &std::path::Path,
    id: SegmentId,
    key: &PartitionKey,
    inputs: &[Arc<Segment>],
    opts: BlockOptions,
) -> Result<Segment> {
    let mut replaces: Vec<SegmentId> =
        inputs.iter().flat_map(|s| std::iter::once(s.id()).chain(s.meta.replaces.iter().copied())).collect();
    replaces.sort_unstable();
    replaces.dedup();
    let watermark = inputs.iter().map(|s| s.meta.wal_watermark).max().unwrap_or(0);
    let mut w = SegmentWriter::create(dir, id, key.app.clone(), key.day, watermark, replaces, opts)?;
    let mut cursors = Vec::with_capacity(inputs.len());
    for s in inputs {
        let mut c = RowCursor { seg: s.clone(), block: 0, row: 0, cols: None };
        if let Err(e) = c.load() {
            w.abandon();
            return Err(e);
        }
        cursors.push(c);
    }
    // The live cursors in the order of their current rows (equal rows in input order). The
    // first is taken; moved on, it goes back in its place: one comparison while it stays
    // first, a binary search otherwise.
    let mut order: Vec<usize> = (0..cursors.len()).filter(|&i| cursors[i].cols.is_some()).collect();
    order.sort_by(|&a, &b| cursors[a].cmp_row(&cursors[b]).then(a.cmp(&b)));
    while let Some(&head) = order.first() {
        let pushed = {
            let c = &cursors[head];
            let (ts, msgs, tags) = c.cols.as_ref().expect("cursor not exhausted");
            match std::str::from_utf8(msgs.get(c.row)) {
                Ok(m) => w.push(ts[c.row], m, tags.row_iter(c.row)),
                Err(_) => Err(crate::StorageError::Corrupt {
                    path: c.seg.path().to_path_buf(),
                    offset: c.seg.meta.blocks[c.block].offset,
                    reason: "message is not utf-8",
                }),
            }
        };
        if let Err(e) = pushed {
            w.abandon();
            return Err(e);
        }
        if let Err(e) = cursors[head].advance() {
            w.abandon();
            return Err(e);
        }
        if cursors[head].cols.is_none() {
            order.remove(0);
            continue;
        }
        let before = |o: usize| cursors[o].cmp_row(&cursors[head]).then(o.cmp(&head)) == Ordering::Less;
        if order.len() > 1 && before(order[1]) {
            let at = 1 + order[1..].partition_point(|&o| before(o));
            order.copy_within(1..at, 0);
            order[at - 1] = head;
        }
    }
    w.finish()
}

struct RowCursor {
    seg: Arc<Segment>,
    block: usize,
    row: usize,
    cols: Option<(Vec<i64>, Messages, Tags)>,
}

impl RowCursor {
    /// Reads the current block; a damaged one is quarantined, which takes its segment out of
    /// later merges (see [`sound`]), and the merge is abandoned.
    fn load(&mut self) -> Result<()> {
        self.cols = None;
        if self.block < self.seg.meta.blocks.len() {
            let data = self.seg.read_block(self.block)?;
            match (data.timestamps(), data.messages(), data.tags()) {
                (Ok(ts), Ok(msgs), Ok(tags)) => self.cols = Some((ts, msgs, tags)),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    if matches!(e, crate::StorageError::Corrupt { .. }) {
                        self.seg.quarantine(self.block, &e);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Row order of the current rows of two live cursors; tags are only looked at on a tie.
    fn cmp_row(&self, other: &RowCursor) -> Ordering {
        let (a, b) = (self.cols.as_ref().expect("live cursor"), other.cols.as_ref().expect("live cursor"));
        a.0[self.row]
            .cmp(&b.0[other.row])
            .then_with(|| a.1.get(self.row).cmp(b.1.get(other.row)))
            .then_with(|| a.2.row_iter(self.row).cmp(b.2.row_iter(other.row)))
    }

    fn advance(&mut self) -> Result<()> {
        self.row += 1;
        if self.row >= self.seg.meta.blocks[self.block].rows as usize {
            self.block += 1;
            self.row = 0;
            self.load()?;
        }
        Ok(())
    }
}

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
            .filter(|k| inner.retention_for(&k.app).is_some_and(|keep| k.end() <= now - keep) && !in_memory(&st, k))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Flushes of equal size into one partition, merging as the maintenance thread would after
    /// each: (bytes written by merges / bytes flushed, most segments ever, segments at the end).
    fn simulate(flushes: usize, max_segments: usize, fan_in: usize) -> (f64, usize, usize) {
        let (mut segs, mut rewritten, mut most) = (Vec::<u64>::new(), 0u64, 0);
        for _ in 0..flushes {
            segs.push(100);
            while let Some(pick) = pick_merge(&segs, max_segments, fan_in, u64::MAX) {
                let merged: u64 = pick.iter().map(|&i| segs[i]).sum();
                rewritten += merged;
                let mut i = 0;
                segs.retain(|_| {
                    i += 1;
                    !pick.contains(&(i - 1))
                });
                segs.push(merged);
            }
            most = most.max(segs.len());
        }
        (rewritten as f64 / (flushes as f64 * 100.0), most, segs.len())
    }

    #[test]
    fn merges_rewrite_a_growing_partition_a_logarithmic_number_of_times() {
        for flushes in [100, 1_000, 10_000] {
            let (amplification, most, _) = simulate(flushes, 4, 8);
            // merging the smallest 8 whatever their sizes rewrote the big segment after every
            // few flushes: an amplification of about flushes / 4
            let log = (flushes as f64).log2();
            assert!(amplification <= log, "{flushes} flushes: each byte rewritten {amplification:.1} times");
            assert!(most <= 5 + log.ceil() as usize, "{flushes} flushes: {most} segments at once");
        }
    }

    #[test]
    fn picks_runs_of_similar_sizes() {
        assert_eq!(pick_merge(&[5, 1, 1], 4, 8, u64::MAX), None, "not over the budget");
        // the four small ones, not the big one
        let mut p = pick_merge(&[1000, 10, 10, 10, 10], 4, 8, u64::MAX).unwrap();
        p.sort_unstable();
        assert_eq!(p, vec![1, 2, 3, 4]);
        // the fan-in caps a run
        assert_eq!(pick_merge(&[10; 9], 4, 3, u64::MAX).unwrap().len(), 3);
        // sizes that triple: no run grows its biggest by half
        assert_eq!(pick_merge(&[1, 3, 9, 27, 81], 4, 8, u64::MAX), None);
        assert_eq!(pick_merge(&[1, 3, 7, 15, 31], 4, 8, u64::MAX).unwrap().len(), 5);
        // the byte cap
        assert_eq!(pick_merge(&[10; 5], 4, 8, 25).unwrap().len(), 2);
        assert_eq!(pick_merge(&[10; 5], 4, 8, 15), None);
    }

    #[test]
    fn a_partition_over_the_stall_limit_merges_its_smallest() {
        // sizes that triple: no run may merge, however many there are
        let sizes: Vec<u64> = (0..20).map(|i| 3u64.pow(i)).rev().collect();
        assert_eq!(pick_merge(&sizes, 4, 8, u64::MAX), None);
        let mut p = smallest(&sizes, 8);
        p.sort_unstable();
        assert_eq!(p, (12..20).collect::<Vec<_>>());
        assert_eq!(smallest(&sizes, 0).len(), 2, "a merge takes two at least");
    }
}
