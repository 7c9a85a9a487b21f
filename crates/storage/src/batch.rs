//! The WAL payload: one acknowledged ingest batch, encoded compactly.
//!
//! ```text
//! batch  := 1 | count varint | record*
//!         | 2 | key bytes | body hash u64-le | at zigzag | count varint | record*
//! record := app bytes | ts zigzag | message bytes | ntags varint | tag bytes*
//! bytes  := len varint | raw
//! ```
//!
//! Version 2 carries the batch's idempotency key (see `idempotency`) and when it was written.

use logpipe_model::{AppName, Record};

use crate::idempotency::IdempotencyKey;
use crate::varint::{self, Malformed, Reader};

const BATCH_VERSION: u8 = 1;
const KEYED_BATCH_VERSION: u8 = 2;

pub fn encode(records: &[Record]) -> Vec<u8> {
    encode_keyed(records, None)
}

/// A batch with its idempotency key and the time (ns) it was submitted.
pub fn encode_keyed(records: &[Record], key: Option<(&IdempotencyKey, i64)>) -> Vec<u8> {
    let size: usize =
        records.iter().map(|r| r.message.len() + r.tags.iter().map(|t| t.len() + 2).sum::<usize>() + 24).sum();
    let mut out = Vec::with_capacity(size + 8);
    match key {
        None => out.push(BATCH_VERSION),
        Some((k, at)) => {
            out.push(KEYED_BATCH_VERSION);
            varint::put_bytes(&mut out, k.key.as_bytes());
            out.extend_from_slice(&k.body_hash.to_le_bytes());
            varint::put_i64(&mut out, at);
        }
    }
    varint::put_u64(&mut out, records.len() as u64);
    for r in records {
        varint::put_bytes(&mut out, r.app.as_str().as_bytes());
        varint::put_i64(&mut out, r.ts);
        varint::put_bytes(&mut out, r.message.as_bytes());
        varint::put_u64(&mut out, r.tags.len() as u64);
        for t in &r.tags {
            varint::put_bytes(&mut out, t.as_bytes());
        }
    }
    out
}

pub fn decode(buf: &[u8]) -> Result<Vec<Record>, Malformed> {
    decode_keyed(buf).map(|(_, records)| records)
}

/// The records, and the key and submission time of a keyed batch.
pub type Decoded = (Option<(IdempotencyKey, i64)>, Vec<Record>);

pub fn decode_keyed(buf: &[u8]) -> Result<Decoded, Malformed> {
    let mut r = Reader::new(buf);
    let key = match r.take(1)?[0] {
        BATCH_VERSION => None,
        KEYED_BATCH_VERSION => {
            let key = r.str()?.to_owned();
            let body_hash = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| Malformed)?);
            Some((IdempotencyKey { key, body_hash }, r.i64()?))
        }
        _ => return Err(Malformed),
    };
    let n = r.len(4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let app = AppName::parse(r.str()?).map_err(|_| Malformed)?;
        let ts = r.i64()?;
        let message = r.str()?.to_owned();
        let nt = r.len(1)?;
        let mut tags = Vec::with_capacity(nt);
        for _ in 0..nt {
            tags.push(r.str()?.to_owned());
        }
        out.push(Record { app, ts, message, tags });
    }
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok((key, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let recs = vec![
            Record { app: AppName::parse("a").unwrap(), ts: -5, message: "héllo".into(), tags: vec!["k=v".into()] },
            Record { app: AppName::parse("b").unwrap(), ts: i64::MAX, message: String::new(), tags: vec![] },
        ];
        let enc = encode(&recs);
        assert_eq!(decode(&enc).unwrap(), recs);
        for cut in 0..enc.len() {
            assert!(decode(&enc[..cut]).is_err());
        }
        let key = IdempotencyKey { key: "retry-1".into(), body_hash: 42 };
        let enc = encode_keyed(&recs, Some((&key, 7)));
        assert_eq!(decode_keyed(&enc).unwrap(), (Some((key, 7)), recs.clone()));
        for cut in 0..enc.len() {
            assert!(decode_keyed(&enc[..cut]).is_err());
        }
    }
}
