//! The process-wide memory limit (`--max-memory-bytes`).
//!
//! Every budget of its own (ingest bodies, the WAL queue, memtables, query results, tails)
//! bounds one consumer; this bounds their sum as the kernel sees it. Resident memory is read
//! every [`SAMPLE_EVERY`]; while it is over the limit new ingest requests get
//! `429 memory_pressure` before their body is read, so what is already admitted drains and
//! memory comes back down. Queries are still served: their own budget bounds them, and reads
//! must go on under a write flood.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;

use crate::ApiError;

pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// What one raw byte of an admitted ingest body may become before it is appended: the body,
/// its decompressed and decoded records, and their WAL frame, held at once.
pub const PENDING_GROWTH: u64 = 3;

pub(crate) struct MemoryLimit {
    /// Bytes; 0: no limit.
    limit: u64,
    resident: AtomicU64,
}

impl MemoryLimit {
    pub fn new(limit: u64) -> MemoryLimit {
        MemoryLimit { limit, resident: AtomicU64::new(resident_bytes().unwrap_or(0)) }
    }

    /// Reads resident memory again; returns it.
    pub fn sample(&self) -> u64 {
        let rss = resident_bytes().unwrap_or(0);
        self.resident.store(rss, Ordering::Relaxed);
        rss
    }

    /// `429 memory_pressure` when resident memory, plus what the ingest bodies admitted and
    /// this one (`pending` raw bytes in all) may still grow into, is over the limit.
    ///
    /// A body admitted now is read, decoded and appended after the sample that admitted it:
    /// counting it [`PENDING_GROWTH`] times is what makes the limit hold under a flood instead
    /// of being overshot by everything the admission queues took in before a sample saw it.
    /// Bodies already decoded are counted twice (in resident memory and in `pending`), which
    /// only makes the limit err on the safe side.
    pub fn check(&self, pending: u64) -> Result<(), ApiError> {
        let rss = self.resident.load(Ordering::Relaxed);
        let growth = pending.saturating_mul(PENDING_GROWTH);
        if self.limit == 0 || rss.saturating_add(growth) <= self.limit {
            return Ok(());
        }
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "memory_pressure",
            format!(
                "the server's resident memory ({} MiB) and the ingest bodies in flight ({} MiB) are over its \
                 limit of {} MiB (--max-memory-bytes); ingest resumes when it is back under",
                rss >> 20,
                pending >> 20,
                self.limit >> 20
            ),
        );
        e.retry_after = Some(1);
        Err(e)
    }
}

/// Resident memory of this process (`VmRSS`), bytes.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The default limit: 60 % of physical memory (`MemTotal`), or none if it cannot be read.
pub fn default_limit() -> u64 {
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else { return 0 };
    let total_kib: u64 = info
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    total_kib * 1024 / 10 * 6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_refuses_until_back_under() {
        let rss = resident_bytes().expect("linux /proc");
        assert!(rss > 0);
        let tight = MemoryLimit::new(rss / 2);
        let e = tight.check(0).unwrap_err();
        assert_eq!((e.status, e.code, e.retry_after), (StatusCode::TOO_MANY_REQUESTS, "memory_pressure", Some(1)));
        let roomy = MemoryLimit::new(rss * 4);
        assert!(roomy.check(0).is_ok());
        // bodies in flight count against the limit, with their growth
        let r = roomy.resident.load(Ordering::Relaxed);
        assert!(roomy.check((rss * 4 - r) / PENDING_GROWTH - 1).is_ok());
        assert!(roomy.check((rss * 4 - r) / PENDING_GROWTH + 1).is_err());
        assert!(MemoryLimit::new(0).check(u64::MAX).is_ok(), "0 is no limit");
        assert!(default_limit() > 0);
    }
}
