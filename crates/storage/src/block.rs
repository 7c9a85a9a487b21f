//! A block: up to [`BLOCK_MAX_ROWS`] records of one partition, sorted by (timestamp, message,
//! tags), stored as three separately compressed columns so a query decompresses only the
//! columns its filters and output need.
//!
//! ```text
//! block    := ts_col | msg_col | sets_col | rows_col  each a zstd frame; lengths and crc32c in BlockMeta
//! ts_col   := first zigzag | planes(delta * (rows-1))  rows are sorted, so deltas are >= 0
//! msg_col  := planes(len * rows) | message bytes concatenated
//!             or, in settled segments, templates and variables (see crate::template)
//! sets_col := nstrings varint | (len varint, bytes) * nstrings     distinct tags of the block
//!             nsets varint | planes(set length * nsets) | planes(string id * total)
//!                                                      distinct tag sets, ids laid end to end
//!             planes(rows having the set * nsets)
//! rows_col := planes(set id * rows)                    each row's tag set
//! planes(v * n) := width u8 | width planes of n bytes   see varint::put_planes
//! ```
//!
//! Tag sets repeat heavily in logs (level × host × env), so a tag filter is evaluated once per
//! distinct set, not once per row, and a count over tags alone reads only the sets column
//! (each set knows how many rows have it). Each column carries its own checksum, so a query that needs
//! only timestamps or tags reads and verifies only those bytes, never the messages.

use std::fs::File;
use std::os::unix::fs::FileExt;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::bloom::{self, Bloom};
use crate::template::{self, TemplateEncoder};
use crate::varint::{self, Malformed, Reader};
use crate::{Corruption, Result, StorageError};

/// Rows per block. Large enough to amortise per-block costs, small enough that a
/// selective query decompresses little beyond its matches.
pub const BLOCK_MAX_ROWS: usize = 8192;
/// Raw message bytes per block before it is cut early (keeps big-message blocks bounded).
pub const BLOCK_MAX_MSG_BYTES: usize = 4 << 20;
/// How blocks are cut and compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOptions {
    /// zstd level of every column.
    pub level: i32,
    /// Whether the message column is split into templates and variables (see
    /// [`crate::template`]): smaller, slower to write; for settled segments.
    pub templates: bool,
    /// Rows per block (at most).
    pub max_rows: usize,
}

pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

impl Default for BlockOptions {
    fn default() -> Self {
        BlockOptions { level: DEFAULT_COMPRESSION_LEVEL, templates: false, max_rows: BLOCK_MAX_ROWS }
    }
}

/// Largest raw column a reader accepts; guards allocations against corrupted lengths.
const MAX_RAW_COLUMN: u64 = 1 << 30;

pub const COL_TS: usize = 0;
pub const COL_MSG: usize = 1;
pub const COL_TAG_SETS: usize = 2;
pub const COL_TAG_ROWS: usize = 3;
pub const COLUMNS: usize = 4;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnMeta {
    /// Compressed bytes on disk.
    pub len: u32,
    /// Bytes after decompression.
    pub raw_len: u32,
    /// crc32c of the compressed bytes.
    pub crc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    pub min_ts: i64,
    pub max_ts: i64,
    pub rows: u32,
    /// Offset of the block's first byte in the segment file.
    pub offset: u64,
    pub cols: [ColumnMeta; COLUMNS],
    pub bloom: Bloom,
}

impl BlockMeta {
    /// Bytes the block spans on disk.
    pub fn disk_len(&self) -> u64 {
        self.cols.iter().map(|c| u64::from(c.len)).sum()
    }

    pub fn col_range(&self, col: usize) -> std::ops::Range<usize> {
        let start: usize = self.cols[..col].iter().map(|c| c.len as usize).sum();
        start..start + self.cols[col].len as usize
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        varint::put_i64(out, self.min_ts);
        varint::put_i64(out, self.max_ts);
        varint::put_u64(out, u64::from(self.rows));
        varint::put_u64(out, self.offset);
        for c in &self.cols {
            varint::put_u64(out, u64::from(c.len));
            varint::put_u64(out, u64::from(c.raw_len));
            out.extend_from_slice(&c.crc.to_le_bytes());
        }
        varint::put_u64(out, self.bloom.words().len() as u64);
        for w in self.bloom.words() {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> std::result::Result<BlockMeta, Malformed> {
        let min_ts = r.i64()?;
        let max_ts = r.i64()?;
        let rows = u32::try_from(r.u64()?).map_err(|_| Malformed)?;
        let offset = r.u64()?;
        let mut cols = [ColumnMeta::default(); COLUMNS];
        for c in &mut cols {
            let len = r.u64()?;
            let raw_len = r.u64()?;
            if raw_len > MAX_RAW_COLUMN || len > MAX_RAW_COLUMN {
                return Err(Malformed);
            }
            let crc = r.u32_fixed()?;
            *c = ColumnMeta { len: len as u32, raw_len: raw_len as u32, crc };
        }
        let nwords = r.len(8)?;
        let mut words = Vec::with_capacity(nwords);
        for _ in 0..nwords {
            words.push(r.u64_fixed()?);
        }
        if min_ts > max_ts || rows == 0 || rows as usize > BLOCK_MAX_ROWS {
            return Err(Malformed);
        }
        Ok(BlockMeta { min_ts, max_ts, rows, offset, cols, bloom: Bloom::from_words(words) })
    }
}

const RECENT_SLOTS: usize = 4096;

/// Byte equality of two short slices (tokens), without a call into `memcmp`.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// A token seen in the block: its hash, and where its bytes are in the block's messages.
#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    hash: u64,
    start: u32,
    end: u32,
}

/// Accumulates sorted rows and encodes them as one block.
pub struct BlockBuilder {
    opts: BlockOptions,
    ts: Vec<i64>,
    msg_lens: Vec<u32>,
    msgs: Vec<u8>,
    tag_ids: FxHashMap<String, u32>,
    tag_strings: Vec<String>,
    set_ids: FxHashMap<Vec<u32>, u32>,
    sets: Vec<Vec<u32>>,
    row_sets: Vec<u32>,
    /// Bloom keys of the block (already hashes, so the cheap Fx hash is enough).
    keys: FxHashSet<u64>,
    /// The token last seen in each slot (indexed by its hash's low bits): messages repeat
    /// their template words, so most tokens are found here, their keys and 4-grams known.
    recent: Vec<Recent>,
    /// Letter 4-grams seen in the block: a bitmap over every possible code, and the codes set.
    gram_bits: Vec<u64>,
    grams: Vec<u32>,
    set_scratch: Vec<u32>,
    /// Reused across blocks: a zstd context and the raw column buffer.
    zstd: Option<zstd::bulk::Compressor<'static>>,
    raw: Vec<u8>,
    ints: Vec<u64>,
    zbuf: Vec<u8>,
    templates: TemplateEncoder,
}

impl BlockBuilder {
    pub fn new(opts: BlockOptions) -> Self {
        BlockBuilder {
            opts,
            ts: Vec::new(),
            msg_lens: Vec::new(),
            msgs: Vec::new(),
            tag_ids: FxHashMap::default(),
            tag_strings: Vec::new(),
            set_ids: FxHashMap::default(),
            sets: Vec::new(),
            row_sets: Vec::new(),
            keys: FxHashSet::default(),
            recent: vec![Recent::default(); RECENT_SLOTS],
            gram_bits: vec![0; bloom::GRAMS.div_ceil(64)],
            grams: Vec::new(),
            set_scratch: Vec::new(),
            zstd: None,
            raw: Vec::new(),
            ints: Vec::new(),
            zbuf: Vec::new(),
            templates: TemplateEncoder::default(),
        }
    }

    pub fn rows(&self) -> usize {
        self.ts.len()
    }

    pub fn is_full(&self) -> bool {
        self.ts.len() >= self.opts.max_rows.clamp(1, BLOCK_MAX_ROWS) || self.msgs.len() >= BLOCK_MAX_MSG_BYTES
    }

    /// Adds a row; rows must arrive in (timestamp, message, tags) order.
    pub fn push<I>(&mut self, ts: i64, message: &str, tags: I)
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        debug_assert!(self.ts.last().is_none_or(|&last| last <= ts));
        self.ts.push(ts);
        self.msg_lens.push(message.len() as u32);
        let base = self.msgs.len();
        self.msgs.extend_from_slice(message.as_bytes());
        let (msgs, keys, recent) = (&self.msgs, &mut self.keys, &mut self.recent);
        let (bits, grams) = (&mut self.gram_bits, &mut self.grams);
        bloom::for_each_token(message.as_bytes(), |at, h| {
            // a token whose very bytes were seen in this block has its key and its 4-grams in
            // already: messages repeat their template words, so most tokens end here
            let (start, end) = (base + at.start, base + at.end);
            let slot = &mut recent[h as usize % RECENT_SLOTS];
            if slot.hash == h && same(&msgs[slot.start as usize..slot.end as usize], &msgs[start..end]) {
                return;
            }
            *slot = Recent { hash: h, start: start as u32, end: end as u32 };
            keys.insert(h);
            bloom::for_each_gram(&msgs[start..end], |code| {
                let (w, b) = (code as usize / 64, 1u64 << (code % 64));
                if bits[w] & b == 0 {
                    bits[w] |= b;
                    grams.push(code);
                }
            });
        });
        self.set_scratch.clear();
        for t in tags {
            let t = t.as_ref();
            let id = match self.tag_ids.get(t) {
                Some(&id) => id,
                None => {
                    let id = self.tag_strings.len() as u32;
                    self.tag_strings.push(t.to_owned());
                    self.tag_ids.insert(t.to_owned(), id);
                    self.keys.insert(bloom::tag_hash(t));
                    id
                }
            };
            self.set_scratch.push(id);
        }
        let set = match self.set_ids.get(&self.set_scratch) {
            Some(&s) => s,
            None => {
                let s = self.sets.len() as u32;
                self.sets.push(self.set_scratch.clone());
                self.set_ids.insert(self.set_scratch.clone(), s);
                s
            }
        };
        self.row_sets.push(set);
    }

    /// Encodes the block (appending its bytes to `out`) and resets the builder.
    pub fn finish(&mut self, offset: u64, out: &mut Vec<u8>) -> Result<BlockMeta> {
        assert!(!self.ts.is_empty(), "empty block");
        let mut raw = std::mem::take(&mut self.raw);
        let mut ints = std::mem::take(&mut self.ints);
        // appends `values` to `raw` as a byte-plane array, through the reused `ints`
        let planes = |raw: &mut Vec<u8>, ints: &mut Vec<u64>, values: &mut dyn Iterator<Item = u64>| {
            ints.clear();
            ints.extend(values);
            varint::put_planes(raw, ints);
        };
        raw.clear();
        varint::put_i64(&mut raw, self.ts[0]);
        planes(&mut raw, &mut ints, &mut self.ts.windows(2).map(|w| (w[1] - w[0]) as u64));
        let c_ts = self.compress(&raw, out)?;

        raw.clear();
        if !(self.opts.templates && self.templates.encode(&self.msgs, &self.msg_lens, &mut raw)) {
            planes(&mut raw, &mut ints, &mut self.msg_lens.iter().map(|&l| u64::from(l)));
            raw.extend_from_slice(&self.msgs);
        }
        let c_msg = self.compress(&raw, out)?;

        raw.clear();
        varint::put_u64(&mut raw, self.tag_strings.len() as u64);
        for t in &self.tag_strings {
            varint::put_bytes(&mut raw, t.as_bytes());
        }
        varint::put_u64(&mut raw, self.sets.len() as u64);
        planes(&mut raw, &mut ints, &mut self.sets.iter().map(|s| s.len() as u64));
        planes(&mut raw, &mut ints, &mut self.sets.iter().flatten().map(|&id| u64::from(id)));
        let mut counts = vec![0u64; self.sets.len()];
        for &s in &self.row_sets {
            counts[s as usize] += 1;
        }
        varint::put_planes(&mut raw, &counts);
        let c_sets = self.compress(&raw, out)?;

        raw.clear();
        planes(&mut raw, &mut ints, &mut self.row_sets.iter().map(|&s| u64::from(s)));
        let c_rows = self.compress(&raw, out)?;
        self.ints = ints;
        self.raw = raw;

        let mut keys: Vec<u64> = self.keys.iter().copied().collect();
        for &code in &self.grams {
            keys.push(bloom::gram_hash(code));
            self.gram_bits[code as usize / 64] = 0;
        }
        self.grams.clear();
        let meta = BlockMeta {
            min_ts: self.ts[0],
            max_ts: *self.ts.last().expect("non-empty"),
            rows: self.ts.len() as u32,
            offset,
            cols: [c_ts, c_msg, c_sets, c_rows],
            bloom: Bloom::build(&keys),
        };
        self.ts.clear();
        self.msg_lens.clear();
        self.msgs.clear();
        self.tag_ids.clear();
        self.tag_strings.clear();
        self.set_ids.clear();
        self.sets.clear();
        self.row_sets.clear();
        self.keys.clear();
        self.recent.fill(Recent::default());
        Ok(meta)
    }

    /// Compresses `raw` straight onto the end of `out`.
    fn compress(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<ColumnMeta> {
        let zstd = match &mut self.zstd {
            Some(z) => z,
            None => self.zstd.insert(zstd::bulk::Compressor::new(self.opts.level).map_err(StorageError::Compress)?),
        };
        // compress_to_buffer fills a buffer from its start, so it gets a reused one of its own
        self.zbuf.clear();
        self.zbuf.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        zstd.compress_to_buffer(raw, &mut self.zbuf).map_err(StorageError::Compress)?;
        out.extend_from_slice(&self.zbuf);
        Ok(ColumnMeta { len: self.zbuf.len() as u32, raw_len: raw.len() as u32, crc: crc32c::crc32c(&self.zbuf) })
    }
}

/// The message column of a decoded block.
pub struct Messages {
    raw: Vec<u8>,
    base: usize,
    /// End offset (relative to `base`) of each row's message.
    ends: Vec<u32>,
}

impl Messages {
    pub fn get(&self, row: usize) -> &[u8] {
        let start = if row == 0 { 0 } else { self.ends[row - 1] as usize };
        &self.raw[self.base + start..self.base + self.ends[row] as usize]
    }

    /// All messages back to back; row `i` spans `row_start(i)..row_end(i)`.
    pub fn data(&self) -> &[u8] {
        &self.raw[self.base..]
    }

    pub fn row_start(&self, row: usize) -> usize {
        if row == 0 {
            0
        } else {
            self.ends[row - 1] as usize
        }
    }

    pub fn row_end(&self, row: usize) -> usize {
        self.ends[row] as usize
    }

    /// The row holding byte `pos` of [`Messages::data`].
    pub fn row_of(&self, pos: usize) -> usize {
        self.ends.partition_point(|&e| (e as usize) <= pos)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// The tag sets column of a decoded block.
pub struct TagSets {
    /// Distinct tags of the block.
    pub strings: Vec<String>,
    /// Distinct tag sets, as string ids, laid end to end; set `i` ends at `set_ends[i]`.
    set_ids: Vec<u32>,
    set_ends: Vec<u32>,
    /// How many rows have each set.
    pub counts: Vec<u32>,
}

impl TagSets {
    pub fn sets(&self) -> usize {
        self.set_ends.len()
    }

    /// The string ids of set `i`.
    pub fn set(&self, i: usize) -> &[u32] {
        let start = if i == 0 { 0 } else { self.set_ends[i - 1] as usize };
        &self.set_ids[start..self.set_ends[i] as usize]
    }

    /// The id of `tag` in this block, if any row has it.
    pub fn id_of(&self, tag: &str) -> Option<u32> {
        self.strings.iter().position(|s| s == tag).map(|i| i as u32)
    }
}

/// Both tag columns of a decoded block.
pub struct Tags {
    pub sets: TagSets,
    /// Each row's tag set.
    pub rows: Vec<u32>,
}

impl Tags {
    /// The tags of `row`, borrowed.
    pub fn row_refs(&self, row: usize) -> Vec<&str> {
        self.row_iter(row).collect()
    }

    /// The tags of `row`, borrowed one by one (nothing allocated).
    pub fn row_iter(&self, row: usize) -> impl Iterator<Item = &str> + '_ {
        self.sets.set(self.rows[row] as usize).iter().map(|&id| self.sets.strings[id as usize].as_str())
    }

    pub fn row(&self, row: usize) -> Vec<String> {
        self.sets.set(self.rows[row] as usize).iter().map(|&id| self.sets.strings[id as usize].clone()).collect()
    }
}

/// Decodes a raw timestamps column of `rows` rows (`rows` >= 1; deltas never negative).
pub fn decode_timestamps(raw: &[u8], rows: usize) -> std::result::Result<Vec<i64>, Malformed> {
    let mut r = Reader::new(raw);
    let n = rows.checked_sub(1).ok_or(Malformed)?;
    let mut out = Vec::with_capacity(rows);
    let mut t = r.i64()?;
    out.push(t);
    let mut overflow = false;
    r.planes(n, |d| {
        let (next, o) = t.overflowing_add(d as i64);
        overflow |= o || (d as i64) < 0;
        t = next;
        out.push(t);
    })?;
    if overflow || !r.is_empty() {
        return Err(Malformed);
    }
    Ok(out)
}

/// Decodes a raw messages column of `rows` rows: the lengths must add up to the bytes after
/// them. A column in the template encoding (see [`crate::template`]) is rebuilt first.
pub fn decode_messages(raw: Vec<u8>, rows: usize) -> std::result::Result<Messages, Malformed> {
    if raw.first() == Some(&template::MARKER) {
        let (raw, ends) = template::decode(&raw, rows)?;
        return Ok(Messages { raw, base: 0, ends });
    }
    let mut r = Reader::new(&raw);
    let mut ends = Vec::with_capacity(rows);
    let mut end: u64 = 0;
    r.planes(rows, |len| {
        end = end.saturating_add(len);
        ends.push(end.min(u64::from(u32::MAX)) as u32);
    })?;
    let base = r.pos();
    if (raw.len() - base) as u64 != end {
        return Err(Malformed);
    }
    Ok(Messages { raw, base, ends })
}

/// Decodes a raw tag sets column of a block of `rows` rows.
pub fn decode_tag_sets(raw: &[u8], rows: usize) -> std::result::Result<TagSets, Malformed> {
    let mut r = Reader::new(raw);
    let ns = r.len(1)?;
    let mut strings = Vec::with_capacity(ns);
    for _ in 0..ns {
        strings.push(r.str()?.to_owned());
    }
    // every set is some row's, and holds each string at most once: that bounds the ids
    let nsets = r.len(1)?;
    if nsets > rows {
        return Err(Malformed);
    }
    let mut set_ends = Vec::with_capacity(nsets);
    let mut total: u64 = 0;
    let mut bad_value = false;
    r.planes(nsets, |k| {
        bad_value |= k > ns as u64;
        total += k.min(ns as u64);
        set_ends.push(total as u32);
    })?;
    // A set holds each string once. With zero-width ids (all 0) only sets of one or none are
    // possible: checked before the loop, so a forged length cannot make it run for ever.
    let max_len = set_ends.iter().scan(0u32, |prev, &e| Some(e - std::mem::replace(prev, e))).max().unwrap_or(0);
    if raw.get(r.pos()) == Some(&0) && max_len > 1 {
        return Err(Malformed);
    }
    let mut set_ids = Vec::with_capacity(total as usize);
    let mut seen = vec![u32::MAX; ns];
    let mut set = 0u32;
    let mut i = 0u32;
    r.planes(total as usize, |id| {
        while set_ends.get(set as usize).is_some_and(|&e| e <= i) {
            set += 1;
        }
        match seen.get_mut(id as usize) {
            Some(s) if *s != set => *s = set,
            _ => bad_value = true,
        }
        set_ids.push(id as u32);
        i += 1;
    })?;
    let mut counts = Vec::with_capacity(nsets);
    let mut total_rows: u64 = 0;
    r.planes(nsets, |c| {
        total_rows = total_rows.saturating_add(c);
        counts.push(c as u32);
    })?;
    if bad_value || total_rows != rows as u64 || !r.is_empty() {
        return Err(Malformed);
    }
    Ok(TagSets { strings, set_ids, set_ends, counts })
}

/// Decodes a raw tag rows column: each of `rows` rows names one of `nsets` sets.
pub fn decode_tag_rows(raw: &[u8], rows: usize, nsets: usize) -> std::result::Result<Vec<u32>, Malformed> {
    let mut r = Reader::new(raw);
    let mut out = Vec::with_capacity(rows);
    let mut out_of_range = false;
    r.planes(rows, |s| {
        out_of_range |= s as usize >= nsets;
        out.push(s as u32);
    })?;
    if out_of_range || !r.is_empty() {
        return Err(Malformed);
    }
    Ok(out)
}

thread_local! {
    /// One zstd decompression context per query thread, reused across columns.
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn decompress(src: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        let d = match &mut *d {
            Some(d) => d,
            None => d.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(src, capacity)
    })
}

/// One block of an open segment file. Nothing is read until a column is asked for; each
/// column is then read on its own, checked against its crc and decompressed.
pub struct BlockData<'m> {
    pub meta: &'m BlockMeta,
    pub file: std::sync::Arc<File>,
    pub corrupt: Corruption,
    /// Where the bytes read and decompressed are counted, for a query's cost.
    pub cost: Option<&'m crate::Cost>,
}

impl BlockData<'_> {
    fn column(&self, col: usize) -> Result<Vec<u8>> {
        let c = self.meta.cols[col];
        let range = self.meta.col_range(col);
        let at = self.meta.offset + range.start as u64;
        let corrupt = Corruption { path: self.corrupt.path.clone(), offset: at };
        let mut src = vec![0u8; range.len()];
        self.file
            .read_exact_at(&mut src, at)
            .map_err(|e| StorageError::Io { path: self.corrupt.path.to_path_buf(), source: e })?;
        if crate::CHECK_CRC && crc32c::crc32c(&src) != c.crc {
            return Err(corrupt.err("column checksum mismatch"));
        }
        let raw = decompress(&src, c.raw_len as usize).map_err(|_| corrupt.err("column does not decompress"))?;
        if raw.len() != c.raw_len as usize {
            return Err(corrupt.err("column has the wrong length"));
        }
        if let Some(cost) = self.cost {
            crate::Cost::add(&cost.bytes_read, src.len() as u64);
            crate::Cost::add(&cost.bytes_decompressed, raw.len() as u64);
        }
        Ok(raw)
    }

    pub fn timestamps(&self) -> Result<Vec<i64>> {
        let raw = self.column(COL_TS)?;
        decode_timestamps(&raw, self.meta.rows as usize).map_err(|_| self.corrupt.err("bad timestamp column"))
    }

    pub fn messages(&self) -> Result<Messages> {
        self.decode_messages(None)
    }

    /// The messages of the rows in `rows` (any order); other rows may read as empty. Cheaper
    /// than [`BlockData::messages`] for a few rows of a block in the template encoding.
    pub fn messages_of(&self, rows: &[u32]) -> Result<Messages> {
        self.decode_messages(Some(rows).filter(|r| r.len() < self.meta.rows as usize))
    }

    fn decode_messages(&self, rows: Option<&[u32]>) -> Result<Messages> {
        let raw = self.column(COL_MSG)?;
        let n = self.meta.rows as usize;
        let decoded = match rows {
            Some(rows) if raw.first() == Some(&template::MARKER) => {
                let mut wanted = vec![false; n];
                for &r in rows {
                    if let Some(w) = wanted.get_mut(r as usize) {
                        *w = true;
                    }
                }
                template::decode_rows(&raw, n, Some(&wanted)).map(|(raw, ends)| Messages { raw, base: 0, ends })
            }
            _ => decode_messages(raw, n),
        };
        decoded.map_err(|_| self.corrupt.err("message lengths do not match the message bytes"))
    }

    pub fn tag_sets(&self) -> Result<TagSets> {
        let raw = self.column(COL_TAG_SETS)?;
        decode_tag_sets(&raw, self.meta.rows as usize).map_err(|_| self.corrupt.err("bad tag sets column"))
    }

    /// Each row's tag set, checked against the sets column.
    pub fn tag_rows(&self, sets: &TagSets) -> Result<Vec<u32>> {
        let raw = self.column(COL_TAG_ROWS)?;
        decode_tag_rows(&raw, self.meta.rows as usize, sets.sets()).map_err(|_| self.corrupt.err("bad tag rows column"))
    }

    pub fn tags(&self) -> Result<Tags> {
        let sets = self.tag_sets()?;
        let rows = self.tag_rows(&sets)?;
        Ok(Tags { sets, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every token and letter 4-gram of every row is in its block's bloom filter, however
        /// the tokens repeat, change case or meet in the cache of recent tokens.
        #[test]
        fn bloom_holds_every_key_of_every_row(
            rows in proptest::collection::vec("[a-dA-D0-9é]{0,7}([ :=-][a-dA-D0-9é]{0,7}){0,6}", 1..300),
        ) {
            let mut b = BlockBuilder::new(BlockOptions::default());
            for (i, m) in rows.iter().enumerate() {
                b.push(i as i64, m, &["k=v"]);
            }
            let meta = b.finish(0, &mut Vec::new()).unwrap();
            for m in &rows {
                bloom::for_each_token_hash(m.as_bytes(), |h| assert!(meta.bloom.may_contain(h), "token of {m:?}"));
                bloom::for_each_gram(m.as_bytes(), |c| {
                    assert!(meta.bloom.may_contain(bloom::gram_hash(c)), "4-gram of {m:?}")
                });
            }
            prop_assert!(meta.bloom.may_contain(bloom::tag_hash("k=v")));
        }
    }
}
