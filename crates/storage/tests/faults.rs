//! Injected faults (fail points in the WAL): a full disk refuses the batch and writing goes on
//! once there is room; a failed fsync or file creation stops writes, never acknowledges, and
//! reads keep working. Fail points are process-wide, so these tests take turns.

use std::sync::Mutex;

use logpipe_model::{AppName, Record};
use logpipe_storage::{Engine, EngineConfig, IdempotencyKey, IngestError, Query, Request, Stored};

static SERIAL: Mutex<()> = Mutex::new(());

fn recs(tag: &str, n: usize) -> Vec<Record> {
    let app = AppName::parse("f").unwrap();
    (0..n)
        .map(|i| Record {
            app: app.clone(),
            ts: 1_735_689_600_000_000_000 + i as i64,
            message: format!("{tag} {i}"),
            tags: vec![],
        })
        .collect()
}

fn count(e: &Engine) -> u64 {
    match e.query(&Query::default(), &Request::Count).unwrap() {
        logpipe_storage::Answer::Count(n) => n,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_full_disk_refuses_the_batch_and_writing_resumes_with_room() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    engine.ingest(recs("before", 10)).unwrap();

    // the write stops half way with ENOSPC: refused, nothing kept, the log not stopped
    fail::cfg("wal::write", "return(enospc)").unwrap();
    assert!(matches!(engine.ingest(recs("full", 10)), Err(IngestError::NoSpace(_))));
    // a keyed batch refused this way must not answer its retry as stored
    let key = IdempotencyKey { key: "k".into(), body_hash: 1 };
    let refused = engine.submit_keyed(recs("keyed", 5), Some(key.clone())).unwrap().blocking_recv().unwrap();
    assert!(matches!(refused, Err(IngestError::NoSpace(_))));
    assert!(engine.poisoned().is_none());
    fail::remove("wal::write");

    engine.ingest(recs("after", 10)).unwrap();
    let retried = engine.submit_keyed(recs("keyed", 5), Some(key)).unwrap().blocking_recv().unwrap();
    assert_eq!(retried.unwrap(), Stored::New, "the retry is stored: the refused attempt left nothing");
    assert_eq!(count(&engine), 25);
    // the torn half-write was cut back: every frame in the log is whole and in order
    let stats = logpipe_wal::verify(&dir.path().join("wal")).unwrap();
    assert!(stats.cut.is_empty(), "{:?}", stats.cut);
    assert_eq!(stats.frames, 3);
    engine.close().unwrap();
    drop(engine);
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    assert_eq!(count(&engine), 25);
    scenario.teardown();
}

#[test]
fn a_failed_fsync_stops_writes_and_reads_go_on() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    engine.ingest(recs("acked", 10)).unwrap();
    fail::cfg("wal::sync", "return").unwrap();
    assert!(matches!(engine.ingest(recs("never", 10)), Err(IngestError::Stopped(_))));
    fail::remove("wal::sync");
    // after a failed fsync the kernel may have dropped the data: writes stay stopped
    assert!(engine.poisoned().is_some());
    assert!(matches!(engine.ingest(recs("later", 1)), Err(IngestError::Stopped(_))));
    assert_eq!(count(&engine), 10, "reads go on, and the failed batch was never made visible");
    drop(engine);
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    assert!(count(&engine) >= 10, "everything acknowledged survives a restart");
    engine.ingest(recs("restarted", 1)).unwrap();
    scenario.teardown();
}

#[test]
fn a_failed_wal_rotation_stops_writes_and_reads_go_on() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    // creating the next WAL file, and syncing the directory that holds it
    for point in ["wal::create", "wal::sync_dir"] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        engine.ingest(recs("acked", 10)).unwrap();
        fail::cfg(point, "return").unwrap();
        assert!(engine.flush().is_err(), "{point}");
        fail::remove(point);
        assert!(engine.poisoned().is_some(), "{point}");
        assert!(matches!(engine.ingest(recs("later", 1)), Err(IngestError::Stopped(_))), "{point}");
        assert_eq!(count(&engine), 10, "{point}");
        drop(engine);
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        assert_eq!(count(&engine), 10, "{point}");
    }
    scenario.teardown();
}

/// Files under `dir` whose name ends with `suffix`.
fn files(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out
}

const SEGMENT_POINTS: [&str; 4] = ["segment::write", "segment::sync", "segment::rename", "storage::sync_dir"];

#[test]
fn a_failed_segment_write_stops_writes_and_leaves_no_file() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    for point in SEGMENT_POINTS {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        engine.ingest(recs("acked", 10)).unwrap();
        fail::cfg(point, "return").unwrap();
        assert!(engine.flush().is_err(), "{point}");
        fail::remove(point);
        // the records are still in the WAL and in memory: served, and not written twice
        assert!(engine.poisoned().is_some(), "{point}");
        assert!(matches!(engine.ingest(recs("later", 1)), Err(IngestError::Stopped(_))), "{point}");
        assert_eq!(count(&engine), 10, "{point}");
        assert_eq!(files(dir.path(), ".tmp"), Vec::<std::path::PathBuf>::new(), "{point}");
        assert_eq!(files(dir.path(), ".seg"), Vec::<std::path::PathBuf>::new(), "{point}: nothing half published");
        drop(engine);
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        assert_eq!(count(&engine), 10, "{point}: every acknowledged record once after a restart");
        engine.ingest(recs("restarted", 1)).unwrap();
        engine.flush().unwrap();
        assert_eq!(files(dir.path(), ".seg").len(), 1, "{point}");
    }
    scenario.teardown();
}

#[test]
fn a_failed_merge_keeps_its_inputs_and_is_retried() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    for point in SEGMENT_POINTS {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(dir.path());
        cfg.max_segments_per_partition = 1;
        cfg.maintenance_interval = std::time::Duration::from_secs(3600);
        let engine = Engine::open(cfg.clone()).unwrap();
        for i in 0..3 {
            engine.ingest(recs(&format!("part{i}"), 10)).unwrap();
            engine.flush().unwrap();
        }
        assert_eq!(engine.stats().segments, 3);
        fail::cfg(point, "return").unwrap();
        assert!(engine.merge_all().is_err(), "{point}");
        fail::remove(point);
        // a merge is background work: its failure stops nothing and loses nothing
        assert!(engine.poisoned().is_none(), "{point}");
        assert_eq!((engine.stats().segments, count(&engine)), (3, 30), "{point}");
        assert_eq!(files(dir.path(), ".tmp"), Vec::<std::path::PathBuf>::new(), "{point}");
        assert_eq!(files(dir.path(), ".seg").len(), 3, "{point}");
        engine.merge_all().unwrap();
        assert_eq!((engine.stats().segments, count(&engine)), (1, 30), "{point}");
        engine.close().unwrap();
        drop(engine);
        let engine = Engine::open(cfg).unwrap();
        assert_eq!((engine.stats().segments, count(&engine)), (1, 30), "{point}");
    }
    scenario.teardown();
}
