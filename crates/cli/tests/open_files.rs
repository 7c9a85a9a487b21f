//! Many partitions under a small open-file limit: segments do not each hold a descriptor for
//! ever, so flushes keep creating files, nothing stops, and every record is served — before
//! and after a restart that opens every segment again.

mod common;

use common::*;
use serde_json::json;

const APPS: usize = 30;
const DAYS: usize = 8;
const ROUNDS: usize = 4;

/// One batch holding `per` records for every (app, day): 240 partitions.
fn batch(round: usize, per: usize) -> String {
    let mut lines = Vec::new();
    for a in 0..APPS {
        for d in 0..DAYS {
            for i in 0..per {
                lines.push(json!({
                    "app": format!("app{a:02}"),
                    "timestamp": format!("2026-01-{:02}T{:02}:00:{:02}Z", d + 1, round, i),
                    "message": format!("round {round} record {i} of app{a:02} day {d}"),
                }));
            }
        }
    }
    ndjson(&lines)
}

#[test]
fn many_partitions_under_a_small_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    // 240 partitions × ROUNDS flushes (each batch is bigger than the memtable): without the
    // file cache the server ran out of its 200 descriptors in the second flush
    let flags =
        ["--max-open-segment-files", "32", "--memtable-flush-bytes", "10000", "--max-segments-per-partition", "8"];
    let s = Server::start_with_nofile(dir.path(), &flags, 200);
    for round in 0..ROUNDS {
        let (status, body) = ingest(&s.base, &batch(round, 5));
        assert_eq!(status, 200, "round {round}: {body}");
        // the next batch finds the previous one flushed
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while metric(&s.base, "logpipe_memtable_records") != Some(0) {
            assert!(std::time::Instant::now() < deadline, "round {round} not flushed");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let segments = metric(&s.base, "logpipe_segments").unwrap();
    assert!(segments >= (APPS * DAYS) as u64, "{segments} segments");
    let check = |base: &str, per_partition: usize| {
        for a in [0, 7, APPS - 1] {
            let n = count(base, &format!("app=app{a:02}&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"));
            assert_eq!(n, (DAYS * per_partition) as u64, "app{a:02}");
        }
        // a query over every partition: every segment read, most opened again
        let all = count(base, "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&q=record");
        assert_eq!(all, (APPS * DAYS * per_partition) as u64);
        let open = metric(base, "logpipe_open_segment_files").unwrap();
        assert!(open <= 32 + 4, "{open} segment files open for a budget of 32");
    };
    check(&s.base, ROUNDS * 5);
    assert!(metric(&s.base, "logpipe_segment_file_opens_total").unwrap() > 0);
    // writes were never stopped
    assert_eq!(ingest(&s.base, &batch(9, 1)).0, 200);
    assert!(s.stop().success());

    let s = Server::start_with_nofile(dir.path(), &flags, 200);
    check(&s.base, ROUNDS * 5 + 1);
    assert!(s.stop().success());
}
