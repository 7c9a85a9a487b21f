//! Acknowledged records that are not yet in a segment.
//!
//! Each ingest batch becomes one immutable [`MemChunk`] per partition it touches, so a query
//! takes a snapshot by cloning `Arc`s under a short lock and scans without holding it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use logpipe_model::{AppName, Record};
use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::partition::PartitionKey;

/// Records of one batch (of one partition, in the memtable), unsorted, column by column: the
/// messages in one string, each distinct tag set once. Built on the thread that parsed the
/// batch, so the records' own allocations are freed where they were made, and a chunk is a
/// handful of allocations instead of several per record.
#[derive(Debug)]
pub struct MemChunk {
    ts: Vec<i64>,
    /// Every message, one after the other; `ends[i]` is where row `i`'s ends.
    text: String,
    ends: Vec<usize>,
    apps: Vec<AppName>,
    app_of: Vec<u32>,
    sets: Vec<Arc<[String]>>,
    set_of: Vec<u32>,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// One record of a [`MemChunk`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Row<'c> {
    pub app: &'c AppName,
    pub ts: i64,
    pub message: &'c str,
    /// Sorted and unique, as in [`Record`].
    pub tags: &'c [String],
}

impl Row<'_> {
    pub fn to_record(&self) -> Record {
        Record { app: self.app.clone(), ts: self.ts, message: self.message.to_owned(), tags: self.tags.to_vec() }
    }
}

impl MemChunk {
    /// A chunk of `records` (not empty).
    pub fn new(records: Vec<Record>) -> MemChunk {
        Self::build(records, None)
    }

    /// A chunk of `records` (not empty), its tag sets shared through `interner`.
    pub fn shared(records: Vec<Record>, interner: &TagSetInterner) -> MemChunk {
        Self::build(records, Some(interner))
    }

    fn build(records: Vec<Record>, interner: Option<&TagSetInterner>) -> MemChunk {
        let text_len = records.iter().map(|r| r.message.len()).sum();
        let mut c = MemChunk {
            ts: Vec::with_capacity(records.len()),
            text: String::with_capacity(text_len),
            ends: Vec::with_capacity(records.len()),
            apps: Vec::new(),
            app_of: Vec::with_capacity(records.len()),
            sets: Vec::new(),
            set_of: Vec::with_capacity(records.len()),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        };
        let mut set_ids: FxHashMap<Vec<String>, u32> = FxHashMap::default();
        let mut app_ids: FxHashMap<AppName, u32> = FxHashMap::default();
        for r in records {
            c.min_ts = c.min_ts.min(r.ts);
            c.max_ts = c.max_ts.max(r.ts);
            c.ts.push(r.ts);
            c.text.push_str(&r.message);
            c.ends.push(c.text.len());
            // mostly the previous row's app; a lookup otherwise (a batch may name any number)
            let app = match c.app_of.last() {
                Some(&last) if c.apps[last as usize] == r.app => last,
                _ => *app_ids.entry(r.app).or_insert_with_key(|app| {
                    c.apps.push(app.clone());
                    (c.apps.len() - 1) as u32
                }),
            };
            c.app_of.push(app);
            let next = set_ids.len() as u32;
            let set = *set_ids.entry(r.tags).or_insert(next);
            c.set_of.push(set);
        }
        let mut sets = vec![Vec::new(); set_ids.len()];
        for (tags, id) in set_ids {
            sets[id as usize] = tags;
        }
        c.sets = match interner {
            Some(interner) => interner.intern(sets),
            None => sets.into_iter().map(Arc::from).collect(),
        };
        if c.ts.is_empty() {
            (c.min_ts, c.max_ts) = (0, 0);
        }
        c
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub fn row(&self, i: usize) -> Row<'_> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Row {
            app: &self.apps[self.app_of[i] as usize],
            ts: self.ts[i],
            message: &self.text[start..self.ends[i]],
            tags: &self.sets[self.set_of[i] as usize],
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> + '_ {
        (0..self.len()).map(|i| self.row(i))
    }
}

/// Tag sets shared by the chunks of many batches. A chunk's sets are mostly ones an earlier
/// batch had: the chunk then holds the earlier `Arc` and its own copy is freed right away by the
/// ingest worker that parsed it, instead of thousands at a time by the flush that drops the
/// chunk, on another thread (mimalloc's cross-thread frees). Holds at most 65,536 sets
/// (`INTERNED_SETS`): past it, it starts over.
#[derive(Default)]
pub struct TagSetInterner {
    sets: Mutex<FxHashSet<Arc<[String]>>>,
}

/// Most distinct tag sets a [`TagSetInterner`] holds.
const INTERNED_SETS: usize = 1 << 16;

impl TagSetInterner {
    /// The shared form of each of `sets`, in order.
    pub fn intern(&self, sets: Vec<Vec<String>>) -> Vec<Arc<[String]>> {
        let mut dropped = None;
        let mut known = self.sets.lock();
        if known.len() + sets.len() > INTERNED_SETS {
            // dropped after the lock is released
            dropped = Some(std::mem::take(&mut *known));
        }
        let out = sets
            .into_iter()
            .map(|set| match known.get(set.as_slice()) {
                Some(shared) => shared.clone(),
                None => {
                    let shared: Arc<[String]> = set.into();
                    known.insert(shared.clone());
                    shared
                }
            })
            .collect();
        drop(known);
        drop(dropped);
        out
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
    /// Adds a batch's records, one chunk per partition (see [`chunks`]).
    pub fn insert(&mut self, records: Vec<Record>, bytes: usize, interner: &TagSetInterner) {
        self.insert_chunks(chunks(records, interner), bytes);
    }

    /// Adds a batch already cut into chunks by [`chunks`]; `bytes` is what its records hold.
    pub fn insert_chunks(&mut self, chunks: Vec<(PartitionKey, MemChunk)>, bytes: usize) {
        if chunks.is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        self.bytes += bytes;
        for (key, chunk) in chunks {
            self.records += chunk.len() as u64;
            self.parts.entry(key).or_default().push(Arc::new(chunk));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// A batch's records as memtable chunks, one per partition they fall in.
pub fn chunks(records: Vec<Record>, interner: &TagSetInterner) -> Vec<(PartitionKey, MemChunk)> {
    let mut groups: FxHashMap<PartitionKey, Vec<Record>> = FxHashMap::default();
    for r in records {
        groups.entry(PartitionKey::of(&r.app, r.ts)).or_default().push(r);
    }
    groups.into_iter().map(|(key, records)| (key, MemChunk::shared(records, interner))).collect()
}

/// A memtable being written to segments; still served to queries until they are published.
pub struct Frozen {
    /// Every record in it came from a WAL file `<= watermark`.
    pub watermark: u64,
    pub table: Memtable,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(app: &str, ts: i64, msg: &str, tags: &[&str]) -> Record {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        Record::new(AppName::parse(app).unwrap(), ts, msg.into(), tags, &Default::default()).unwrap()
    }

    #[test]
    fn a_chunk_gives_back_its_records_in_order_with_each_tag_set_once() {
        let records = vec![
            rec("a", 5, "first", &["host=1", "env=prod"]),
            rec("b", -3, "", &[]),
            rec("a", 9, "héllo wörld", &["env=prod", "host=1"]),
            rec("a", 7, "third", &["host=2"]),
            rec("b", 1, "last", &[]),
        ];
        let interner = TagSetInterner::default();
        let c = MemChunk::shared(records.clone(), &interner);
        assert_eq!(c.len(), 5);
        assert_eq!((c.min_ts, c.max_ts), (-3, 9));
        assert_eq!(c.rows().map(|r| r.to_record()).collect::<Vec<_>>(), records);
        assert_eq!(c.sets.len(), 3, "{:?}", c.sets);
        assert_eq!(c.apps.len(), 2);
        assert_eq!(c.row(2).message, "héllo wörld");
    }

    #[test]
    fn chunks_share_tag_sets_and_the_interner_stays_bounded() {
        let interner = TagSetInterner::default();
        let a = MemChunk::shared(vec![rec("a", 1, "x", &["env=prod", "host=1"])], &interner);
        let b = MemChunk::shared(vec![rec("a", 2, "y", &["host=1", "env=prod"]), rec("a", 3, "z", &[])], &interner);
        assert!(Arc::ptr_eq(&a.sets[0], &b.sets[b.set_of[0] as usize]), "the same set, shared");
        assert_eq!(b.row(0).tags, ["env=prod", "host=1"]);
        for i in 0..INTERNED_SETS + 10 {
            let c = MemChunk::shared(vec![rec("a", 4, "w", &[&format!("k={i}")])], &interner);
            assert_eq!(c.row(0).tags, [format!("k={i}")]);
            assert!(interner.sets.lock().len() <= INTERNED_SETS);
        }
        assert_eq!(a.row(0).tags, ["env=prod", "host=1"], "a chunk keeps its sets when the interner starts over");
    }

    #[test]
    fn a_chunk_of_many_apps_keeps_each_row_s_app() {
        let records: Vec<Record> = (0..6_000).map(|i| rec(&format!("app{}", i % 3_000), i, "m", &[])).collect();
        let c = MemChunk::new(records.clone());
        assert_eq!(c.apps.len(), 3_000);
        assert_eq!(c.rows().map(|r| r.to_record()).collect::<Vec<_>>(), records);
    }

    #[test]
    fn a_batch_is_cut_into_one_chunk_per_partition() {
        let day = logpipe_model::NANOS_PER_DAY;
        let records =
            vec![rec("a", 1, "x", &[]), rec("a", day + 1, "y", &[]), rec("b", 2, "z", &[]), rec("a", 3, "w", &[])];
        let mut parts = chunks(records, &TagSetInterner::default());
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        let got: Vec<(String, i32, Vec<&str>)> = parts
            .iter()
            .map(|(k, c)| (k.app.as_str().to_owned(), k.day, c.rows().map(|r| r.message).collect()))
            .collect();
        assert_eq!(got, vec![("a".into(), 0, vec!["x", "w"]), ("a".into(), 1, vec!["y"]), ("b".into(), 0, vec!["z"])]);
    }
}
