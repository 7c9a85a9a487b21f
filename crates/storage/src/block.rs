//! A block: up to [`BLOCK_MAX_ROWS`] records of one partition, sorted by (timestamp, message,
//! tags), stored as three separately compressed columns so a query decompresses only the
//! columns its filters and output need.
//!
//! ```text
//! block    := ts_col | msg_col | tags_col            each a zstd frame; lengths in BlockMeta
//! ts_col   := first zigzag | delta varint * (rows-1)  rows are sorted, so deltas are >= 0
//! msg_col  := len varint * rows | message bytes concatenated
//! tags_col := nstrings varint | (len varint, bytes) * nstrings     distinct tags of the block
//!             nsets varint | (k varint, string id varint * k) * nsets   distinct tag sets
//!             set id varint * rows
//! ```
//!
//! Tag sets repeat heavily in logs (level × host × env), so a tag filter is evaluated once per
//! distinct set, not once per row.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::bloom::{self, Bloom};
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
    /// Rows per block (at most).
    pub max_rows: usize,
}

pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

impl Default for BlockOptions {
    fn default() -> Self {
        BlockOptions { level: DEFAULT_COMPRESSION_LEVEL, max_rows: BLOCK_MAX_ROWS }
    }
}

/// Largest raw column a reader accepts; guards allocations against corrupted lengths.
const MAX_RAW_COLUMN: u64 = 1 << 30;

pub const COL_TS: usize = 0;
pub const COL_MSG: usize = 1;
pub const COL_TAGS: usize = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnMeta {
    /// Compressed bytes on disk.
    pub len: u32,
    /// Bytes after decompression.
    pub raw_len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    pub min_ts: i64,
    pub max_ts: i64,
    pub rows: u32,
    /// Offset of the block's first byte in the segment file.
    pub offset: u64,
    pub cols: [ColumnMeta; 3],
    /// crc32c of the block's bytes.
    pub crc: u32,
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
        }
        varint::put_u64(out, u64::from(self.crc));
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
        let mut cols = [ColumnMeta::default(); 3];
        for c in &mut cols {
            let len = r.u64()?;
            let raw_len = r.u64()?;
            if raw_len > MAX_RAW_COLUMN || len > MAX_RAW_COLUMN {
                return Err(Malformed);
            }
            *c = ColumnMeta { len: len as u32, raw_len: raw_len as u32 };
        }
        let crc = u32::try_from(r.u64()?).map_err(|_| Malformed)?;
        let nwords = r.len(8)?;
        let mut words = Vec::with_capacity(nwords);
        for _ in 0..nwords {
            words.push(r.u64_fixed()?);
        }
        if min_ts > max_ts || rows == 0 {
            return Err(Malformed);
        }
        Ok(BlockMeta { min_ts, max_ts, rows, offset, cols, crc, bloom: Bloom::from_words(words) })
    }
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
    set_scratch: Vec<u32>,
    /// Reused across blocks: a zstd context and the raw column buffer.
    zstd: Option<zstd::bulk::Compressor<'static>>,
    raw: Vec<u8>,
    zbuf: Vec<u8>,
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
            set_scratch: Vec::new(),
            zstd: None,
            raw: Vec::new(),
            zbuf: Vec::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.ts.len()
    }

    pub fn is_full(&self) -> bool {
        self.ts.len() >= self.opts.max_rows.max(1) || self.msgs.len() >= BLOCK_MAX_MSG_BYTES
    }

    /// Adds a row; rows must arrive in (timestamp, message, tags) order.
    pub fn push<T: AsRef<str>>(&mut self, ts: i64, message: &str, tags: &[T]) {
        debug_assert!(self.ts.last().is_none_or(|&last| last <= ts));
        self.ts.push(ts);
        self.msg_lens.push(message.len() as u32);
        self.msgs.extend_from_slice(message.as_bytes());
        let keys = &mut self.keys;
        bloom::for_each_token_hash(message.as_bytes(), |h| {
            keys.insert(h);
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
        let start = out.len();
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        varint::put_i64(&mut raw, self.ts[0]);
        for w in self.ts.windows(2) {
            varint::put_u64(&mut raw, (w[1] - w[0]) as u64);
        }
        let c_ts = self.compress(&raw, out)?;

        raw.clear();
        for &l in &self.msg_lens {
            varint::put_u64(&mut raw, u64::from(l));
        }
        raw.extend_from_slice(&self.msgs);
        let c_msg = self.compress(&raw, out)?;

        raw.clear();
        varint::put_u64(&mut raw, self.tag_strings.len() as u64);
        for t in &self.tag_strings {
            varint::put_bytes(&mut raw, t.as_bytes());
        }
        varint::put_u64(&mut raw, self.sets.len() as u64);
        for s in &self.sets {
            varint::put_u64(&mut raw, s.len() as u64);
            for &id in s {
                varint::put_u64(&mut raw, u64::from(id));
            }
        }
        for &s in &self.row_sets {
            varint::put_u64(&mut raw, u64::from(s));
        }
        let c_tags = self.compress(&raw, out)?;
        self.raw = raw;

        let keys: Vec<u64> = self.keys.iter().copied().collect();
        let meta = BlockMeta {
            min_ts: self.ts[0],
            max_ts: *self.ts.last().expect("non-empty"),
            rows: self.ts.len() as u32,
            offset,
            cols: [c_ts, c_msg, c_tags],
            crc: crc32c::crc32c(&out[start..]),
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
        Ok(ColumnMeta { len: self.zbuf.len() as u32, raw_len: raw.len() as u32 })
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

/// The tag column of a decoded block.
pub struct Tags {
    pub strings: Vec<String>,
    pub sets: Vec<Vec<u32>>,
    pub rows: Vec<u32>,
}

impl Tags {
    /// The tags of `row`, borrowed.
    pub fn row_refs(&self, row: usize) -> Vec<&str> {
        self.sets[self.rows[row] as usize].iter().map(|&id| self.strings[id as usize].as_str()).collect()
    }

    pub fn row(&self, row: usize) -> Vec<String> {
        self.sets[self.rows[row] as usize].iter().map(|&id| self.strings[id as usize].clone()).collect()
    }
}

/// The compressed bytes of one block, checked against its crc.
pub struct BlockData<'m> {
    pub meta: &'m BlockMeta,
    pub bytes: Vec<u8>,
    pub corrupt: Corruption,
}

impl BlockData<'_> {
    fn column(&self, col: usize) -> Result<Vec<u8>> {
        let c = self.meta.cols[col];
        let src = &self.bytes[self.meta.col_range(col)];
        let raw = zstd::bulk::decompress(src, c.raw_len as usize)
            .map_err(|_| self.corrupt.err("column does not decompress"))?;
        if raw.len() != c.raw_len as usize {
            return Err(self.corrupt.err("column has the wrong length"));
        }
        Ok(raw)
    }

    pub fn timestamps(&self) -> Result<Vec<i64>> {
        let raw = self.column(COL_TS)?;
        let bad = |_| self.corrupt.err("bad timestamp column");
        let mut r = Reader::new(&raw);
        let n = self.meta.rows as usize;
        let mut out = Vec::with_capacity(n);
        let mut t = r.i64().map_err(bad)?;
        out.push(t);
        for _ in 1..n {
            t = t.checked_add(r.u64().map_err(bad)? as i64).ok_or_else(|| self.corrupt.err("timestamp overflow"))?;
            out.push(t);
        }
        Ok(out)
    }

    pub fn messages(&self) -> Result<Messages> {
        let raw = self.column(COL_MSG)?;
        let n = self.meta.rows as usize;
        let mut r = Reader::new(&raw);
        let mut ends = Vec::with_capacity(n);
        let mut end: u64 = 0;
        for _ in 0..n {
            end += r.u64().map_err(|_| self.corrupt.err("bad message lengths"))?;
            ends.push(u32::try_from(end).map_err(|_| self.corrupt.err("bad message lengths"))?);
        }
        let base = r.pos();
        if raw.len() - base != end as usize {
            return Err(self.corrupt.err("message bytes do not match their lengths"));
        }
        Ok(Messages { raw, base, ends })
    }

    pub fn tags(&self) -> Result<Tags> {
        let raw = self.column(COL_TAGS)?;
        let bad = |_| self.corrupt.err("bad tag column");
        let mut r = Reader::new(&raw);
        let ns = r.len(1).map_err(bad)?;
        let mut strings = Vec::with_capacity(ns);
        for _ in 0..ns {
            strings.push(r.str().map_err(bad)?.to_owned());
        }
        let nsets = r.len(1).map_err(bad)?;
        let mut sets = Vec::with_capacity(nsets);
        for _ in 0..nsets {
            let k = r.len(1).map_err(bad)?;
            let mut s = Vec::with_capacity(k);
            for _ in 0..k {
                let id = r.u64().map_err(bad)?;
                if id as usize >= ns {
                    return Err(self.corrupt.err("tag id out of range"));
                }
                s.push(id as u32);
            }
            sets.push(s);
        }
        let n = self.meta.rows as usize;
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let s = r.u64().map_err(bad)?;
            if s as usize >= nsets {
                return Err(self.corrupt.err("tag set id out of range"));
            }
            rows.push(s as u32);
        }
        Ok(Tags { strings, sets, rows })
    }
}
