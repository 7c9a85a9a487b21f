//! LEB128 varints and zigzag, the integer encoding of every logpipe file, and byte-plane
//! arrays for the long runs of integers in block columns.
//!
//! A byte-plane array stores `n` integers as a width `w` (the bytes the largest needs, 0 to 8)
//! followed by `w` planes of `n` bytes: every value's lowest byte, then every value's second
//! byte, and so on. Decoding is a branch-free loop, and the near-constant high planes compress
//! to almost nothing, where varints would interleave them with the noisy low bytes.

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

/// Appends `values` as a byte-plane array (see the module docs).
pub fn put_planes(out: &mut Vec<u8>, values: &[u64]) {
    let max = values.iter().copied().max().unwrap_or(0);
    let width = (8 - max.leading_zeros() as usize / 8) as u8;
    out.push(width);
    for plane in 0..width {
        out.extend(values.iter().map(|&v| (v >> (8 * plane)) as u8));
    }
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

    #[inline]
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.u64_long(),
        }
    }

    fn u64_long(&mut self) -> Result<u64, Malformed> {
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

    /// A byte-plane array of `n` values that must each fit in 32 bits, decoded plane by plane
    /// (for long arrays on hot paths: no call per value).
    pub fn u32_planes(&mut self, n: usize) -> Result<Vec<u32>, Malformed> {
        let width = *self.take(1)?.first().ok_or(Malformed)? as usize;
        if width > 4 {
            return Err(Malformed);
        }
        let bytes = self.take(n.checked_mul(width).ok_or(Malformed)?)?;
        let mut out = vec![0u32; n];
        for (plane, p) in bytes.chunks_exact(n.max(1)).enumerate() {
            let shift = 8 * plane;
            out.iter_mut().zip(p).for_each(|(v, &b)| *v |= u32::from(b) << shift);
        }
        Ok(out)
    }

    /// A byte-plane array of `n` values (see the module docs), each passed to `f` in order.
    pub fn planes(&mut self, n: usize, mut f: impl FnMut(u64)) -> Result<(), Malformed> {
        let width = *self.take(1)?.first().ok_or(Malformed)? as usize;
        if width > 8 {
            return Err(Malformed);
        }
        let bytes = self.take(n.checked_mul(width).ok_or(Malformed)?)?;
        match width {
            0 => (0..n).for_each(|_| f(0)),
            1 => bytes.iter().for_each(|&b| f(u64::from(b))),
            2 => {
                let (p0, p1) = bytes.split_at(n);
                p0.iter().zip(p1).for_each(|(&a, &b)| f(u64::from(a) | u64::from(b) << 8));
            }
            3 => {
                let (p0, rest) = bytes.split_at(n);
                let (p1, p2) = rest.split_at(n);
                for ((&a, &b), &c) in p0.iter().zip(p1).zip(p2) {
                    f(u64::from(a) | u64::from(b) << 8 | u64::from(c) << 16);
                }
            }
            4 => {
                let (p0, rest) = bytes.split_at(n);
                let (p1, rest) = rest.split_at(n);
                let (p2, p3) = rest.split_at(n);
                for (((&a, &b), &c), &d) in p0.iter().zip(p1).zip(p2).zip(p3) {
                    f(u64::from(a) | u64::from(b) << 8 | u64::from(c) << 16 | u64::from(d) << 24);
                }
            }
            _ => {
                for i in 0..n {
                    let mut v = 0u64;
                    for plane in (0..width).rev() {
                        v = v << 8 | u64::from(bytes[plane * n + i]);
                    }
                    f(v);
                }
            }
        }
        Ok(())
    }

    pub fn u32_fixed(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| Malformed)?))
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

        #[test]
        fn planes_round_trip(vs in proptest::collection::vec(any::<u64>(), 0..50), shift in 0u32..64) {
            let vs: Vec<u64> = vs.into_iter().map(|v| v >> shift).collect();
            let mut out = Vec::new();
            put_planes(&mut out, &vs);
            put_u64(&mut out, 7);
            let mut r = Reader::new(&out);
            let mut got = Vec::new();
            r.planes(vs.len(), |v| got.push(v)).unwrap();
            prop_assert_eq!(got, vs.clone());
            prop_assert_eq!(r.u64().unwrap(), 7);
            // one byte short is refused, not misread
            let short = Reader::new(&out[..out.len() - 2]).planes(vs.len(), |_| ());
            prop_assert!(short.is_err());
        }
    }
}
