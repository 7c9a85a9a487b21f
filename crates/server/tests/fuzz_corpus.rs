//! Replays every tracked fuzz input — the seeds in `fuzz/seeds/` and the inputs that once
//! crashed, in `fuzz/regressions/` — through the same entry points the fuzz targets call, so
//! `cargo test` catches a decoder regression without a fuzzer. See docs/RELIABILITY.md.

use std::path::PathBuf;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("batch", logpipe_storage::fuzzing::batch),
    ("block", logpipe_storage::fuzzing::block),
    ("segment", logpipe_storage::fuzzing::segment),
    ("wal", logpipe_storage::fuzzing::wal),
    ("idempotency_keys", logpipe_storage::fuzzing::idempotency_keys),
    ("query", logpipe_query::fuzzing::query),
    ("ingest", logpipe_server::fuzzing::ingest),
    ("params", logpipe_server::fuzzing::params),
    ("elastic_bulk", logpipe_server::fuzzing::elastic_bulk),
    ("otlp", logpipe_server::fuzzing::otlp),
    ("loki_push", logpipe_server::fuzzing::loki_push),
    ("vlogs_jsonline", logpipe_server::fuzzing::vlogs_jsonline),
    ("syslog", logpipe_server::fuzzing::syslog),
    ("logql", logpipe_server::fuzzing::logql),
];

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn every_kept_fuzz_input_is_handled() {
    for &(name, target) in TARGETS {
        let mut seen = 0;
        for dir in ["seeds", "regressions"] {
            let Ok(rd) = std::fs::read_dir(fuzz_dir().join(dir).join(name)) else { continue };
            for entry in rd {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let ok = std::panic::catch_unwind(|| target(&data));
                assert!(ok.is_ok(), "{name}: {} fails", path.display());
                seen += 1;
            }
        }
        assert!(seen > 0, "no kept inputs for fuzz target {name}");
    }
}

/// Every fuzz target in fuzz/Cargo.toml is replayed here, and nothing here is missing there.
#[test]
fn the_replay_covers_every_fuzz_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut declared: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "logpipe-fuzz")
        .collect();
    declared.sort_unstable();
    let mut replayed: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
    replayed.sort_unstable();
    assert_eq!(declared, replayed);
}
