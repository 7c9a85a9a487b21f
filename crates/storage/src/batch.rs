//! The WAL payload: one acknowledged ingest batch, encoded compactly.
//!
//! ```text
//! batch  := version u8 (=1) | count varint | record*
//! record := app bytes | ts zigzag | message bytes | ntags varint | tag bytes*
//! bytes  := len varint | raw
//! ```

use logpipe_model::{AppName, Record};

use crate::varint::{self, Malformed, Reader};

const BATCH_VERSION: u8 = 1;

pub fn encode(records: &[Record]) -> Vec<u8> {
    let size: usize =
        records.iter().map(|r| r.message.len() + r.tags.iter().map(|t| t.len() + 2).sum::<usize>() + 24).sum();
    let mut out = Vec::with_capacity(size + 8);
    out.push(BATCH_VERSION);
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
    let mut r = Reader::new(buf);
    if r.take(1)? != [BATCH_VERSION] {
        return Err(Malformed);
    }
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
    Ok(out)
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
    }
}
