//! The kill campaign: SIGKILL at random moments while clients ingest (with memtables small
//! enough that kills also land during WAL appends, segment writes and merges). One more client
//! writes app `aged` into past days while each restart shortens that app's retention, so every
//! start-up drops old partitions and kills land during retention passes too. After every
//! restart the server must be ready with no corrupt file; at the end every acknowledged batch
//! must be there exactly once (for `aged`: if its day is still within retention, and gone if
//! not), every batch whole or absent, and counts must agree with the records.
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
const DAY: i64 = 86_400_000_000_000;
/// Retention of app `aged` in days: 60 at the first start, shortened at every restart to 20
/// at the last.
/// Days `aged` writes into at once. Every flush writes a segment into each of them: many days
/// with small memtables make many segments, more than the open-file budget holds.
const AGED_DAYS: u64 = 15;

fn aged_retention(cycle: usize, cycles: usize) -> i64 {
    60 - (cycle * 40 / cycles.max(1)) as i64
}

fn today() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    now.div_euclid(DAY)
}

/// Every record of `app` (paged with the cursor): records per batch number, the batch number
/// being the message's second word.
fn stored(base: &str, app: &str) -> HashMap<u64, usize> {
    let mut per_batch: HashMap<u64, usize> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/logs?app={app}&limit=10000");
        if let Some(c) = &cursor {
            path += &format!("&cursor={}", q(c));
        }
        let (status, body, next) = get(base, &path);
        assert_eq!(status, 200);
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let b: u64 = v["message"].as_str().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
            *per_batch.entry(b).or_default() += 1;
        }
        match next {
            Some(c) => cursor = Some(c),
            None => return per_batch,
        }
    }
}

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
    // small memtables so kills also land during flushes and merges; a small open-file budget
    // so segment files are closed and opened again all the time
    let opts = |retention: i64| {
        let mut o: Vec<String> =
            ["--memtable-flush-bytes", "200000", "--max-segments-per-partition", "1", "--max-open-segment-files", "16"]
                .map(String::from)
                .to_vec();
        o.extend(["--retention-app".to_string(), format!("aged={retention}d")]);
        o
    };
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    // batches of app `aged`: batch number and the day its records are in
    let aged: Arc<Mutex<Vec<(u64, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let cycles = env_u64("LOGPIPE_CRASH_CYCLES").unwrap_or(20) as usize;
    let seed = env_u64("LOGPIPE_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("kill campaign: {cycles} cycles, LOGPIPE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mut flushes = 0;
    let mut merges = 0;
    let mut dropped = 0;
    for cycle in 0..cycles {
        let retention = aged_retention(cycle, cycles);
        let o = opts(retention);
        let s = Server::start(dir.path(), &o.iter().map(String::as_str).collect::<Vec<_>>());
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
        {
            // app `aged`: each batch in one past day still within this start's retention
            let (base, stop, aged) = (s.base.clone(), stop.clone(), aged.clone());
            let mut b = cycle as u64 * 10_000_000 + 9_000_000;
            let mut pick = Rng(seed ^ (cycle as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            clients.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // the fifteen oldest days this start keeps: the next starts' shorter
                    // retention drops them
                    let day = today() - (retention - 2) + (pick.next() % AGED_DAYS) as i64;
                    let body: String = (0..BATCH)
                        .map(|i| {
                            let ts = day * DAY + 3_600_000_000_000 + i as i64;
                            format!("{{\"app\":\"aged\",\"timestamp\":{ts},\"message\":\"aged {b} record {i}\"}}\n")
                        })
                        .collect();
                    if try_ingest(&base, &body) == Some(200) {
                        aged.lock().unwrap().push((b, day));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    b += 1;
                }
            }));
        }
        // kill at a random moment: early (during start-up work and the first appends) as well
        // as late (during flushes and merges)
        std::thread::sleep(Duration::from_millis(50 + rng.next() % 1500));
        flushes += metric(&s.base, "logpipe_flushes_total").unwrap_or(0);
        merges += metric(&s.base, "logpipe_merges_total").unwrap_or(0);
        dropped += metric(&s.base, "logpipe_retention_partitions_dropped_total").unwrap_or(0);
        s.crash();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.join();
        }
    }

    let retention = aged_retention(cycles, cycles);
    let o = opts(retention);
    let s = Server::start(dir.path(), &o.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(metric(&s.base, "logpipe_corrupt_files_total"), Some(0));
    let per_batch = stored(&s.base, "crash");
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

    // app `aged`: the first retention pass after start-up drops the days past the last
    // retention; a day is dropped once it is more than `retention` days back
    let expired = format!("app=aged&to={}", (today() - retention) * DAY);
    for _ in 0..300 {
        if count(&s.base, &expired) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&s.base, &expired), 0, "the last retention pass dropped every expired day");
    let aged_stored = stored(&s.base, "aged");
    let aged = aged.lock().unwrap();
    let (mut kept, mut gone) = (0, 0);
    for &(b, day) in aged.iter() {
        let back = today() - day;
        let n = aged_stored.get(&b).copied();
        match back.cmp(&retention) {
            std::cmp::Ordering::Less => {
                assert_eq!(n, Some(BATCH), "aged batch {b} ({back} days back) is not all there");
                kept += 1;
            }
            std::cmp::Ordering::Greater => {
                assert_eq!(n, None, "aged batch {b} ({back} days back) outlived its retention");
                gone += 1;
            }
            // the boundary day: dropped or not depending on the hour of the last pass
            std::cmp::Ordering::Equal => assert!(n.is_none() || n == Some(BATCH), "aged batch {b}"),
        }
    }
    for (b, n) in &aged_stored {
        assert_eq!(*n, BATCH, "aged batch {b} is partly stored ({n} of {BATCH})");
    }
    eprintln!(
        "kill campaign: {cycles} kills (seed {seed}), {} batches acknowledged, {} stored (the rest were in flight \
         at a kill), 0 lost, 0 duplicated, 0 partial; {flushes} flushes, {merges} merges and {dropped} partitions \
         dropped by retention seen before the kills; app aged: {} batches acknowledged, {kept} kept, {gone} gone \
         with their days",
        acked.len(),
        per_batch.len(),
        aged.len()
    );
}
