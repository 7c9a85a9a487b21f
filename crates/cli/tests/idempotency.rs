//! `Idempotency-Key`: a batch sent again under its key is acknowledged again and stored once —
//! across concurrent retries, encodings, clean restarts and SIGKILL.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn batch(tag: &str) -> String {
    ndjson(
        &(0..3)
            .map(|i| json!({"app": "idem", "timestamp": 1_735_689_600_000_000_000u64 + i, "message": format!("{tag} {i}")}))
            .collect::<Vec<_>>(),
    )
}

fn send(base: &str, key: &str, body: &[u8], gzip: bool) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/x-ndjson"), ("idempotency-key", key)];
    if gzip {
        headers.push(("content-encoding", "gzip"));
    }
    let (status, text) = post(base, "/api/v1/logs", body, &headers);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn a_retried_batch_is_acknowledged_again_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let body = batch("first");
    let (status, v) = send(&s.base, "k-1", body.as_bytes(), false);
    assert_eq!((status, &v), (200, &json!({"accepted": 3})));
    let (status, v) = send(&s.base, "k-1", body.as_bytes(), false);
    assert_eq!((status, &v), (200, &json!({"accepted": 3, "duplicate": true})));
    // the same text gzipped is the same batch
    let (status, v) = send(&s.base, "k-1", &gz(body.as_bytes()), true);
    assert_eq!((status, &v["duplicate"]), (200, &json!(true)));
    // the key with other content is refused; nothing of it is stored
    let (status, v) = send(&s.base, "k-1", batch("other").as_bytes(), false);
    assert_eq!(status, 422);
    assert_eq!(v["error"]["code"], "idempotency_key_reused");
    assert_eq!(count(&s.base, "app=idem"), 3);
    // malformed keys
    for bad in ["", "has space", &"x".repeat(257)] {
        assert_eq!(send(&s.base, bad, body.as_bytes(), false).0, 400, "{bad:?}");
    }

    // concurrent retries of one new key: all acknowledged, one stored
    let body2 = batch("second");
    let answers: Vec<(u16, Value)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8).map(|_| sc.spawn(|| send(&s.base, "k-2", body2.as_bytes(), false))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|(st, v)| *st == 200 && v["accepted"] == 3), "{answers:?}");
    assert_eq!(answers.iter().filter(|(_, v)| v.get("duplicate").is_none()).count(), 1, "{answers:?}");
    assert_eq!(count(&s.base, "app=idem"), 6);

    // remembered across a clean restart (the WAL is gone: the keys file holds them)...
    assert!(s.stop().success());
    let s = Server::start(dir.path(), &[]);
    assert_eq!(send(&s.base, "k-1", body.as_bytes(), false).1["duplicate"], true);
    // ...and across SIGKILL right after the acknowledgement (the WAL holds the key)
    let body3 = batch("third");
    assert_eq!(send(&s.base, "k-3", body3.as_bytes(), false).1, json!({"accepted": 3}));
    s.crash();
    let s = Server::start(dir.path(), &[]);
    assert_eq!(send(&s.base, "k-3", body3.as_bytes(), false).1["duplicate"], true);
    assert_eq!(send(&s.base, "k-2", body2.as_bytes(), false).1["duplicate"], true);
    assert_eq!(count(&s.base, "app=idem"), 9);
    let metrics = get(&s.base, "/metrics").1;
    assert!(
        metrics.contains("logpipe_ingest_idempotent_replays_total 2"),
        "this process acknowledged two replays: {metrics}"
    );
}

#[test]
fn keys_are_forgotten_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--idempotency-window", "1s"]);
    let body = batch("w");
    assert_eq!(send(&s.base, "w-1", body.as_bytes(), false).1, json!({"accepted": 3}));
    assert_eq!(send(&s.base, "w-1", body.as_bytes(), false).1["duplicate"], true);
    // within the window the key keeps answering "duplicate"; once it is over, the same batch
    // is a new one
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = send(&s.base, "w-1", body.as_bytes(), false).1;
        if answer == json!({"accepted": 3}) {
            break;
        }
        assert_eq!(answer["duplicate"], true, "{answer}");
        assert!(std::time::Instant::now() < deadline, "the key was not forgotten after its 1 s window");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&s.base, "app=idem"), 6);
}
