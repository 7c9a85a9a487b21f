//! Segment files: the immutable, columnar home of a partition's records.
//!
//! ```text
//! +--------------------------------------------------------------+
//! | header   magic "LOGPSEG1" (8) | version u32 | reserved u32   |  16 B
//! +--------------------------------------------------------------+
//! | block 0  ts_col | msg_col | tags_col   (zstd frames)         |
//! | block 1  ...                                                 |
//! | ...                                                          |
//! +--------------------------------------------------------------+
//! | meta     segment fields, then one BlockMeta per block:       |
//! |          time range, row count, offset, column lengths       |
//! |          and crc32c, bloom filter words                      |
//! +--------------------------------------------------------------+
//! | footer   meta_offset u64 | meta_len u64 | meta crc32c u32 |  |
//! |          version u32 | magic "LOGPSEG1" (8)                  |  32 B
//! +--------------------------------------------------------------+
//! ```
//!
//! A segment is written to `<id>.seg.tmp`, fsynced, renamed to `<id>.seg` and the directory
//! fsynced, so a visible segment is always complete. Opening reads only the footer and meta;
//! blocks are read one at a time, checked against their crc, when a query needs them.
//! `replaces` lists the segments a merge folded into this one: if a crash leaves them behind,
//! opening the partition deletes them instead of serving their records twice.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use logpipe_model::AppName;

use crate::block::{BlockBuilder, BlockData, BlockMeta, BlockOptions};
use crate::files::Handle;
use crate::varint::{self, Malformed, Reader};
use crate::{io_err, Corruption, Result, SegmentId, StorageError};

pub const MAGIC: &[u8; 8] = b"LOGPSEG1";
/// 2: a crc32c per column instead of one per block. 3: message columns may be in the
/// template encoding (see [`crate::template`]; written only with [`BlockOptions::templates`]).
pub const VERSION: u32 = 3;
/// The oldest version this build reads (a version 2 file is a version 3 file without templates).
pub const OLDEST_VERSION: u32 = 2;
pub const HEADER_LEN: u64 = 16;
pub const FOOTER_LEN: u64 = 32;
const META_VERSION: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub id: SegmentId,
    pub app: AppName,
    pub day: i32,
    /// Every WAL record of this partition from WAL files `<= wal_watermark` is in this segment
    /// or an older one; replay skips them.
    pub wal_watermark: u64,
    /// Segments this one superseded (transitively), deleted if found on open.
    pub replaces: Vec<SegmentId>,
    /// zstd level its columns were written with (merges of settled partitions raise it).
    pub level: i32,
    pub rows: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub blocks: Vec<BlockMeta>,
}

impl SegmentMeta {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        varint::put_u64(&mut out, META_VERSION);
        varint::put_u64(&mut out, self.id);
        varint::put_bytes(&mut out, self.app.as_str().as_bytes());
        varint::put_i64(&mut out, i64::from(self.day));
        varint::put_u64(&mut out, self.wal_watermark);
        varint::put_u64(&mut out, self.replaces.len() as u64);
        for &r in &self.replaces {
            varint::put_u64(&mut out, r);
        }
        varint::put_i64(&mut out, i64::from(self.level));
        varint::put_u64(&mut out, self.rows);
        varint::put_i64(&mut out, self.min_ts);
        varint::put_i64(&mut out, self.max_ts);
        varint::put_u64(&mut out, self.blocks.len() as u64);
        for b in &self.blocks {
            b.encode(&mut out);
        }
        out
    }

    fn decode(buf: &[u8]) -> std::result::Result<SegmentMeta, Malformed> {
        let mut r = Reader::new(buf);
        if r.u64()? != META_VERSION {
            return Err(Malformed);
        }
        let id = r.u64()?;
        let app = AppName::parse(r.str()?).map_err(|_| Malformed)?;
        let day = i32::try_from(r.i64()?).map_err(|_| Malformed)?;
        let wal_watermark = r.u64()?;
        let nrep = r.len(1)?;
        let mut replaces = Vec::with_capacity(nrep);
        for _ in 0..nrep {
            replaces.push(r.u64()?);
        }
        let level = i32::try_from(r.i64()?).map_err(|_| Malformed)?;
        let rows = r.u64()?;
        let min_ts = r.i64()?;
        let max_ts = r.i64()?;
        let nblocks = r.len(8)?;
        let mut blocks = Vec::with_capacity(nblocks);
        for _ in 0..nblocks {
            blocks.push(BlockMeta::decode(&mut r)?);
        }
        if !r.is_empty() || blocks.iter().map(|b| u64::from(b.rows)).sum::<u64>() != rows {
            return Err(Malformed);
        }
        Ok(SegmentMeta { id, app, day, wal_watermark, replaces, level, rows, min_ts, max_ts, blocks })
    }
}

pub fn file_name(id: SegmentId) -> String {
    format!("{id:016x}.seg")
}

pub fn parse_file_name(name: &str) -> Option<SegmentId> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 16 {
        return None;
    }
    u64::from_str_radix(stem, 16).ok()
}

/// Writes `records` (all of partition `key`, in any order) into a new segment `id` in `dir`.
pub fn write_records(
    dir: &Path,
    id: SegmentId,
    key: &crate::partition::PartitionKey,
    wal_watermark: u64,
    mut records: Vec<crate::memtable::Row<'_>>,
    opts: BlockOptions,
) -> Result<Segment> {
    use crate::maintenance::row_cmp;
    records.sort_unstable_by(|a, b| row_cmp(a.ts, a.message.as_bytes(), a.tags, b.ts, b.message.as_bytes(), b.tags));
    let mut w = SegmentWriter::create(dir, id, key.app.clone(), key.day, wal_watermark, Vec::new(), opts)?;
    for r in records {
        if let Err(e) = w.push(r.ts, r.message, r.tags) {
            w.abandon();
            return Err(e);
        }
    }
    w.finish()
}

/// Streams sorted rows into a new segment file.
pub struct SegmentWriter {
    dir: PathBuf,
    tmp: Unfinished,
    file: File,
    offset: u64,
    builder: BlockBuilder,
    buf: Vec<u8>,
    meta: SegmentMeta,
}

impl SegmentWriter {
    pub fn create(
        dir: &Path,
        id: SegmentId,
        app: AppName,
        day: i32,
        wal_watermark: u64,
        replaces: Vec<SegmentId>,
        opts: BlockOptions,
    ) -> Result<SegmentWriter> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = dir.join(format!("{}.tmp", file_name(id)));
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp).map_err(io_err(&tmp))?;
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let tmp = Unfinished(Some(tmp));
        file.write_all(&header).map_err(io_err(tmp.path()))?;
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            tmp,
            file,
            offset: HEADER_LEN,
            builder: BlockBuilder::new(opts),
            buf: Vec::new(),
            meta: SegmentMeta {
                id,
                app,
                day,
                wal_watermark,
                replaces,
                level: opts.level,
                rows: 0,
                min_ts: i64::MAX,
                max_ts: i64::MIN,
                blocks: Vec::new(),
            },
        })
    }

    /// Adds a row. Rows must come in (timestamp, message, tags) order.
    pub fn push<I>(&mut self, ts: i64, message: &str, tags: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.builder.push(ts, message, tags);
        if self.builder.is_full() {
            self.cut_block()?;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.meta.rows + self.builder.rows() as u64
    }

    fn cut_block(&mut self) -> Result<()> {
        if self.builder.rows() == 0 {
            return Ok(());
        }
        self.buf.clear();
        let meta = self.builder.finish(self.offset, &mut self.buf)?;
        fail::fail_point!("segment::write", |arg| Err(io_err(self.tmp.path())(injected(arg))));
        self.file.write_all(&self.buf).map_err(io_err(self.tmp.path()))?;
        self.offset += self.buf.len() as u64;
        self.meta.rows += u64::from(meta.rows);
        self.meta.min_ts = self.meta.min_ts.min(meta.min_ts);
        self.meta.max_ts = self.meta.max_ts.max(meta.max_ts);
        self.meta.blocks.push(meta);
        Ok(())
    }

    /// Writes meta and footer, makes the file durable and visible, and opens it for reading.
    pub fn finish(mut self) -> Result<Segment> {
        self.cut_block()?;
        if self.meta.rows == 0 {
            return Err(StorageError::EmptySegment);
        }
        let meta_bytes = self.meta.encode();
        let mut tail = meta_bytes.clone();
        tail.extend_from_slice(&self.offset.to_le_bytes());
        tail.extend_from_slice(&(meta_bytes.len() as u64).to_le_bytes());
        tail.extend_from_slice(&crc32c::crc32c(&meta_bytes).to_le_bytes());
        tail.extend_from_slice(&VERSION.to_le_bytes());
        tail.extend_from_slice(MAGIC);
        let tmp = self.tmp.path().to_path_buf();
        self.file.write_all(&tail).map_err(io_err(&tmp))?;
        fail::fail_point!("segment::sync", |arg| Err(io_err(&tmp)(injected(arg))));
        self.file.sync_all().map_err(io_err(&tmp))?;
        let path = self.dir.join(file_name(self.meta.id));
        fail::fail_point!("segment::rename", |arg| Err(io_err(&path)(injected(arg))));
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        // from here a failure takes the renamed file away again (as far as it can): a segment
        // is published whole, with its directory entry durable, or not at all
        self.tmp.0 = Some(path.clone());
        crate::sync_dir(&self.dir).map_err(|e| match e {
            StorageError::Io { source, .. } => StorageError::Unsettled { path: path.clone(), source },
            other => other,
        })?;
        self.tmp.0 = None;
        let file_len = self.offset + tail.len() as u64;
        Ok(Segment {
            meta: self.meta,
            handle: Handle::new(Arc::new(path), self.file),
            file_len,
            quarantined: Default::default(),
            fetch: None,
        })
    }

    /// Drops the unfinished file (as dropping the writer does).
    pub fn abandon(self) {}
}

/// The file of a segment not yet published: removed when the writer is dropped unfinished,
/// whatever the error that stopped it.
struct Unfinished(Option<PathBuf>);

impl Unfinished {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("a writer's file until it is published")
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The error a fail point injects: `return(enospc)` is a full disk, anything else a plain error.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
fn injected(arg: Option<String>) -> std::io::Error {
    match arg.as_deref() {
        Some("enospc") => std::io::Error::from_raw_os_error(28),
        _ => std::io::Error::other("injected fault"),
    }
}

/// Fills in byte ranges of a segment file that is kept elsewhere (object storage) and cached
/// locally as a sparse file: [`Segment::read_block`] asks for a block's range before reading it.
pub trait Fetch: Send + Sync + std::fmt::Debug {
    /// Makes bytes `[offset, offset + len)` of the local file hold the segment's bytes.
    fn ensure(&self, offset: u64, len: u64) -> std::io::Result<()>;
}

/// An open, immutable segment.
#[derive(Debug)]
pub struct Segment {
    pub meta: SegmentMeta,
    /// The file, opened when read and closed by the file cache when too many are open.
    handle: Arc<Handle>,
    pub file_len: u64,
    /// Blocks found corrupt: skipped by queries from then on, the rest still served.
    quarantined: parking_lot::Mutex<Vec<usize>>,
    /// Set when the file is a local, partial copy of a segment kept elsewhere.
    fetch: Option<Arc<dyn Fetch>>,
}

impl Segment {
    pub fn open(path: &Path) -> Result<Segment> {
        let file = File::open(path).map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let corrupt = |offset, reason| StorageError::Corrupt { path: path.to_path_buf(), offset, reason };
        if file_len < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(0, "file too short for a segment"));
        }
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).map_err(io_err(path))?;
        if &header[..8] != MAGIC {
            return Err(corrupt(0, "bad magic"));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(StorageError::UnsupportedVersion { path: path.to_path_buf(), version });
        }
        if header[12..] != [0u8; 4] {
            return Err(corrupt(12, "bad header"));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        let footer_at = file_len - FOOTER_LEN;
        file.read_exact_at(&mut footer, footer_at).map_err(io_err(path))?;
        if &footer[24..32] != MAGIC {
            return Err(corrupt(footer_at, "bad footer magic"));
        }
        let version = u32::from_le_bytes(footer[20..24].try_into().expect("4 bytes"));
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(StorageError::UnsupportedVersion { path: path.to_path_buf(), version });
        }
        let meta_offset = u64::from_le_bytes(footer[0..8].try_into().expect("8 bytes"));
        let meta_len = u64::from_le_bytes(footer[8..16].try_into().expect("8 bytes"));
        let meta_crc = u32::from_le_bytes(footer[16..20].try_into().expect("4 bytes"));
        if meta_offset < HEADER_LEN || meta_offset.checked_add(meta_len) != Some(footer_at) {
            return Err(corrupt(footer_at, "footer points outside the file"));
        }
        let mut meta_bytes = vec![0u8; meta_len as usize];
        file.read_exact_at(&mut meta_bytes, meta_offset).map_err(io_err(path))?;
        if crate::CHECK_CRC && crc32c::crc32c(&meta_bytes) != meta_crc {
            return Err(corrupt(meta_offset, "meta checksum mismatch"));
        }
        let meta = SegmentMeta::decode(&meta_bytes).map_err(|_| corrupt(meta_offset, "malformed meta"))?;
        for b in &meta.blocks {
            if b.offset < HEADER_LEN || b.offset + b.disk_len() > meta_offset {
                return Err(corrupt(meta_offset, "block outside the data region"));
            }
        }
        let handle = Handle::new(Arc::new(path.to_path_buf()), file);
        Ok(Segment { meta, handle, file_len, quarantined: Default::default(), fetch: None })
    }

    /// Opens a local, partial copy of a segment kept elsewhere: `path` must already hold the
    /// header, meta and footer; `fetch` fills in each block before it is read. The file is kept
    /// open for as long as the segment lives (the cache may delete it meanwhile).
    pub fn open_remote(path: &Path, fetch: Arc<dyn Fetch>) -> Result<Segment> {
        let mut seg = Segment::open(path)?;
        seg.fetch = Some(fetch);
        seg.keep_open()?;
        Ok(seg)
    }

    /// Whether this segment is a local copy of one kept elsewhere.
    pub fn is_remote(&self) -> bool {
        self.fetch.is_some()
    }

    pub fn is_quarantined(&self, idx: usize) -> bool {
        let q = self.quarantined.lock();
        !q.is_empty() && q.contains(&idx)
    }

    /// Blocks found corrupt so far.
    pub fn quarantined(&self) -> usize {
        self.quarantined.lock().len()
    }

    /// Sets block `idx` aside after `err`; reports it the first time.
    pub(crate) fn quarantine(&self, idx: usize, err: &StorageError) {
        let mut q = self.quarantined.lock();
        if !q.contains(&idx) {
            q.push(idx);
            tracing::error!(error = %err, block = idx, "corrupt block quarantined; the rest of the segment is served");
        }
    }

    /// Reads, checks and decodes every column of every block: the damage found, by file and
    /// offset (an empty list: the segment is sound).
    pub fn verify(&self) -> Vec<StorageError> {
        (0..self.meta.blocks.len())
            .filter_map(|idx| {
                let b = self.read_block(idx).ok()?;
                let sets = b.tag_sets();
                let all = b.timestamps().and(b.messages().map(|_| ())).and(sets.and_then(|s| b.tag_rows(&s)));
                all.err()
            })
            .collect()
    }

    pub fn path(&self) -> &Path {
        self.handle.path()
    }

    /// Keeps the file open for as long as the segment lives: call before deleting the file
    /// while queries may still read the segment.
    pub fn keep_open(&self) -> Result<()> {
        self.handle.pin().map_err(io_err(self.path()))
    }

    pub fn id(&self) -> SegmentId {
        self.meta.id
    }

    /// Block `idx`; its columns are read, checked and decompressed when asked for.
    pub fn read_block(&self, idx: usize) -> Result<BlockData<'_>> {
        let meta = &self.meta.blocks[idx];
        if let Some(fetch) = &self.fetch {
            fetch.ensure(meta.offset, meta.disk_len()).map_err(|source| StorageError::Unavailable {
                what: format!("block {idx} of segment {}", self.meta.id),
                source,
            })?;
        }
        let file = self.handle.file().map_err(io_err(self.path()))?;
        let corrupt = Corruption { path: self.handle.path_arc(), offset: meta.offset };
        Ok(BlockData { meta, file, corrupt, cost: None })
    }

    /// Indices of the blocks that may hold timestamps in `[from, to)`.
    pub fn blocks_in(&self, from: i64, to: i64) -> std::ops::Range<usize> {
        let b = &self.meta.blocks;
        let lo = b.partition_point(|m| m.max_ts < from);
        let hi = b.partition_point(|m| m.min_ts < to);
        lo..hi.max(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Row = (i64, String, Vec<String>);

    fn write(dir: &Path, rows: &[Row], max_rows: usize) -> Segment {
        write_opts(dir, rows, BlockOptions { level: 1, templates: false, max_rows })
    }

    fn write_opts(dir: &Path, rows: &[Row], opts: BlockOptions) -> Segment {
        let app = AppName::parse("app").unwrap();
        let mut w = SegmentWriter::create(dir, 7, app, 3, 9, vec![1, 2], opts).unwrap();
        for (ts, m, t) in rows {
            w.push(*ts, m, t).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(seg: &Segment) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        for i in 0..seg.meta.blocks.len() {
            let b = seg.read_block(i)?;
            let (ts, msgs, tags) = (b.timestamps()?, b.messages()?, b.tags()?);
            for (r, &t) in ts.iter().enumerate() {
                out.push((t, String::from_utf8(msgs.get(r).to_vec()).unwrap(), tags.row(r)));
            }
        }
        Ok(out)
    }

    fn rows_strategy() -> impl Strategy<Value = Vec<Row>> {
        proptest::collection::vec(
            (-1000i64..1000, "[a-z é0-9-]{0,20}", proptest::collection::btree_set("[a-z]=[a-z0-9]{0,3}", 0..4)),
            1..200,
        )
        .prop_map(|mut v| {
            v.sort();
            v.into_iter().map(|(t, m, g)| (t, m, g.into_iter().collect())).collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Rows written are the rows read back after reopening, across any block size.
        #[test]
        fn round_trip_through_reopen(rows in rows_strategy(), max_rows in 1usize..50, templates: bool) {
            let tmp = tempfile::tempdir().unwrap();
            let written = write_opts(tmp.path(), &rows, BlockOptions { level: 1, templates, max_rows });
            prop_assert_eq!(written.meta.blocks.len(), rows.len().div_ceil(max_rows));
            let path = written.path().to_path_buf();
            drop(written);
            let seg = Segment::open(&path).unwrap();
            prop_assert_eq!(seg.meta.rows as usize, rows.len());
            prop_assert_eq!((seg.meta.wal_watermark, seg.meta.replaces.clone()), (9, vec![1, 2]));
            prop_assert_eq!(read_all(&seg).unwrap(), rows.clone());
            // time pruning finds exactly the blocks that overlap
            let (from, to) = (rows[rows.len() / 3].0, rows[rows.len() * 2 / 3].0 + 1);
            for (i, b) in seg.meta.blocks.iter().enumerate() {
                let overlaps = b.max_ts >= from && b.min_ts < to;
                prop_assert_eq!(seg.blocks_in(from, to).contains(&i), overlaps);
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let rows: Vec<Row> = (0..40).map(|i| (i, format!("message {i}"), vec![format!("k={}", i % 3)])).collect();
        let path = write(tmp.path(), &rows, 16).path().to_path_buf();
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            let res = Segment::open(&path).and_then(|s| read_all(&s));
            assert!(res.is_err(), "flip at byte {i} of {} went unnoticed", good.len());
        }
        for cut in [0, 10, good.len() / 2, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(Segment::open(&path).and_then(|s| read_all(&s)).is_err(), "truncation at {cut}");
        }
    }

    /// Templates shrink a column of repetitive messages, read back exactly, and a version 2
    /// file (written before templates existed) still opens.
    #[test]
    fn templates_and_version_2_files() {
        let tmp = tempfile::tempdir().unwrap();
        let rows: Vec<Row> = (0..3000)
            .map(|i| (i, format!("served /static/{} in {} ms to 10.0.{}.{}", i % 97, i % 13, i % 7, i % 250), vec![]))
            .collect();
        let plain = write_opts(tmp.path(), &rows, BlockOptions { level: 3, templates: false, max_rows: 1000 });
        let sub = tmp.path().join("t");
        std::fs::create_dir(&sub).unwrap();
        let templated = write_opts(&sub, &rows, BlockOptions { level: 3, templates: true, max_rows: 1000 });
        let msg_bytes = |s: &Segment| s.meta.blocks.iter().map(|b| b.cols[crate::block::COL_MSG].len).sum::<u32>();
        assert!(msg_bytes(&templated) < msg_bytes(&plain), "{} vs {}", msg_bytes(&templated), msg_bytes(&plain));
        assert_eq!(read_all(&Segment::open(templated.path()).unwrap()).unwrap(), rows);

        let path = plain.path().to_path_buf();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        bytes[n - 12..n - 8].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_all(&Segment::open(&path).unwrap()).unwrap(), rows);
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(Segment::open(&path), Err(StorageError::UnsupportedVersion { version: 1, .. })));
    }
}
