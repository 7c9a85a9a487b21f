//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay test: each takes
//! arbitrary bytes, must never panic, abort or allocate without bound, and checks what the
//! decoder promises about what it accepts.

use std::io::Write;
use std::path::PathBuf;

use crate::block::{self, BLOCK_MAX_ROWS};
use crate::segment::Segment;

/// A batch (WAL payload): what decodes re-encodes to the same bytes.
pub fn batch(data: &[u8]) {
    if let Ok((key, records)) = crate::batch::decode_keyed(data) {
        let again = crate::batch::encode_keyed(&records, key.as_ref().map(|(k, at)| (k, *at)));
        assert_eq!(crate::batch::decode_keyed(&again).expect("re-encoded batch decodes"), (key, records));
    }
}

/// The four columns of a block, decoded without decompression. Input: rows (u16), the lengths
/// of the first three columns (u16 each), then the columns back to back.
pub fn block(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<8>() else { return };
    let rows = (usize::from(u16::from_le_bytes([head[0], head[1]])) % BLOCK_MAX_ROWS) + 1;
    let mut cols = [&[][..]; 4];
    let mut rest = rest;
    for (i, c) in cols.iter_mut().take(3).enumerate() {
        let n = usize::from(u16::from_le_bytes([head[2 + 2 * i], head[3 + 2 * i]])).min(rest.len());
        (*c, rest) = rest.split_at(n);
    }
    cols[3] = rest;
    if let Ok(ts) = block::decode_timestamps(cols[0], rows) {
        assert_eq!(ts.len(), rows);
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "timestamps decode sorted");
    }
    if let Ok(m) = block::decode_messages(cols[1].to_vec(), rows) {
        assert_eq!(m.len(), rows);
        let total: usize = (0..rows).map(|r| m.get(r).len()).sum();
        assert_eq!(total, m.data().len());
        // whatever the messages, their template encoding decodes back to them
        let lens: Vec<u32> = (0..rows).map(|r| m.get(r).len() as u32).collect();
        let mut col = Vec::new();
        if crate::template::TemplateEncoder::default().encode(m.data(), &lens, &mut col) {
            let again = block::decode_messages(col.clone(), rows).expect("an encoded column decodes");
            assert_eq!(again.data(), m.data());
            assert!((0..rows).all(|r| again.get(r) == m.get(r)));
            // and rebuilding some rows gives those rows, the others empty
            let wanted: Vec<bool> = (0..rows).map(|r| r % 3 == 1).collect();
            let (text, ends) = crate::template::decode_rows(&col, rows, Some(&wanted)).expect("decodes");
            let mut start = 0;
            for (r, &e) in ends.iter().enumerate() {
                let want: &[u8] = if wanted[r] { m.get(r) } else { b"" };
                assert_eq!(&text[start..e as usize], want);
                start = e as usize;
            }
        }
    }
    if let Ok(sets) = block::decode_tag_sets(cols[2], rows) {
        assert_eq!(sets.counts.iter().map(|&c| u64::from(c)).sum::<u64>(), rows as u64);
        for i in 0..sets.sets() {
            let ids = sets.set(i);
            assert!(ids.iter().all(|&id| (id as usize) < sets.strings.len()));
            let mut sorted = ids.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), ids.len(), "a set names each tag once");
        }
        if let Ok(r) = block::decode_tag_rows(cols[3], rows, sets.sets()) {
            let tags = block::Tags { sets, rows: r };
            for row in 0..rows {
                tags.row_refs(row);
            }
        }
    }
}

fn scratch_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("logpipe-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// A whole segment file: opened, verified, every column of every block read. Damage must be
/// refused or reported, never a panic.
pub fn segment(data: &[u8]) {
    let path = scratch_file(&crate::segment::file_name(1));
    std::fs::File::create(&path).and_then(|mut f| f.write_all(data)).expect("write scratch segment");
    let Ok(seg) = Segment::open(&path) else { return };
    let reported = seg.verify().len();
    let mut failed = 0;
    for i in 0..seg.meta.blocks.len() {
        let b = seg.read_block(i).expect("block of an open segment");
        match (b.timestamps(), b.messages(), b.tags()) {
            (Ok(ts), Ok(msgs), Ok(tags)) => {
                let rows = b.meta.rows as usize;
                assert_eq!((ts.len(), msgs.len(), tags.rows.len()), (rows, rows, rows));
            }
            _ => failed += 1,
        }
    }
    assert_eq!(failed, reported, "verify reports exactly the blocks that do not decode");
    let _ = seg.blocks_in(i64::MIN, i64::MAX);
}

/// The saved idempotency keys file.
pub fn idempotency_keys(data: &[u8]) {
    crate::idempotency::parse_file(data);
}

/// A WAL file built from the input: chunks of `kind u8 | len u16 | bytes`, where an even kind
/// is a whole frame around the bytes and an odd kind is the bytes raw (a torn or damaged
/// tail). Replay must give back every frame before the first damage, cut the file there so a
/// second look finds it clean, and hand payloads to the batch decoder as recovery does.
pub fn wal(data: &[u8]) {
    let mut file = Vec::from(&logpipe_wal::MAGIC[..]);
    file.extend_from_slice(&logpipe_wal::VERSION.to_le_bytes());
    file.extend_from_slice(&[0; 4]);
    let (mut framed, mut damaged, mut rest) = (Vec::new(), false, data);
    while let Some((&[kind, a, b], tail)) = rest.split_first_chunk::<3>() {
        let n = usize::from(u16::from_le_bytes([a, b])).min(tail.len());
        let (bytes, tail) = tail.split_at(n);
        if kind % 2 == 0 {
            logpipe_wal::encode_frame(bytes, &mut file);
            if !damaged {
                framed.push(bytes.to_vec());
            }
        } else {
            file.extend_from_slice(bytes);
            damaged |= !bytes.is_empty();
        }
        rest = tail;
    }
    let dir = scratch_file("wal");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch wal dir");
    std::fs::write(dir.join("00000000000000000001.wal"), &file).expect("write scratch wal");
    let checked = logpipe_wal::verify(&dir).expect("verify reads the wal");
    let mut payloads = Vec::new();
    let replayed = logpipe_wal::replay(&dir, |_, p| {
        let _ = crate::batch::decode_keyed(p);
        payloads.push(p.to_vec());
    })
    .expect("replay reads the wal");
    assert_eq!(checked, replayed, "verify sees what replay does");
    assert!(payloads.len() >= framed.len() && payloads[..framed.len()] == framed[..], "every frame before damage");
    if !damaged {
        assert_eq!(payloads.len(), framed.len());
    }
    let again = logpipe_wal::verify(&dir).expect("verify reads the wal");
    assert!(again.cut.is_empty(), "replay cut the damage away");
    assert_eq!(again.frames, payloads.len() as u64);
}
