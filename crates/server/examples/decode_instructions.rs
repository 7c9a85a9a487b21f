//! Decodes 2,000 records of logpipe-bench's generator N times in one protocol's wire format, for
//! instruction counts that machine noise does not move:
//!
//!   cargo build --release -p logpipe-server --example decode_instructions
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!       target/release/examples/decode_instructions OtlpJson 10
//!
//! Instructions per record = (Ir at N=10 − Ir at N=0) / 20,000. `bench/decode_instructions.sh`
//! does this for every protocol.

use logpipe_bench::gen::{Dataset, Generator};
use logpipe_server::bench::{decode, encode, Sample, ALL};

/// The logpipe binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: decode_instructions PROTOCOL N   (PROTOCOL: {ALL:?})");
        std::process::exit(2);
    };
    let Some(p) = ALL.into_iter().find(|p| format!("{p:?}") == name) else {
        eprintln!("unknown protocol {name}; one of {ALL:?}");
        std::process::exit(2);
    };
    let records = Generator::new(Dataset::new(2_000)).records(0..2_000);
    let samples: Vec<Sample> = records.iter().map(|r| Sample::new(r.app, r.ts, &r.message, &r.tags)).collect();
    let body = encode(p, &samples);
    let mut records = 0;
    for _ in 0..n {
        records += std::hint::black_box(decode(p, std::hint::black_box(&body))).len();
    }
    println!("{p:?}: {records} records decoded");
}
