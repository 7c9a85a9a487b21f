//! Injected faults (fail points in the WAL and the segment writer): a full disk refuses the
//! batch and writing goes on once there is room; a failed WAL fsync or file creation stops
//! writes, never acknowledges, and reads keep working; a failed flush is retried and writes
//! wait for it. Fail points are process-wide, so these tests take turns.

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

#[test]
fn a_full_disk_at_wal_rotation_refuses_writes_until_there_is_room() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    engine.ingest(recs("acked", 10)).unwrap();
    fail::cfg("wal::create", "return(enospc)").unwrap();
    assert!(engine.flush().is_err());
    // the current WAL file goes on; writes get NoSpace (507) while the next one cannot start
    assert!(engine.poisoned().is_none());
    assert!(matches!(engine.ingest(recs("refused", 1)), Err(IngestError::NoSpace(_))));
    assert_eq!(count(&engine), 10);
    fail::remove("wal::create");
    // the writer tries again on its next tick
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.ingest(recs("later", 1)).is_err() {
        assert!(std::time::Instant::now() < deadline, "writes did not resume");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    engine.flush().unwrap();
    assert_eq!(count(&engine), 11);
    drop(engine);
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    assert_eq!(count(&engine), 11, "every acknowledged record once after a restart");
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

fn recs_of(app: &str, tag: &str, n: usize) -> Vec<Record> {
    let app = AppName::parse(app).unwrap();
    recs(tag, n).into_iter().map(|r| Record { app: app.clone(), ..r }).collect()
}

#[test]
fn a_failed_segment_write_is_retried_and_writing_resumes() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    for (point, action) in [
        ("segment::write", "return"),
        ("segment::write", "return(enospc)"),
        ("segment::sync", "return"),
        ("segment::rename", "return"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        engine.ingest(recs_of("f", "acked", 10)).unwrap();
        engine.ingest(recs_of("g", "acked", 10)).unwrap();
        // the first of the two partitions is written, the second fails
        fail::cfg(point, &format!("1*off->{action}")).unwrap();
        assert!(engine.flush().is_err(), "{point}");
        // nothing of the failed flush is left on disk, so it is retried; writes wait for it
        assert!(engine.poisoned().is_none(), "{point}");
        let refused = engine.ingest(recs_of("f", "refused", 1));
        match action {
            "return(enospc)" => assert!(matches!(refused, Err(IngestError::NoSpace(_))), "{point}: {refused:?}"),
            _ => assert!(matches!(refused, Err(IngestError::Retrying(_))), "{point}: {refused:?}"),
        }
        assert_eq!(count(&engine), 20, "{point}: served from memory meanwhile");
        assert_eq!(files(dir.path(), ".tmp"), Vec::<std::path::PathBuf>::new(), "{point}");
        assert_eq!(files(dir.path(), ".seg"), Vec::<std::path::PathBuf>::new(), "{point}: the written half taken back");

        // the fault clears: the retry succeeds and writing resumes
        fail::remove(point);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while engine.flush().is_err() {
            assert!(std::time::Instant::now() < deadline, "{point}: the flush was not retried");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        engine.ingest(recs_of("f", "later", 1)).unwrap();
        assert_eq!(count(&engine), 21, "{point}");
        assert_eq!(files(dir.path(), ".seg").len(), 2, "{point}: each partition written once");
        drop(engine);
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        assert_eq!(count(&engine), 21, "{point}: every acknowledged record once after a restart");
    }
    scenario.teardown();
}

#[test]
fn a_segment_whose_publication_is_uncertain_stops_writes() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    let point = "storage::sync_dir";
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    engine.ingest(recs("acked", 10)).unwrap();
    fail::cfg(point, "return").unwrap();
    assert!(engine.flush().is_err());
    fail::remove(point);
    // the segment was renamed into place but its directory entry may not survive a crash:
    // a retry could leave it twice, so writes stop; the records are in the WAL and in memory
    assert!(engine.poisoned().is_some());
    assert!(matches!(engine.ingest(recs("later", 1)), Err(IngestError::Stopped(_))));
    assert_eq!(count(&engine), 10);
    assert_eq!(files(dir.path(), ".tmp"), Vec::<std::path::PathBuf>::new());
    drop(engine);
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    assert_eq!(count(&engine), 10, "every acknowledged record once after a restart");
    engine.ingest(recs("restarted", 1)).unwrap();
    engine.flush().unwrap();
    assert_eq!(count(&engine), 11);
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
