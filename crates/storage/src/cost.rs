//! What a query cost: how much of the store it looked at, skipped, read and scanned; and the
//! flag that stops it.
//!
//! Counters are atomics because blocks are evaluated in parallel; [`Cost::summary`] takes a
//! plain copy for the response. [`Cost::cancel`] makes the query fail with
//! [`StorageError::Cancelled`](crate::StorageError::Cancelled) before its next block or chunk.
//!
//! The cost also holds the query's memory budget: what a query keeps while it runs and that
//! grows with the data (records of a page, buckets, distinct values) is counted in
//! [`Cost::hold`] and given back in [`Cost::release`]; a query over its budget fails with
//! [`StorageError::OverBudget`](crate::StorageError::OverBudget). What is bounded by
//! construction (one decoded block per worker, a regex's capped automata) is not counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Cost {
    pub partitions: AtomicU64,
    pub partitions_pruned: AtomicU64,
    pub segments: AtomicU64,
    pub blocks: AtomicU64,
    pub blocks_pruned_time: AtomicU64,
    pub blocks_pruned_bloom: AtomicU64,
    pub blocks_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_decompressed: AtomicU64,
    pub rows_scanned: AtomicU64,
    pub memtable_records_scanned: AtomicU64,
    pub blocks_corrupt: AtomicU64,
    pub blocks_unavailable: AtomicU64,
    cancelled: AtomicBool,
    /// Bytes held now, the most held at once, and the budget (0: none).
    held: AtomicU64,
    peak: AtomicU64,
    memory_limit: u64,
}

/// A copy of [`Cost`] once the query is done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CostSummary {
    /// Application-day partitions looked at, and those skipped by application or time range.
    pub partitions: u64,
    pub partitions_pruned: u64,
    /// Segments of the partitions looked at.
    pub segments: u64,
    /// Blocks of those segments; skipped by time range; skipped by bloom filter (or by what
    /// the filter rules out from the metadata); read (at least one column).
    pub blocks: u64,
    pub blocks_pruned_time: u64,
    pub blocks_pruned_bloom: u64,
    pub blocks_read: u64,
    /// Compressed bytes read from segment files, and what they decompressed to.
    pub bytes_read: u64,
    pub bytes_decompressed: u64,
    /// Rows of read blocks that filters were evaluated on, and records of the memtable.
    pub rows_scanned: u64,
    pub memtable_records_scanned: u64,
    /// The most bytes of results in progress the query held at once (estimated).
    pub peak_memory: u64,
    /// Blocks that failed their checksum (now or before) and were left out: a non-zero value
    /// means the answer is missing their rows.
    pub blocks_corrupt: u64,
    /// Blocks kept in object storage that could not be fetched and were left out: a non-zero
    /// value means the answer is partial.
    pub blocks_unavailable: u64,
}

impl Cost {
    /// A cost whose query may hold at most `bytes` of results in progress (0: no limit).
    pub fn with_memory_limit(bytes: u64) -> Cost {
        Cost { memory_limit: bytes, ..Cost::default() }
    }

    /// Counts `bytes` more held by the query, failing once it is over its budget (`what`
    /// names what grew, for the error).
    pub(crate) fn hold(&self, bytes: u64, what: &'static str) -> crate::Result<()> {
        let now = self.held.fetch_add(bytes, Relaxed) + bytes;
        self.peak.fetch_max(now, Relaxed);
        if self.memory_limit > 0 && now > self.memory_limit {
            return Err(crate::StorageError::OverBudget { limit: self.memory_limit, what });
        }
        Ok(())
    }

    pub(crate) fn release(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Stops the query at its next block (a timeout, or a client that went away).
    pub fn cancel(&self) {
        self.cancelled.store(true, Relaxed);
    }

    pub(crate) fn check(&self) -> crate::Result<()> {
        if self.cancelled.load(Relaxed) {
            return Err(crate::StorageError::Cancelled);
        }
        Ok(())
    }

    pub fn summary(&self) -> CostSummary {
        let g = |c: &AtomicU64| c.load(Relaxed);
        CostSummary {
            partitions: g(&self.partitions),
            partitions_pruned: g(&self.partitions_pruned),
            segments: g(&self.segments),
            blocks: g(&self.blocks),
            blocks_pruned_time: g(&self.blocks_pruned_time),
            blocks_pruned_bloom: g(&self.blocks_pruned_bloom),
            blocks_read: g(&self.blocks_read),
            bytes_read: g(&self.bytes_read),
            bytes_decompressed: g(&self.bytes_decompressed),
            rows_scanned: g(&self.rows_scanned),
            memtable_records_scanned: g(&self.memtable_records_scanned),
            peak_memory: g(&self.peak),
            blocks_corrupt: g(&self.blocks_corrupt),
            blocks_unavailable: g(&self.blocks_unavailable),
        }
    }
}

impl CostSummary {
    /// `name=value` pairs, in a fixed order, for headers and logs.
    pub fn fields(&self) -> [(&'static str, u64); 14] {
        [
            ("partitions", self.partitions),
            ("partitions_pruned", self.partitions_pruned),
            ("segments", self.segments),
            ("blocks", self.blocks),
            ("blocks_pruned_time", self.blocks_pruned_time),
            ("blocks_pruned_bloom", self.blocks_pruned_bloom),
            ("blocks_read", self.blocks_read),
            ("bytes_read", self.bytes_read),
            ("bytes_decompressed", self.bytes_decompressed),
            ("rows_scanned", self.rows_scanned),
            ("memtable_records_scanned", self.memtable_records_scanned),
            ("peak_memory", self.peak_memory),
            ("blocks_corrupt", self.blocks_corrupt),
            ("blocks_unavailable", self.blocks_unavailable),
        ]
    }
}
