//! Recovery: read every frame back in order and cut a torn or corrupt tail.

use std::path::Path;

use crate::{decode_frame, io_err, list_files, FileSeq, FrameError, Result, HEADER_LEN, MAGIC};

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub files: usize,
    pub frames: u64,
    pub bytes: u64,
    /// Files whose end was cut, with the offset of the first bad byte and why.
    pub cut: Vec<(String, u64, &'static str)>,
}

/// Calls `f(seq, payload)` for every intact frame of every WAL file in `dir`, in order.
///
/// A file whose tail is torn (a crash mid-write) or fails its checksum is truncated at the
/// first bad frame, and the cut is reported in the stats. Frames after a bad frame cannot be
/// trusted to be in order with the rest, so they are dropped with it; they were never
/// acknowledged unless the disk itself corrupted synced data, which the stats make visible.
pub fn replay(dir: &Path, f: impl FnMut(FileSeq, &[u8])) -> Result<ReplayStats> {
    scan(dir, f, true)
}

/// Checks every frame of every WAL file in `dir` without changing anything: what replay would
/// cut is reported in the stats' `cut`.
pub fn verify(dir: &Path) -> Result<ReplayStats> {
    scan(dir, |_, _| {}, false)
}

fn scan(dir: &Path, mut f: impl FnMut(FileSeq, &[u8]), fix: bool) -> Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    for (seq, path) in list_files(dir)? {
        let data = std::fs::read(&path).map_err(io_err(&path))?;
        stats.files += 1;
        if data.len() < HEADER_LEN || &data[..8] != MAGIC {
            // A crash right after creating the file can leave it short; nothing in it was
            // ever acknowledged, so it is rewritten empty.
            if fix {
                tracing::warn!(path = %path.display(), "wal file without a valid header; truncating");
                truncate(&path, 0)?;
            }
            stats.cut.push((path.display().to_string(), 0, "bad header"));
            continue;
        }
        let mut off = HEADER_LEN;
        while off < data.len() {
            match decode_frame(&data[off..]) {
                Ok((payload, used)) => {
                    f(seq, payload);
                    stats.frames += 1;
                    stats.bytes += payload.len() as u64;
                    off += used;
                }
                Err(e) => {
                    let why = match e {
                        FrameError::Truncated => "torn frame",
                        FrameError::Corrupt => "checksum mismatch",
                    };
                    if fix {
                        tracing::warn!(path = %path.display(), offset = off, why, "cutting wal tail");
                        truncate(&path, off as u64)?;
                    }
                    stats.cut.push((path.display().to_string(), off as u64, why));
                    break;
                }
            }
        }
    }
    Ok(stats)
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
    f.set_len(len).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Wal;
    use proptest::prelude::*;

    fn read_all(dir: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        replay(dir, |_, p| out.push(p.to_vec())).unwrap();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The model is a plain list of synced payloads: after any sequence of appends, syncs,
        /// rotations and reopenings, replay gives back exactly the synced payloads, in order.
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u8..4, proptest::collection::vec(any::<u8>(), 0..300)), 1..40)) {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("wal");
            let mut wal = Wal::create(&dir).unwrap();
            let mut model: Vec<Vec<u8>> = Vec::new();
            let mut pending: Vec<Vec<u8>> = Vec::new();
            for (op, payload) in ops {
                match op {
                    0 | 1 => { wal.append(&payload).unwrap(); pending.push(payload); }
                    2 => { wal.write().unwrap(); wal.sync().unwrap(); model.append(&mut pending); }
                    _ => {
                        // reopen: unsynced-but-written data may survive; drop what was never written
                        wal.write().unwrap(); wal.sync().unwrap(); model.append(&mut pending);
                        drop(wal);
                        prop_assert_eq!(&read_all(&dir), &model);
                        wal = Wal::create(&dir).unwrap();
                    }
                }
            }
            wal.rotate().unwrap();
            model.append(&mut pending);
            prop_assert_eq!(read_all(&dir), model);
        }
    }

    #[test]
    fn torn_tail_at_every_offset_of_the_last_frame() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + i as usize * 7]).collect();
        let mut wal = Wal::create(&dir).unwrap();
        for p in &payloads {
            wal.append(p).unwrap();
        }
        wal.write().unwrap();
        wal.sync().unwrap();
        let path = crate::list_files(&dir).unwrap()[0].1.clone();
        drop(wal);
        let full = std::fs::read(&path).unwrap();
        let last_len = crate::FRAME_HEADER_LEN + payloads[4].len();
        let last_start = full.len() - last_len;
        for cut in last_start..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let got = read_all(&dir);
            assert_eq!(got, payloads[..4], "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, last_start, "tail cut at {cut}");
            // a writer opened after recovery appends after the good prefix, in a new file
            let mut w = Wal::create(&dir).unwrap();
            w.append(b"after").unwrap();
            w.write().unwrap();
            w.sync().unwrap();
            let got = read_all(&dir);
            assert_eq!(got.len(), 5);
            assert_eq!(got[4], b"after");
            let seq = w.current_seq();
            drop(w);
            std::fs::remove_file(dir.join(crate::file_name(seq))).unwrap();
        }
        // a flipped byte inside the last frame is cut the same way
        let mut bad = full.clone();
        bad[last_start + 9] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(read_all(&dir), payloads[..4]);
    }

    #[test]
    fn poisoned_wal_refuses_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(tmp.path()).unwrap();
        wal.poison("test");
        assert!(matches!(wal.append(b"x"), Err(crate::WalError::Poisoned(_))));
        assert!(wal.sync().is_err());
    }
}
