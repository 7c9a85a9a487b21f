//! Merging: which segments of a partition to fold together (runs of similar sizes), whether
//! the disk has room, and the k-way merge of their rows into one new segment.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use crate::block::{Messages, Tags};

use crate::block::BlockOptions;
use crate::engine::Inner;
use crate::partition::PartitionKey;
use crate::segment::{Segment, SegmentWriter};
use crate::{Result, SegmentId};

use super::*;

/// The segments a merge may read: a segment with a quarantined block is left as it is, served
/// without that block, so its damaged bytes stay on disk for an operator to look at instead of
/// being merged away.
pub(super) fn sound(segs: &[Arc<Segment>]) -> Vec<Arc<Segment>> {
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

pub(super) fn merge_and_publish(
    inner: &Inner,
    key: &PartitionKey,
    inputs: &[Arc<Segment>],
    opts: BlockOptions,
) -> Result<bool> {
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
