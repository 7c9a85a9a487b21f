//! One WAL frame: `len u32 LE | crc32c(len ‖ payload) u32 LE | payload`.

/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload a frame may carry. Ingest bodies are capped well below this.
pub const MAX_FRAME_LEN: usize = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends inside the frame: a torn write.
    Truncated,
    /// The checksum does not match, or the length is impossible.
    Corrupt,
}

fn checksum(len: &[u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len), payload)
}

/// Appends the frame for `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(&len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes the frame at the start of `buf`: its payload and the bytes it spans.
pub fn decode_frame(buf: &[u8]) -> Result<(&[u8], usize), FrameError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Truncated);
    }
    let len_bytes: [u8; 4] = buf[0..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Corrupt);
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let end = FRAME_HEADER_LEN + len;
    if buf.len() < end {
        return Err(FrameError::Truncated);
    }
    let payload = &buf[FRAME_HEADER_LEN..end];
    if checksum(&len_bytes, payload) != crc {
        return Err(FrameError::Corrupt);
    }
    Ok((payload, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_torn_prefix() {
        let mut buf = Vec::new();
        encode_frame(b"hello wal", &mut buf);
        assert_eq!(decode_frame(&buf).unwrap(), (&b"hello wal"[..], buf.len()));
        for cut in 0..buf.len() {
            assert!(decode_frame(&buf[..cut]).is_err(), "prefix {cut} must not decode");
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(decode_frame(&bad).is_err(), "flip at {i} must be caught");
        }
    }
}
