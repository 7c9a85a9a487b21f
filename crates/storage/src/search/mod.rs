//! Query execution over a snapshot of segment blocks and memtable chunks.
//!
//! Blocks are pruned by time range and bloom filter from their metadata alone, then evaluated
//! in parallel on the caller's rayon pool: tag conditions once per distinct tag set, the first
//! substring as one `memmem` scan over the whole message column, the rest per row. `logs`
//! requests walk sources newest-first (or oldest-first) in waves and stop as soon as no
//! remaining source can beat the records already found.

use std::cmp::Ordering;
use std::sync::Arc;

use logpipe_model::{AppName, Record};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::block::Messages;
use crate::cost::Cost;
use crate::filter::{Filter, MessageFilter, Query};
use crate::memtable::{MemChunk, Row};
use crate::segment::Segment;
use crate::{Result, StorageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// Where the previous page stopped: the last timestamp returned and how many records with
/// exactly that timestamp were returned so far. Records with equal timestamps are in a fixed
/// order (message, app, tags), so skipping that many resumes exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub skip: u64,
}

/// Largest `skip` a cursor may carry: records sharing one nanosecond are few in practice,
/// and the cap bounds the work a forged cursor can ask for.
pub const MAX_CURSOR_SKIP: u64 = 1_000_000;

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.ts, self.skip)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (ts, skip) = s.split_once('.')?;
        let c = Cursor { ts: ts.parse().ok()?, skip: skip.parse().ok()? };
        (c.skip <= MAX_CURSOR_SKIP).then_some(c)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Logs {
        limit: usize,
        order: Order,
        cursor: Option<Cursor>,
    },
    Count,
    /// Buckets of `step` ns aligned to the epoch.
    Histogram {
        step: i64,
    },
    /// The `limit` most frequent values of tag key `key` among the matches.
    CountBy {
        key: String,
        limit: usize,
    },
    /// The distinct streams (app and whole tag set) among the matches, the `limit` with the
    /// most matches.
    Streams {
        limit: usize,
    },
    /// Buckets of `step` ns per value of tag key `key`, for the `limit` values with the most
    /// matches; the other values' buckets summed.
    HistogramBy {
        step: i64,
        key: String,
        limit: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Records in the requested order; `next` is set when the page is full.
    Logs {
        records: Vec<Record>,
        next: Option<Cursor>,
    },
    Count(u64),
    /// Non-empty buckets `(start, count)`, ascending.
    Histogram(Vec<(i64, u64)>),
    /// `(value, count)`, most frequent first (ties by value); `None` counts the matches
    /// without the key. `total` is the number of distinct values before the limit.
    Values {
        values: Vec<(Option<String>, u64)>,
        total: usize,
    },
    /// `(app, tags, count)`, most matches first (ties by app and tags); `total` is the number
    /// of distinct streams before the limit.
    Streams {
        streams: Vec<(AppName, Vec<String>, u64)>,
        total: usize,
    },
    /// Per value (as in `Values`, most matches first): its number of matches and non-empty
    /// buckets, ascending; `other` sums the buckets of the values past the limit; `total` is
    /// the number of distinct values.
    Series {
        series: Vec<Series>,
        other: Vec<(i64, u64)>,
        total: usize,
    },
}

/// One value of a tag key (`None`: without the key), its number of matches and its non-empty
/// buckets `(start, count)`, ascending.
pub type Series = (Option<String>, u64, Vec<(i64, u64)>);

/// Estimated bytes of one entry of a tally keyed by a bucket, and by a tag value (plus its
/// text): the key, the count, and the hash table's slot overhead.
const BUCKET_ENTRY_BYTES: u64 = 32;
const VALUE_ENTRY_BYTES: u64 = 64;

fn value_bytes(v: &Option<String>) -> u64 {
    VALUE_ENTRY_BYTES + v.as_ref().map_or(0, |s| s.len() as u64)
}

/// Counts keys over all sources in parallel: `each` reports `(key, n)` pairs for one source.
/// Every distinct key of every partial tally is held against the query's memory budget;
/// merging partial tallies gives back the duplicates.
fn tally<K, Each>(
    sources: &[Source],
    cost: &Cost,
    what: &'static str,
    size: fn(&K) -> u64,
    each: Each,
) -> Result<FxHashMap<K, u64>>
where
    K: Eq + std::hash::Hash + Send,
    Each: Fn(&Source, &mut dyn FnMut(K, u64)) -> Result<()> + Sync,
{
    use std::collections::hash_map::Entry;
    sources
        .par_iter()
        .try_fold(FxHashMap::default, |mut acc: FxHashMap<K, u64>, src| {
            let mut over = Ok(());
            each(src, &mut |k, n| match acc.entry(k) {
                Entry::Occupied(mut e) => *e.get_mut() += n,
                Entry::Vacant(e) => {
                    if over.is_ok() {
                        over = cost.hold(size(e.key()), what);
                    }
                    e.insert(n);
                }
            })?;
            over.map(|()| acc)
        })
        .try_reduce(FxHashMap::default, |mut a, b| {
            let (mut a, b) = if a.len() >= b.len() { (a, b) } else { (b, std::mem::take(&mut a)) };
            for (k, n) in b {
                match a.entry(k) {
                    Entry::Occupied(mut e) => {
                        cost.release(size(e.key()));
                        *e.get_mut() += n;
                    }
                    Entry::Vacant(e) => {
                        e.insert(n);
                    }
                }
            }
            Ok(a)
        })
}

/// Reports runs of equal buckets of sorted timestamps: one report per run, not per row.
fn bucket_runs(step: i64, ts: impl Iterator<Item = i64>, emit: &mut dyn FnMut(i64, u64)) {
    let mut run: Option<(i64, i64, u64)> = None; // (bucket start, bucket end, count)
    for t in ts {
        match &mut run {
            Some((_, end, n)) if t < *end => *n += 1,
            _ => {
                if let Some((b, _, n)) = run {
                    emit(b, n);
                }
                let b = t - t.rem_euclid(step);
                run = Some((b, b.saturating_add(step), 1));
            }
        }
    }
    if let Some((b, _, n)) = run {
        emit(b, n);
    }
}

/// Sorts values by count, most first (ties by value).
fn by_count<T: Ord>(v: &mut [(T, u64)]) {
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

/// The value of tag key `key` in one record's tags: `key=value`, or `""` for a bare `key`.
fn value_of<'t>(tags: impl IntoIterator<Item = &'t str>, key: &str) -> Option<&'t str> {
    tags.into_iter().find_map(|t| if t == key { Some("") } else { t.strip_prefix(key)?.strip_prefix('=') })
}

/// The value of tag key `key` in tag set `set` of a block.
/// How many of `rows` have each tag set.
fn rows_per_set(tags: &crate::block::Tags, rows: &[u32]) -> FxHashMap<u32, u64> {
    let mut per_set: FxHashMap<u32, u64> = FxHashMap::default();
    for &r in rows {
        *per_set.entry(tags.rows[r as usize]).or_default() += 1;
    }
    per_set
}

fn set_value(tags: &crate::block::Tags, set: u32, key: &str) -> Option<String> {
    let ids = tags.sets.set(set as usize);
    value_of(ids.iter().map(|&id| tags.sets.strings[id as usize].as_str()), key).map(str::to_owned)
}

/// The records of a memtable chunk that match, counted as scanned.
fn mem_matches<'c>(c: &'c MemChunk, f: &'c Filter, cost: &Cost) -> Result<impl Iterator<Item = Row<'c>>> {
    cost.check()?;
    Cost::add(&cost.memtable_records_scanned, c.len() as u64);
    Ok(c.rows().filter(move |r| f.row_matches(r)))
}

/// One unit of parallel work.
pub(crate) enum Source {
    Block { seg: Arc<Segment>, idx: usize },
    Mem(Arc<MemChunk>),
}

impl Source {
    fn min_ts(&self) -> i64 {
        match self {
            Source::Block { seg, idx } => seg.meta.blocks[*idx].min_ts,
            Source::Mem(c) => c.min_ts,
        }
    }

    fn max_ts(&self) -> i64 {
        match self {
            Source::Block { seg, idx } => seg.meta.blocks[*idx].max_ts,
            Source::Mem(c) => c.max_ts,
        }
    }
}

/// `q` narrowed to what is left after the cursor of a `logs` request.
pub(crate) fn after_cursor(q: &Query, req: &Request) -> Query {
    let mut q = q.clone();
    if let Request::Logs { cursor: Some(c), order, .. } = req {
        match order {
            Order::Desc => q.to = Some(q.to.map_or(c.ts.saturating_add(1), |t| t.min(c.ts.saturating_add(1)))),
            Order::Asc => q.from = Some(q.from.map_or(c.ts, |f| f.max(c.ts))),
        }
    }
    q
}

/// Adds the blocks of `seg` that may match `f` to `out`, counting what the time range and the
/// bloom filters pruned.
pub(crate) fn push_blocks(seg: &Arc<Segment>, f: &Filter, cost: &Cost, out: &mut Vec<Source>) {
    Cost::add(&cost.segments, 1);
    let n = seg.meta.blocks.len();
    let range = seg.blocks_in(f.from, f.to);
    Cost::add(&cost.blocks, n as u64);
    Cost::add(&cost.blocks_pruned_time, (n - range.len()) as u64);
    for idx in range {
        if seg.is_quarantined(idx) {
            Cost::add(&cost.blocks_corrupt, 1);
        } else if f.block_may_match(&seg.meta.blocks[idx]) {
            out.push(Source::Block { seg: seg.clone(), idx });
        } else {
            Cost::add(&cost.blocks_pruned_bloom, 1);
        }
    }
}

/// Runs a query over segments and memtable chunks that no engine holds: a cluster query
/// node's view (segments from the catalog, records store nodes have not uploaded yet).
/// Results are those of [`Engine::query_with_cost`](crate::Engine::query_with_cost) over the
/// same records.
pub fn query_view(
    segments: &[Arc<Segment>],
    chunks: &[Arc<MemChunk>],
    q: &Query,
    req: &Request,
    cost: &Cost,
    regex_size_limit: usize,
) -> Result<Answer> {
    let f = Filter::compile(&after_cursor(q, req), regex_size_limit)?;
    let mut sources = Vec::new();
    for seg in segments {
        Cost::add(&cost.partitions, 1);
        if !f.app_matches(&seg.meta.app) || !f.overlaps(seg.meta.min_ts, seg.meta.max_ts) {
            Cost::add(&cost.partitions_pruned, 1);
            continue;
        }
        push_blocks(seg, &f, cost, &mut sources);
    }
    for c in chunks {
        if f.overlaps(c.min_ts, c.max_ts) {
            sources.push(Source::Mem(c.clone()));
        }
    }
    run(sources, &f, req, cost)
}

/// Total order of results: (timestamp, message, app, tags).
fn cmp_records(a: &Record, b: &Record) -> Ordering {
    a.ts.cmp(&b.ts)
        .then_with(|| a.message.cmp(&b.message))
        .then_with(|| a.app.cmp(&b.app))
        .then_with(|| a.tags.cmp(&b.tags))
}

fn cmp_in(order: Order) -> impl Fn(&Record, &Record) -> Ordering + Copy {
    move |a, b| match order {
        Order::Asc => cmp_records(a, b),
        Order::Desc => cmp_records(b, a),
    }
}

/// Rows of one block that pass every filter, with the columns already decoded.
struct Matches {
    rows: Vec<u32>,
    /// Set instead of `rows` when the caller wants only a count and the count came from
    /// block metadata (tag sets with their row counts).
    counted: Option<u64>,
    ts: Option<Vec<i64>>,
    msgs: Option<Messages>,
    tags: Option<crate::block::Tags>,
}

/// Which columns the caller needs decoded for the matching rows.
#[derive(Clone, Copy)]
enum Want {
    /// Only which rows match (or how many).
    Rows,
    /// Timestamps too (histograms).
    Times,
    /// Tags too (counts by tag value).
    Tags,
    /// Timestamps and tags (histograms by tag value).
    TimesTags,
    /// Every column (records).
    All,
}

/// A block that fails its checksum (or does not decode) is quarantined and left out: the
/// query goes on with the rest, and its cost says how many blocks it missed.
fn eval_block(seg: &Segment, idx: usize, f: &Filter, want: Want, cost: &Cost) -> Result<Matches> {
    match eval_block_unchecked(seg, idx, f, want, cost) {
        Err(e @ StorageError::Corrupt { .. }) => {
            seg.quarantine(idx, &e);
            Cost::add(&cost.blocks_corrupt, 1);
            Ok(Matches { rows: Vec::new(), counted: None, ts: None, msgs: None, tags: None })
        }
        Err(StorageError::Unavailable { what, source }) => {
            tracing::warn!(%what, error = %source, "block left out of a query: it could not be fetched");
            Cost::add(&cost.blocks_unavailable, 1);
            Ok(Matches { rows: Vec::new(), counted: None, ts: None, msgs: None, tags: None })
        }
        other => other,
    }
}

fn eval_block_unchecked(seg: &Segment, idx: usize, f: &Filter, want: Want, cost: &Cost) -> Result<Matches> {
    let want_ts = matches!(want, Want::Times | Want::TimesTags | Want::All);
    let meta = &seg.meta.blocks[idx];
    let none = || Matches { rows: Vec::new(), counted: None, ts: None, msgs: None, tags: None };
    if !f.block_may_match(meta) {
        return Ok(none());
    }
    // columns are read in order of cost, each only while some row may still match
    cost.check()?;
    let mut data = seg.read_block(idx)?;
    data.cost = Some(cost);
    Cost::add(&cost.blocks_read, 1);
    let covered = f.covers(meta.min_ts, meta.max_ts);
    let ts = if want_ts || !covered { Some(data.timestamps()?) } else { None };
    let (lo, hi) = match &ts {
        Some(ts) if !covered => (ts.partition_point(|&t| t < f.from), ts.partition_point(|&t| t < f.to)),
        _ => (0, meta.rows as usize),
    };
    if lo >= hi {
        return Ok(none());
    }
    Cost::add(&cost.rows_scanned, (hi - lo) as u64);
    let mut tags = None;
    let mut rows: Vec<u32> = if f.has_tag_filter() {
        let sets = data.tag_sets()?;
        let ok = f.tag_sets_ok(&sets);
        if !ok.contains(&true) {
            return Ok(none());
        }
        if matches!(want, Want::Rows) && !f.has_message_filter() && !f.has_expr() && hi - lo == meta.rows as usize {
            let n = ok.iter().zip(&sets.counts).filter(|(&ok, _)| ok).map(|(_, &c)| u64::from(c)).sum();
            return Ok(Matches { counted: Some(n), ..none() });
        }
        let t = crate::block::Tags { rows: data.tag_rows(&sets)?, sets };
        let rows = (lo as u32..).zip(&t.rows[lo..hi]).filter(|&(_, &s)| ok[s as usize]).map(|(r, _)| r).collect();
        tags = Some(t);
        rows
    } else {
        (lo as u32..hi as u32).collect()
    };
    let mut msgs = None;
    if f.has_message_filter() && !rows.is_empty() {
        let m = data.messages()?;
        let filters = f.message_filters();
        let (first, rest) = filters.split_first().expect("a message filter");
        if first.column_safe() && rows.len() == hi - lo {
            rows = scan_column(&m, first, lo, hi, cost)?;
        } else {
            retain_checked(&mut rows, cost, |r| first.is_match(m.get(r as usize)))?;
        }
        if !rest.is_empty() {
            retain_checked(&mut rows, cost, |r| rest.iter().all(|c| c.is_match(m.get(r as usize))))?;
        }
        msgs = Some(m);
    }
    if f.has_expr() && !rows.is_empty() {
        let (need_msgs, need_tags) = f.expr_needs();
        if need_msgs && msgs.is_none() {
            msgs = Some(data.messages()?);
        }
        if need_tags && tags.is_none() {
            tags = Some(data.tags()?);
        }
        let app = &seg.meta.app;
        retain_checked(&mut rows, cost, |r| {
            let msg = msgs.as_ref().map_or(&[][..], |m| m.get(r as usize));
            match &tags {
                Some(t) => f.expr_ok(app, msg, &t.row_refs(r as usize)),
                None => f.expr_ok::<&str>(app, msg, &[]),
            }
        })?;
    }
    if rows.is_empty() {
        return Ok(none());
    }
    if matches!(want, Want::Tags | Want::TimesTags | Want::All) && tags.is_none() {
        tags = Some(data.tags()?);
    }
    if matches!(want, Want::All) && msgs.is_none() {
        msgs = Some(data.messages_of(&rows)?);
    }
    Ok(Matches { rows, counted: None, ts, msgs, tags })
}

/// Rows scanned between two checks for cancellation: a slow regex runs at a few MB/s, so
/// this bounds how long a cancelled query goes on to a few milliseconds.
const CHECK_EVERY_ROWS: usize = 32;

/// Keeps the rows for which `keep` holds, checking for cancellation as it goes.
fn retain_checked(rows: &mut Vec<u32>, cost: &Cost, mut keep: impl FnMut(u32) -> bool) -> Result<()> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHECK_EVERY_ROWS) {
        cost.check()?;
        out.extend(chunk.iter().copied().filter(|&r| keep(r)));
    }
    *rows = out;
    Ok(())
}

/// Rows in `lo..hi` whose message matches `cond`: one search over the column's messages laid
/// end to end, jumping to the next row after each hit. A hit that runs into the next message
/// proves nothing, so that row alone is checked again. The search goes a few dozen rows at a
/// time (ending at a row's end, so no match inside a row is cut), checking for cancellation.
fn scan_column(m: &Messages, cond: &MessageFilter, lo: usize, hi: usize, cost: &Cost) -> Result<Vec<u32>> {
    let data = m.data();
    let mut find = cond.finder(data);
    let mut out = Vec::new();
    let mut pos = m.row_start(lo);
    let mut chunk_lo = lo;
    while chunk_lo < hi {
        cost.check()?;
        let chunk_hi = (chunk_lo + CHECK_EVERY_ROWS).min(hi);
        let end = m.row_end(chunk_hi - 1);
        while pos < end {
            let Some((s, e)) = find(pos, end) else {
                break;
            };
            let row = m.row_of(s);
            if e <= m.row_end(row) || cond.is_match(m.get(row)) {
                out.push(row as u32);
            }
            pos = m.row_end(row);
        }
        pos = pos.max(end);
        chunk_lo = chunk_hi;
    }
    Ok(out)
}

fn block_records(seg: &Segment, m: &Matches, rows: impl Iterator<Item = u32>) -> Result<Vec<Record>> {
    // every column is decoded whenever a row matched; nothing decoded means nothing matched
    let (Some(ts), Some(msgs), Some(tags)) = (&m.ts, &m.msgs, &m.tags) else { return Ok(Vec::new()) };
    rows.map(|r| {
        let r = r as usize;
        let message = std::str::from_utf8(msgs.get(r))
            .map_err(|_| StorageError::Corrupt {
                path: seg.path().to_path_buf(),
                offset: 0,
                reason: "message is not utf-8",
            })?
            .to_owned();
        Ok(Record { app: seg.meta.app.clone(), ts: ts[r], message, tags: tags.row(r) })
    })
    .collect()
}

/// The best `k` matches of one source, best first.
/// What it returns is held against the query's memory budget.
fn top_of(src: &Source, f: &Filter, order: Order, k: usize, cost: &Cost) -> Result<Vec<Record>> {
    let found = match src {
        Source::Block { seg, idx } => {
            let m = eval_block(seg, *idx, f, Want::All, cost)?;
            if m.rows.is_empty() {
                return Ok(Vec::new());
            }
            // rows are stored in (ts, message, tags) order, the result order within one app
            let records = match order {
                Order::Asc => block_records(seg, &m, m.rows.iter().copied().take(k)),
                Order::Desc => block_records(seg, &m, m.rows.iter().rev().copied().take(k)),
            };
            match records {
                Err(e @ StorageError::Corrupt { .. }) => {
                    seg.quarantine(*idx, &e);
                    Cost::add(&cost.blocks_corrupt, 1);
                    Ok(Vec::new())
                }
                other => other,
            }
        }
        Source::Mem(chunk) => {
            let mut hits: Vec<Record> = mem_matches(chunk, f, cost)?.map(|r| r.to_record()).collect();
            hits.sort_unstable_by(cmp_in(order));
            hits.truncate(k);
            Ok(hits)
        }
    }?;
    cost.hold(records_bytes(&found), "records")?;
    Ok(found)
}

fn records_bytes(records: &[Record]) -> u64 {
    records.iter().map(|r| r.mem_size() as u64).sum()
}

mod requests;
pub(crate) use requests::run;
