//! A damaged block found by a merge: the block is quarantined, its segment is left out of
//! merges from then on (kept on disk as it is, served without that block), and the other
//! segments of the partition merge as usual.

use logpipe_model::{AppName, Record};
use logpipe_storage::{Answer, Engine, EngineConfig, Query, Request};

fn recs(tag: &str, n: usize) -> Vec<Record> {
    let app = AppName::parse("d").unwrap();
    (0..n)
        .map(|i| Record {
            app: app.clone(),
            ts: 1_735_689_600_000_000_000 + i as i64,
            message: format!("{tag} {i}"),
            tags: vec![format!("part={tag}")],
        })
        .collect()
}

fn count(e: &Engine) -> u64 {
    match e.query(&Query::default(), &Request::Count).unwrap() {
        Answer::Count(n) => n,
        other => panic!("{other:?}"),
    }
}

fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(segments(&p));
        } else if p.extension().is_some_and(|x| x == "seg") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn merges_leave_a_damaged_segment_alone_and_merge_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.max_segments_per_partition = 1;
    cfg.maintenance_interval = std::time::Duration::from_secs(3600);
    let engine = Engine::open(cfg.clone()).unwrap();
    for part in ["a", "b", "c"] {
        engine.ingest(recs(part, 10)).unwrap();
        engine.flush().unwrap();
    }
    let files = segments(dir.path());
    assert_eq!(files.len(), 3);
    // one byte of the second segment's only block (its timestamps column starts at 16)
    let damaged = &files[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    bytes[17] ^= 0x55;
    std::fs::write(damaged, &bytes).unwrap();

    // the merge that meets the damage fails, and quarantines the block; the next leaves
    // that segment out and merges the other two
    assert!(engine.merge_all().is_err());
    engine.merge_all().unwrap();
    assert_eq!(engine.stats().segments, 2);
    assert!(damaged.exists(), "the damaged bytes are kept for an operator");
    assert_eq!(std::fs::read(damaged).unwrap(), bytes);
    assert_eq!(count(&engine), 20, "the undamaged records, each once");
    engine.merge_all().unwrap();
    assert_eq!(engine.stats().segments, 2, "no merge is tried again on the damaged segment");
    // segments are named in the order they were written: the damaged one held part b
    for (part, want) in [("a", 10), ("b", 0), ("c", 10)] {
        let q = Query { tags_all: vec![format!("part={part}")], ..Query::default() };
        match engine.query(&q, &Request::Count).unwrap() {
            Answer::Count(n) => assert_eq!(n, want, "part {part}"),
            other => panic!("{other:?}"),
        }
    }
}
