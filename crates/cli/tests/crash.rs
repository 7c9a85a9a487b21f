//! The kill campaign: SIGKILL at random moments while clients ingest (with memtables small
//! enough that kills also land during WAL appends, segment writes and merges). After every
//! restart the server must be ready with no corrupt file; at the end every acknowledged batch
//! must be there exactly once, every batch whole or absent, and counts must agree with the
//! records.
//!
//! `LOGPIPE_CRASH_CYCLES` sets the number of kills (20 by default, as in CI);
//! `LOGPIPE_CRASH_SEED` replays a campaign (the seed is printed). docs/RELIABILITY.md has the
//! long runs.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const BATCH: usize = 50;
const CLIENTS: usize = 4;

/// A small xorshift generator: the campaign's kill times, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // small memtables so kills also land during flushes and merges
    let opts = ["--memtable-flush-bytes", "200000", "--max-segments-per-partition", "1"];
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let cycles = env_u64("LOGPIPE_CRASH_CYCLES").unwrap_or(20) as usize;
    let seed = env_u64("LOGPIPE_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("kill campaign: {cycles} cycles, LOGPIPE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mut flushes = 0;
    let mut merges = 0;
    for cycle in 0..cycles {
        let s = Server::start(dir.path(), &opts);
        assert_eq!(
            metric(&s.base, "logpipe_corrupt_files_total"),
            Some(0),
            "cycle {cycle}: a corrupt file after a kill"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (base, stop, acked) = (s.base.clone(), stop.clone(), acked.clone());
            // batch numbers never repeat: cycle, client, sequence
            let first = cycle as u64 * 10_000_000 + c as u64 * 1_000_000;
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
                    let ok = try_ingest(&base, &body) == Some(200);
                    if ok {
                        acked.lock().unwrap().push(b);
                    }
                    b += 1;
                }
            }));
        }
        // kill at a random moment: early (during start-up work and the first appends) as well
        // as late (during flushes and merges)
        std::thread::sleep(Duration::from_millis(50 + rng.next() % 1500));
        flushes += metric(&s.base, "logpipe_flushes_total").unwrap_or(0);
        merges += metric(&s.base, "logpipe_merges_total").unwrap_or(0);
        s.crash();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.join();
        }
    }

    let s = Server::start(dir.path(), &opts);
    assert_eq!(metric(&s.base, "logpipe_corrupt_files_total"), Some(0));
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
    eprintln!(
        "kill campaign: {cycles} kills (seed {seed}), {} batches acknowledged, {} stored (the rest were in flight \
         at a kill), 0 lost, 0 duplicated, 0 partial; {flushes} flushes and {merges} merges seen before the kills",
        acked.len(),
        per_batch.len()
    );
}
