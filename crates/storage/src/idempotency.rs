//! Idempotency keys: a batch submitted again under a key seen within the window is
//! acknowledged again (with what the first submission stored) and not stored twice.
//!
//! The WAL writer checks and records keys as it appends, so two submissions of one key are
//! ordered by the writer whatever their timing. A key travels in its batch's WAL payload
//! (replay restores it); when a flush rotates the WAL, the writer saves the keys still inside
//! the window to `idempotency.keys` (written to a temporary file, fsynced, renamed), before the
//! WAL files holding them can be deleted. A restart therefore remembers every key of the
//! window.
//!
//! ```text
//! idempotency.keys := magic "LPIDEM1\n" | count varint | entry* | crc32c u32-le (of all before)
//! entry            := key bytes | body hash u64-le | records varint | at zigzag (ns)
//! ```

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use crate::varint::{self, Reader};
use crate::{io_err, Result};

/// A client's key for one batch, and a hash of what the batch said (so that a key reused for
/// different content is refused rather than answered with the first content's result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub body_hash: u64,
}

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

const MAGIC: &[u8] = b"LPIDEM1\n";
pub(crate) const FILE: &str = "idempotency.keys";

#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub body_hash: u64,
    pub records: u64,
    /// When the key was first written, ns since the epoch.
    pub at: i64,
}

/// What the writer should do with a keyed batch.
pub(crate) enum Check {
    New,
    /// Seen within the window with the same content: acknowledge with these records.
    Again(u64),
    /// Seen within the window with other content.
    Conflict,
}

pub(crate) struct Table {
    map: HashMap<String, Seen>,
    /// Keys in the order they were written, for expiry and the size cap.
    order: VecDeque<(i64, String)>,
    window_ns: i64,
    max_keys: usize,
}

impl Table {
    pub fn new(window_ns: i64, max_keys: usize) -> Table {
        Table { map: HashMap::new(), order: VecDeque::new(), window_ns, max_keys }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn check(&self, k: &IdempotencyKey, now: i64) -> Check {
        match self.map.get(&k.key) {
            Some(s) if now - s.at < self.window_ns => {
                if s.body_hash == k.body_hash {
                    Check::Again(s.records)
                } else {
                    Check::Conflict
                }
            }
            _ => Check::New,
        }
    }

    pub fn insert(&mut self, key: String, seen: Seen) {
        if self.map.insert(key.clone(), seen).is_none() {
            self.order.push_back((seen.at, key));
        }
        while self.map.len() > self.max_keys {
            self.pop_oldest();
        }
    }

    /// Forgets a key whose batch was not written after all.
    pub fn forget(&mut self, key: &str) {
        self.map.remove(key);
    }

    /// Forgets keys older than the window.
    pub fn expire(&mut self, now: i64) {
        while self.order.front().is_some_and(|(at, _)| now - at >= self.window_ns) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((at, key)) = self.order.pop_front() {
            // a key written again after expiry is in `order` twice: drop it only at its last
            if self.map.get(&key).is_some_and(|s| s.at == at) {
                self.map.remove(&key);
            }
        }
    }

    /// Writes the keys inside the window to `dir/idempotency.keys`, durably.
    pub fn save(&mut self, dir: &Path, now: i64) -> Result<()> {
        self.expire(now);
        let mut out = MAGIC.to_vec();
        varint::put_u64(&mut out, self.map.len() as u64);
        for (key, s) in &self.map {
            varint::put_bytes(&mut out, key.as_bytes());
            out.extend_from_slice(&s.body_hash.to_le_bytes());
            varint::put_u64(&mut out, s.records);
            varint::put_i64(&mut out, s.at);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let path = dir.join(FILE);
        let tmp = dir.join(format!("{FILE}.tmp"));
        std::fs::write(&tmp, &out).map_err(io_err(&tmp))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
        Ok(())
    }

    /// Loads `dir/idempotency.keys` if there is one. A damaged file is reported and ignored:
    /// it costs the dedup of retries, never data.
    pub fn load(&mut self, dir: &Path, now: i64) {
        let path = dir.join(FILE);
        let Ok(buf) = std::fs::read(&path) else { return };
        match parse_file(&buf) {
            Some(entries) => {
                let mut entries: Vec<(String, Seen)> = entries;
                entries.sort_by_key(|e| e.1.at);
                for (k, s) in entries {
                    if now - s.at < self.window_ns {
                        self.insert(k, s);
                    }
                }
            }
            None => tracing::error!(path = %path.display(), "idempotency keys file is damaged; ignored"),
        }
    }
}

/// Checks `dir/idempotency.keys` the way a start-up reads it: `Ok(None)` when there is none,
/// the number of keys it holds, or what is wrong with it (the server then ignores it).
pub fn verify_file(dir: &Path) -> std::result::Result<Option<usize>, String> {
    let path = dir.join(FILE);
    let buf = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let why = match buf.len().checked_sub(4).map(|n| buf.split_at(n)) {
        None => "too short",
        Some((body, _)) if !body.starts_with(MAGIC) => "bad magic",
        Some((body, crc)) if crc32c::crc32c(body).to_le_bytes() != crc => "checksum mismatch",
        Some(_) => match parse_file(&buf) {
            Some(entries) => return Ok(Some(entries.len())),
            None => "malformed entries",
        },
    };
    Err(format!(
        "{}: {why} (the server ignores the file: batches retried under its keys within the window may be stored twice)",
        path.display()
    ))
}

pub(crate) fn parse_file(buf: &[u8]) -> Option<Vec<(String, Seen)>> {
    let (body, crc) = buf.split_at(buf.len().checked_sub(4)?);
    if crate::CHECK_CRC && crc32c::crc32c(body).to_le_bytes() != crc || !body.starts_with(MAGIC) {
        return None;
    }
    let mut r = Reader::new(&body[MAGIC.len()..]);
    let n = r.len(12).ok()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let key = r.str().ok()?.to_owned();
        let body_hash = u64::from_le_bytes(r.take(8).ok()?.try_into().ok()?);
        let records = r.u64().ok()?;
        let at = r.i64().ok()?;
        out.push((key, Seen { body_hash, records, at }));
    }
    r.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str, h: u64) -> IdempotencyKey {
        IdempotencyKey { key: k.into(), body_hash: h }
    }

    #[test]
    fn window_conflicts_cap_and_persistence() {
        let mut t = Table::new(100, 3);
        assert!(matches!(t.check(&key("a", 1), 0), Check::New));
        t.insert("a".into(), Seen { body_hash: 1, records: 5, at: 0 });
        assert!(matches!(t.check(&key("a", 1), 50), Check::Again(5)));
        assert!(matches!(t.check(&key("a", 2), 50), Check::Conflict));
        assert!(matches!(t.check(&key("a", 1), 100), Check::New), "outside the window");
        for (i, k) in ["b", "c", "d"].iter().enumerate() {
            t.insert(k.to_string(), Seen { body_hash: 1, records: 1, at: 10 + i as i64 });
        }
        assert_eq!(t.len(), 3, "capped: the oldest went");
        assert!(matches!(t.check(&key("a", 1), 50), Check::New));

        let dir = tempfile::tempdir().unwrap();
        t.save(dir.path(), 60).unwrap();
        let mut back = Table::new(100, 3);
        back.load(dir.path(), 60);
        assert!(matches!(back.check(&key("c", 1), 60), Check::Again(1)));
        let mut later = Table::new(100, 3);
        later.load(dir.path(), 111);
        assert_eq!(later.len(), 1, "only d (at 12) is still inside the window at 111");

        let mut bytes = std::fs::read(dir.path().join(FILE)).unwrap();
        bytes[10] ^= 1;
        std::fs::write(dir.path().join(FILE), bytes).unwrap();
        let mut damaged = Table::new(100, 3);
        damaged.load(dir.path(), 60);
        assert_eq!(damaged.len(), 0);
    }
}
