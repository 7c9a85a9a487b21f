//! LEB128 varints and zigzag, the integer encoding of every logpipe file.

pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A bounds-checked reader over an encoded buffer; every read fails cleanly past the end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The buffer ended early or held an impossible value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.buf.get(self.pos).ok_or(Malformed)?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(Malformed);
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(Malformed);
            }
        }
    }

    pub fn i64(&mut self) -> Result<i64, Malformed> {
        let v = self.u64()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A length that must fit in what is left of the buffer times `unit` bytes per item.
    pub fn len(&mut self, unit: usize) -> Result<usize, Malformed> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(unit.max(1) as u64) > left {
            return Err(Malformed);
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.len(1)?;
        self.take(n)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed)?;
        let s = self.buf.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(s)
    }

    pub fn u64_fixed(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| Malformed)?))
    }

    pub fn str(&mut self) -> Result<&'a str, Malformed> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(us in proptest::collection::vec(any::<u64>(), 0..50), is in proptest::collection::vec(any::<i64>(), 0..50)) {
            let mut out = Vec::new();
            for &u in &us { put_u64(&mut out, u); }
            for &i in &is { put_i64(&mut out, i); }
            let mut r = Reader::new(&out);
            for &u in &us { prop_assert_eq!(r.u64().unwrap(), u); }
            for &i in &is { prop_assert_eq!(r.i64().unwrap(), i); }
            prop_assert!(r.is_empty());
            prop_assert!(r.u64().is_err());
        }
    }
}
