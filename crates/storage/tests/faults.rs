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
