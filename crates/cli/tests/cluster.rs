//! Cluster mode's write path, on real engines on loopback: a three-node NATS cluster with
//! JetStream (`nats-server`), ingest nodes that publish to it and store nodes that pull from it,
//! each a real `logpipe serve` process.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::nats::NatsCluster;
use common::*;
use serde_json::json;

fn node(dir: &std::path::Path, name: &str, role: &str, nats: &NatsCluster) -> Server {
    let data = dir.join(name);
    Server::start(&data, &["--role", role, "--nats-url", &nats.url_list(), "--memtable-flush-interval", "1s"])
}

fn batch(app: &str, from: usize, n: usize) -> String {
    let lines: Vec<_> = (from..from + n)
        .map(|i| json!({"app": app, "timestamp": 1_700_000_000_000_000_000i64 + i as i64, "message": format!("record {i}"), "tags": [format!("k:{}", i % 5)]}))
        .collect();
    ndjson(&lines)
}

/// Every message of `app` on each store node, with how often it appears.
fn holdings(stores: &[&Server], app: &str) -> (HashMap<String, usize>, Vec<usize>) {
    let mut seen = HashMap::new();
    let mut per_node = Vec::new();
    for s in stores {
        let recs = stored(&s.base, app);
        per_node.push(recs.len());
        for r in recs {
            *seen.entry(r["message"].as_str().unwrap().to_string()).or_insert(0) += 1;
        }
    }
    (seen, per_node)
}

/// Polls until the store nodes hold `n` records of `app` in all (or the deadline passes).
fn wait_for(stores: &[&Server], app: &str, n: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (seen, per_node) = holdings(stores, app);
        let total: usize = per_node.iter().sum();
        if total >= n || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn batches_go_through_jetstream_to_the_store_nodes_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(dir.path(), 3);
    let store_a = node(dir.path(), "store-a", "store", &nats);
    let store_b = node(dir.path(), "store-b", "store", &nats);
    let ingest_1 = node(dir.path(), "ingest-1", "ingest", &nats);
    let ingest_2 = node(dir.path(), "ingest-2", "ingest", &nats);

    // 40 batches of 250 records, alternating between the two ingest nodes
    for b in 0..40 {
        let via = if b % 2 == 0 { &ingest_1 } else { &ingest_2 };
        let (status, body) = ingest(&via.base, &batch("orders", b * 250, 250));
        assert_eq!(status, 200, "{body}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["accepted"], 250);
    }
    let seen = wait_for(&[&store_a, &store_b], "orders", 10_000);
    assert_eq!(seen.len(), 10_000, "every acknowledged record reaches a store node");
    assert!(seen.values().all(|&c| c == 1), "and is stored once");

    // every node is in the registry; the stream and the store nodes' backlog are reported;
    // once every batch is acknowledged (just after it is stored), the work queue is empty
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = get_json(&ingest_1.base, "/api/v1/cluster");
        if status["cluster"]["stream"]["messages"] == 0 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["mode"], "cluster", "{status}");
    let nodes = status["cluster"]["nodes"].as_array().unwrap();
    let mut urls: Vec<(String, String)> =
        nodes.iter().map(|n| (n["url"].as_str().unwrap().to_string(), n["roles"].to_string())).collect();
    urls.sort();
    let mut want = vec![
        (store_a.base.clone(), r#"["store"]"#.to_string()),
        (store_b.base.clone(), r#"["store"]"#.to_string()),
        (ingest_1.base.clone(), r#"["ingest"]"#.to_string()),
        (ingest_2.base.clone(), r#"["ingest"]"#.to_string()),
    ];
    want.sort();
    assert_eq!(urls, want, "{status}");
    assert_eq!(status["cluster"]["stream"]["replicas"], 3);
    assert_eq!(status["cluster"]["stream"]["replicas_current"], 2, "{status}");
    assert_eq!(status["cluster"]["stream"]["messages"], 0, "{status}");
    assert_eq!(status["cluster"]["store_backlog"]["waiting"], 0, "{status}");
    assert_eq!(get_json(&store_a.base, "/api/v1/cluster")["this_node"].as_str().map(|s| !s.is_empty()), Some(true));

    // an ingest node holds no data; a store node takes no writes
    let (status, body, _) = get(&ingest_1.base, "/api/v1/count?app=orders");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no_store_role"), "{body}");
    let (status, body) = ingest(&store_a.base, &batch("orders", 0, 1));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no_ingest_role"), "{body}");

    // a retried batch with the same Idempotency-Key is acknowledged again and stored once
    let body = batch("retries", 0, 100);
    let headers = [("content-type", "application/x-ndjson"), ("idempotency-key", "batch-0001")];
    let (s1, b1) = post(&ingest_1.base, "/api/v1/logs", body.as_bytes(), &headers);
    assert_eq!(s1, 200, "{b1}");
    let (s2, b2) = post(&ingest_2.base, "/api/v1/logs", body.as_bytes(), &headers);
    assert_eq!(s2, 200, "{b2}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&b2).unwrap()["duplicate"], true, "{b2}");
    // the same key with another body is another batch
    let other = batch("retries", 100, 10);
    let (s3, b3) = post(&ingest_2.base, "/api/v1/logs", other.as_bytes(), &headers);
    assert_eq!(s3, 200, "{b3}");
    let seen = wait_for(&[&store_a, &store_b], "retries", 110);
    std::thread::sleep(Duration::from_secs(2)); // a duplicate would arrive by now
    let (seen_later, _) = holdings(&[&store_a, &store_b], "retries");
    assert_eq!(seen.len(), 110);
    assert_eq!(seen_later.len(), 110);
    assert!(seen_later.values().all(|&c| c == 1), "{seen_later:?}");

    // bad input is refused at the ingest node, before anything is published
    let (status, body) = ingest(&ingest_1.base, "{\"app\": \"bad app!\", \"message\": \"x\"}\n");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_killed_store_node_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(dir.path(), 3);
    let store_a = node(dir.path(), "store-a", "store", &nats);
    let store_b = node(dir.path(), "store-b", "store", &nats);
    let ingest_1 = node(dir.path(), "ingest-1", "ingest", &nats);

    let mut acked = 0;
    let mut send = |from: usize, to: usize| {
        for b in from..to {
            let (status, body) = ingest(&ingest_1.base, &batch("payments", b * 100, 100));
            assert_eq!(status, 200, "{body}");
            acked += 100;
        }
    };
    send(0, 20);
    // SIGKILL while it pulls: whatever it had not acknowledged goes to the other node
    store_a.crash();
    send(20, 60);
    // the killed node comes back on its data directory and replays its WAL
    let store_a = Server::start(&dir.path().join("store-a"), &["--role", "store", "--nats-url", &nats.url_list()]);
    let seen = wait_for(&[&store_a, &store_b], "payments", acked);
    let missing: Vec<usize> = (0..acked).filter(|i| !seen.contains_key(&format!("record {i}"))).collect();
    assert!(missing.is_empty(), "acknowledged records lost: {} (first {:?})", missing.len(), missing.first());
    // each node stores a batch at most once (its WAL and idempotency table, keyed by the
    // stream sequence); a batch stored by the killed node in the instant between its fsync
    // and its acknowledgement may also be stored by the other (docs/CLUSTER.md)
    for s in [&store_a, &store_b] {
        let (per_node, _) = holdings(&[s], "payments");
        assert!(per_node.values().all(|&c| c == 1), "a node stored a record twice");
    }
}

#[test]
fn ingest_goes_on_without_one_nats_node_and_answers_503_without_a_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsCluster::start(dir.path(), 3);
    let store = node(dir.path(), "store", "store", &nats);
    let ingest_1 = node(dir.path(), "ingest-1", "ingest", &nats);
    let (status, body) = ingest(&ingest_1.base, &batch("quorum", 0, 100));
    assert_eq!(status, 200, "{body}");

    nats.kill(2);
    // the stream keeps a quorum of two: after a leader election at most, writes go on
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = 100;
    let mut ok = 0;
    while ok < 5 {
        let (status, body, _) = ingest_retry_after(&ingest_1.base, &batch("quorum", next, 100));
        match status {
            200 => {
                ok += 1;
                next += 100;
            }
            503 => assert!(Instant::now() < deadline, "no write accepted with two of three NATS nodes: {body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let seen = wait_for(&[&store], "quorum", next);
    assert_eq!(seen.len(), next);

    nats.kill(1);
    // one node of three: no quorum, so nothing can be acknowledged; the client is told to retry
    let (status, body, retry_after) = ingest_retry_after(&ingest_1.base, &batch("quorum", next, 100));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stream_unavailable"), "{body}");
    assert!(retry_after.is_some());
    // what the store node holds is still served
    assert_eq!(count(&store.base, "app=quorum"), next as u64);

    // the quorum comes back: writes are accepted again
    nats.restart(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = ingest(&ingest_1.base, &batch("quorum", next, 100));
        if status == 200 {
            next += 100;
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "writes did not resume: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let seen = wait_for(&[&store], "quorum", next);
    assert!((0..next).all(|i| seen.contains_key(&format!("record {i}"))));
}

/// Speaks just enough of the NATS protocol to tell a client it is an old server.
fn fake_nats(version: &'static str) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let info = json!({"server_id": "FAKE", "server_name": "fake", "version": version, "proto": 1,
                    "max_payload": 1_048_576, "jetstream": true, "headers": true});
                let _ = write!(conn, "INFO {info}\r\n");
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line.starts_with("PING") {
                        let _ = conn.write_all(b"PONG\r\n");
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

#[test]
fn nats_servers_older_than_2_10_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = fake_nats("2.9.25");
    let out = Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .args(["serve", "--listen", "127.0.0.1:0", "--role", "ingest", "--nats-url"])
        .arg(format!("nats://127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NATS server 2.9.25 is too old") && stderr.contains("2.10 or newer"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "it must not start listening");
}

#[test]
fn roles_need_cluster_settings_and_the_query_role_needs_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let single = Server::start(&dir.path().join("single"), &[]);
    assert_eq!(
        get_json(&single.base, "/api/v1/cluster"),
        json!({"mode": "single", "roles": ["ingest", "query", "store"]})
    );
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_logpipe"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(run(&["--role", "ingest"]).contains("needs the cluster settings"));
    assert!(run(&["--role", "query", "--nats-url", "nats://127.0.0.1:1"]).contains("query without store"));
    assert!(run(&["--role", "bogus"]).contains("unknown role"));
}

#[test]
fn a_full_stream_answers_429_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(dir.path(), 1);
    let url = nats.url_list();
    let common = ["--nats-url", url.as_str(), "--nats-replicas", "1", "--nats-max-bytes", "20000"];
    let ingest_1 = Server::start(&dir.path().join("ingest"), &[&["--role", "ingest"], &common[..]].concat());
    // no store node takes anything: the stream fills up, and then refuses
    let mut acked = 0;
    let (status, body, retry_after) = loop {
        let (status, body, retry_after) = ingest_retry_after(&ingest_1.base, &batch("full", acked, 200));
        if status != 200 {
            break (status, body, retry_after);
        }
        acked += 200;
        // (the check below reads up to 10,000 records back)
        assert!(acked <= 10_000, "the stream never filled up");
    };
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("stream_full"), "{body}");
    assert!(retry_after.is_some());
    assert!(acked > 0);
    // a store node drains it: every acknowledged record arrives, the refused batch does not
    let store = Server::start(&dir.path().join("store"), &[&["--role", "store"], &common[..]].concat());
    let seen = wait_for(&[&store], "full", acked);
    assert_eq!(seen.len(), acked);
    assert!((0..acked).all(|i| seen.contains_key(&format!("record {i}"))));
    // and there is room again
    assert_eq!(ingest(&ingest_1.base, &batch("full", acked, 200)).0, 200);
}
