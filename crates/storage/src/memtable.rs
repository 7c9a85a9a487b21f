//! Acknowledged records that are not yet in a segment.
//!
//! Each ingest batch becomes one immutable [`MemChunk`] per partition it touches, so a query
//! takes a snapshot by cloning `Arc`s under a short lock and scans without holding it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use logpipe_model::Record;
use rustc_hash::FxHashMap;

use crate::partition::PartitionKey;

/// Records of one batch that fall in one partition (unsorted).
#[derive(Debug)]
pub struct MemChunk {
    pub records: Vec<Record>,
    pub min_ts: i64,
    pub max_ts: i64,
}

impl MemChunk {
    /// A chunk of `records` (not empty).
    pub fn new(records: Vec<Record>) -> MemChunk {
        let min_ts = records.iter().map(|r| r.ts).min().unwrap_or(0);
        let max_ts = records.iter().map(|r| r.ts).max().unwrap_or(0);
        MemChunk { records, min_ts, max_ts }
    }
}

#[derive(Default)]
pub struct Memtable {
    pub parts: HashMap<PartitionKey, Vec<Arc<MemChunk>>>,
    pub bytes: usize,
    pub records: u64,
    /// When the first record arrived; a flush is due some time after.
    pub since: Option<Instant>,
}

impl Memtable {
    pub fn insert(&mut self, records: Vec<Record>, bytes: usize) {
        if records.is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        self.bytes += bytes;
        self.records += records.len() as u64;
        let mut groups: FxHashMap<PartitionKey, Vec<Record>> = FxHashMap::default();
        for r in records {
            groups.entry(PartitionKey::of(&r.app, r.ts)).or_default().push(r);
        }
        for (key, records) in groups {
            self.parts.entry(key).or_default().push(Arc::new(MemChunk::new(records)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// A memtable being written to segments; still served to queries until they are published.
pub struct Frozen {
    /// Every record in it came from a WAL file `<= watermark`.
    pub watermark: u64,
    pub table: Memtable,
}
