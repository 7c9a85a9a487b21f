//! Bytes flipped in a segment and in the WAL: detected by checksum, reported by file and
//! offset, the damaged block quarantined and the rest served; `logpipe inspect --verify`
//! finds all of it without changing anything.

mod common;

use std::os::unix::fs::FileExt;
use std::process::Command;

use common::*;
use logpipe_storage::block::COL_MSG;
use logpipe_storage::segment::Segment;
use serde_json::json;

fn seg_files(dir: &std::path::Path, app: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(dir.join("partitions").join(app)).unwrap() {
        for f in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "seg") {
                out.push(p);
            }
        }
    }
    out
}

fn flip(path: &std::path::Path, offset: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], offset).unwrap();
}

fn verify(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .args(["inspect", "--verify", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_corrupt_block_is_quarantined_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // 20,000 records of one app make three blocks of at most 8,192 rows; another app beside
    let big: Vec<_> = (0..20_000u64)
        .map(|i| json!({"app": "big", "timestamp": 1_735_689_600_000_000_000u64 + i * 1_000_000, "message": format!("event {i} ok")}))
        .collect();
    assert_eq!(ingest(&s.base, &ndjson(&big)).0, 200);
    assert_eq!(ingest(&s.base, &ndjson(&[json!({"app": "other", "message": "fine ok"})])).0, 200);
    assert!(s.stop().success());
    let (ok, out) = verify(dir.path());
    assert!(ok, "a sound data directory verifies: {out}");

    let path = seg_files(dir.path(), "big").pop().unwrap();
    let seg = Segment::open(&path).unwrap();
    assert!(seg.meta.blocks.len() >= 3);
    let rows_b0 = u64::from(seg.meta.blocks[0].rows);
    let b1 = &seg.meta.blocks[1];
    let (rows_b1, at) = (u64::from(b1.rows), b1.offset + b1.col_range(COL_MSG).start as u64 + 7);
    drop(seg);
    flip(&path, at);

    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains(&path.display().to_string()) && out.contains("checksum"), "{out}");

    let s = Server::start(dir.path(), &[]);
    // a query that reads messages meets the damage: it answers from the other blocks, says so
    // in its cost, and from then on every query leaves the block out
    let (status, body, cost) = get_header(&s.base, "/api/v1/count?app=big&contains=ok", "logpipe-cost");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["count"], 20_000 - rows_b1);
    assert!(cost.unwrap().contains("blocks_corrupt=1"));
    let (status, body, cost) = get_header(&s.base, "/api/v1/logs?app=big&limit=10000&order=asc", "logpipe-cost");
    assert_eq!(status, 200);
    let events: Vec<u64> = body
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["message"].as_str().unwrap().split(' ').nth(1).unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(events.len(), 10_000);
    let want: Vec<u64> = (0..rows_b0).chain(rows_b0 + rows_b1..).take(10_000).collect();
    assert_eq!(events, want, "block 0 whole, block 1 left out, then block 2");
    assert!(cost.unwrap().contains("blocks_corrupt=1"));
    assert_eq!(count(&s.base, "app=other"), 1, "other partitions untouched");
    assert_eq!(get(&s.base, "/ready").0, 200, "reads and writes go on");
    assert_eq!(ingest(&s.base, &ndjson(&[json!({"app": "big", "message": "after"})])).0, 200);
}

#[test]
fn a_corrupt_wal_frame_is_found_by_verify_and_cut_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    for i in 0..3 {
        assert_eq!(ingest(&s.base, &ndjson(&[json!({"app": "w", "message": format!("frame {i}")})])).0, 200);
    }
    s.crash();
    let wal = std::fs::read_dir(dir.path().join("wal")).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let len = std::fs::metadata(&wal).unwrap().len();
    flip(&wal, len - 3);
    let (ok, out) = verify(dir.path());
    assert!(!ok);
    assert!(out.contains("wal") && out.contains("checksum mismatch"), "{out}");
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), len, "verify changes nothing");
    // replay keeps the intact frames before the damage
    let s = Server::start(dir.path(), &[]);
    assert_eq!(count(&s.base, "app=w"), 2);
}

#[test]
fn a_damaged_idempotency_keys_file_is_found_by_verify_and_ignored_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let body = ndjson(&[json!({"app": "k", "message": "keyed"})]);
    assert_eq!(post(&s.base, "/api/v1/logs", body.as_bytes(), &[("Idempotency-Key", "batch-1")]).0, 200);
    // the flush at shutdown saves the keys of the window before the WAL holding them goes
    assert!(s.stop().success());
    let keys = dir.path().join("idempotency.keys");
    let len = std::fs::metadata(&keys).unwrap().len();
    assert!(verify(dir.path()).0);
    flip(&keys, len / 2);
    let (ok, out) = verify(dir.path());
    assert!(!ok);
    assert!(out.contains("idempotency.keys") && out.contains("checksum mismatch"), "{out}");
    // the server starts without it, with every record
    let s = Server::start(dir.path(), &[]);
    assert_eq!(count(&s.base, "app=k"), 1);
}
