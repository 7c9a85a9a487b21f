//! `--max-disk-usage`: the oldest partitions go first; when only today's data is left over the
//! budget, ingest gets 507 and nothing else is harmed; with room again, ingest resumes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Records whose messages do not compress: 64 pseudo-random hex digits each.
fn records(app: &str, day: &str, n: u64, seed: u64) -> String {
    let mut x = seed | 1;
    let lines: Vec<_> = (0..n)
        .map(|i| {
            let msg = noise(&mut x, 4);
            json!({"app": app, "timestamp": format!("{day}T00:00:{:02}.{:09}Z", i % 60, i), "message": msg})
        })
        .collect();
    ndjson(&lines)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_oldest_partitions_go_first_then_ingest_gets_507() {
    let dir = tempfile::tempdir().unwrap();
    // three old days of about 60 KB each on disk
    let s = Server::start(dir.path(), &[]);
    for (i, day) in ["2025-01-01", "2025-01-02", "2025-01-03"].iter().enumerate() {
        assert_eq!(ingest(&s.base, &records("old", day, 1000, i as u64 + 1)).0, 200);
    }
    assert!(s.stop().success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .args(["inspect", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sizes: Vec<u64> = v["partitions"].as_array().unwrap().iter().map(|p| p["bytes"].as_u64().unwrap()).collect();
    assert_eq!(sizes.len(), 3);

    // a budget that the three days exceed by half of the oldest: it goes, the others stay
    let budget = (sizes.iter().sum::<u64>() - sizes[0] / 2).to_string();
    let flags = ["--max-disk-usage", budget.as_str(), "--memtable-flush-bytes", "100000"];
    let s = Server::start(dir.path(), &flags);
    let day = |d: &str| count(&s.base, &format!("app=old&from={d}T00:00:00Z&to={d}T23:59:59Z"));
    wait_for("the oldest partition to be dropped", || day("2025-01-01") == 0);
    assert_eq!(day("2025-01-02") + day("2025-01-03"), 2000, "only what was needed went");

    // today's data is never dropped: past the budget, ingest is refused with 507
    let today = &logpipe_model::format_time(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64,
    )[..10];
    let mut refused = None;
    for i in 0..200u64 {
        let (status, body) = ingest(&s.base, &records("new", today, 1000, 100 + i));
        match status {
            200 => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("ingest past the budget must be refused");
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("insufficient_storage") && body.contains("--max-disk-usage"), "{body}");
    // reads go on, and everything acknowledged is there
    let accepted = count(&s.base, "app=new");
    assert!(accepted >= 1000);
    assert_eq!(get(&s.base, "/health").0, 200);
    assert!(s.stop().success());

    // room again (a larger budget): ingest resumes, nothing was lost
    let s = Server::start(dir.path(), &["--max-disk-usage", "100000000"]);
    assert_eq!(ingest(&s.base, &records("new", today, 10, 999)).0, 200);
    assert_eq!(count(&s.base, "app=new"), accepted + 10);
}
