//! A real full disk: the data directory on a small tmpfs that the test mounts (root is needed,
//! as CI has). Ingest fills it: every batch is acknowledged or refused with `507` (never another
//! error, never a crash), whether the WAL or a segment flush met `ENOSPC`; once there is room
//! again, ingest resumes without a restart; after a restart every acknowledged record is there
//! exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "logpipe-full-disk"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a {size} tmpfs at {} failed: this test needs root", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Batch `b`: 500 records whose messages do not compress (256 pseudo-random hex digits).
fn batch(b: u64) -> String {
    let mut x = b.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let lines: Vec<_> = (0..500u64)
        .map(|i| {
            let msg = noise(&mut x, 16);
            json!({"app": "full", "timestamp": format!("2026-01-01T00:{:02}:{:02}.{:09}Z", b % 60, i % 60, b * 1000 + i),
                   "tags": [format!("batch={b}")], "message": msg})
        })
        .collect();
    ndjson(&lines)
}

#[test]
fn a_full_disk_refuses_with_507_and_ingest_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(dir.path(), "12m");
    // room to give back later
    let ballast = dir.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 3 << 20]).unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--memtable-flush-bytes", "1000000"]);

    // fill the disk: acknowledged or 507, nothing else
    let (mut acked, mut refused, mut next) = (0u64, 0, 0u64);
    while refused < 20 {
        assert!(next < 2000, "the disk never filled");
        let (status, body) = ingest(&s.base, &batch(next));
        next += 1;
        match status {
            200 => acked += 1,
            507 => {
                assert!(body.contains("insufficient_storage"), "{body}");
                refused += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("batch {}: {other} {body}", next - 1),
        }
    }
    assert!(acked > 10, "only {acked} batches before the disk filled");
    // reads go on, with every acknowledged record and nothing of a refused batch
    assert_eq!(count(&s.base, "app=full"), acked * 500);
    assert_eq!(get(&s.base, "/health").0, 200);

    // room again: ingest resumes without a restart
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = ingest(&s.base, &batch(next));
        next += 1;
        match status {
            200 => {
                acked += 1;
                break;
            }
            507 | 503 => {
                assert!(Instant::now() < deadline, "ingest did not resume: {status} {body}");
                std::thread::sleep(Duration::from_millis(200));
            }
            other => panic!("{other} {body}"),
        }
    }
    for _ in 0..3 {
        let (status, body) = ingest(&s.base, &batch(next));
        next += 1;
        assert_eq!(status, 200, "{body}");
        acked += 1;
    }
    assert_eq!(count(&s.base, "app=full"), acked * 500);
    assert!(s.stop().success());

    // every acknowledged record exactly once after a restart, and the data dir verifies
    let s = Server::start(&data, &[]);
    assert_eq!(count(&s.base, "app=full"), acked * 500);
    assert!(s.stop().success());
    let verify = Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .args(["inspect", "--verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[test]
fn merges_wait_while_the_disk_is_nearly_full() {
    // 96 MiB with 40 MiB of ballast: less free than a merge's 64 MiB reserve for the WAL
    let dir = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(dir.path(), "96m");
    let ballast = dir.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 40 << 20]).unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--memtable-flush-bytes", "1", "--max-segments-per-partition", "2"]);
    for b in 0..8 {
        let (status, body) = ingest(&s.base, &batch(b));
        assert_eq!(status, 200, "{body}");
    }
    // every batch was flushed into a segment of its own, and none was merged
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&s.base, "logpipe_segments") != Some(8) {
        assert!(Instant::now() < deadline, "8 flushes did not publish 8 segments");
        std::thread::sleep(Duration::from_millis(100));
    }
    // no merge starts while the disk is nearly full: watched for 2 s (about two maintenance
    // rounds a second)
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(metric(&s.base, "logpipe_merges_total"), Some(0), "a merge ran with too little free space");
        assert_eq!(metric(&s.base, "logpipe_segments"), Some(8));
        std::thread::sleep(Duration::from_millis(100));
    }

    // room again: merges bring the partition back within its budget
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&s.base, "logpipe_segments").unwrap() > 2 {
        assert!(Instant::now() < deadline, "merges did not resume once there was room");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(&s.base, "logpipe_merges_total").unwrap() > 0);
    assert_eq!(count(&s.base, "app=full"), 8 * 500);
    assert!(s.stop().success());
}
