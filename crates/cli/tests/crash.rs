//! SIGKILL while clients ingest: after restart every acknowledged record is there, and every
//! batch is there whole or not at all.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const BATCH: usize = 50;
const CLIENTS: usize = 4;
const CYCLES: usize = 3;

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // small memtables so kills also land during flushes and merges
    let opts = ["--memtable-flush-bytes", "200000", "--max-segments-per-partition", "2"];
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut next_batch = 0u64;
    for cycle in 0..CYCLES {
        let s = Server::start(dir.path(), &opts);
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (base, stop, acked) = (s.base.clone(), stop.clone(), acked.clone());
            let first = next_batch + c as u64 * 1_000_000;
            clients.push(std::thread::spawn(move || {
                let mut b = first;
                while !stop.load(Ordering::Relaxed) {
                    let body: String = (0..BATCH)
                        .map(|i| {
                            format!(
                                "{{\"app\":\"crash\",\"message\":\"batch {b} record {i} {}\"}}\n",
                                "x".repeat(i * 13)
                            )
                        })
                        .collect();
                    let ok = std::panic::catch_unwind(|| ingest(&base, &body)).map(|(s, _)| s == 200).unwrap_or(false);
                    if ok {
                        acked.lock().unwrap().push(b);
                    }
                    b += 1;
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(700 + 300 * cycle as u64));
        s.crash();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.join();
        }
        next_batch += 100_000;
    }

    let s = Server::start(dir.path(), &opts);
    let mut per_batch: HashMap<u64, usize> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/logs?app=crash&limit=10000".to_string();
        if let Some(c) = &cursor {
            path += &format!("&cursor={}", q(c));
        }
        let (status, body, next) = get(&s.base, &path);
        assert_eq!(status, 200);
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let b: u64 = v["message"].as_str().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
            *per_batch.entry(b).or_default() += 1;
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let acked = acked.lock().unwrap();
    assert!(acked.len() > 10, "the clients got too few acknowledgements ({}) to prove anything", acked.len());
    for b in acked.iter() {
        assert_eq!(per_batch.get(b).copied(), Some(BATCH), "acknowledged batch {b} is not all there");
    }
    for (b, n) in &per_batch {
        assert_eq!(*n, BATCH, "batch {b} is partly stored ({n} of {BATCH})");
    }
    let total: usize = per_batch.values().sum();
    assert_eq!(count(&s.base, "app=crash") as usize, total);
    eprintln!("{} batches acknowledged, {} stored (the rest were in flight at a kill)", acked.len(), per_batch.len());
}
