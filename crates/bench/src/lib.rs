//! logpipe's own benchmark and correctness kit.
//!
//! - [`gen`]: a deterministic generator of realistic log records (14 apps with their own
//!   message templates, levels, hosts, envs, regions, request ids, IPs, bursts, late records,
//!   a span crossing midnight, and rare needles in exact numbers);
//! - [`queries`]: the query set, in the terms of the native query API;
//! - [`oracle`]: each query's exact answer, by brute force over the generated records;
//! - [`client`]: a loader (every batch sent once) and a runner that times each query against a
//!   server and checks its answer.
//!
//! The `logpipe-bench` binary puts them together (`logpipe-bench --help`); scripts in `bench/`
//! and `scripts/ci/` call it.

pub mod apps;
pub mod client;
pub mod gen;
pub mod oracle;
pub mod queries;
pub mod rng;
