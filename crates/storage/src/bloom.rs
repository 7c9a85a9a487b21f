//! Per-block bloom filters over tags and message tokens.
//!
//! A block's filter holds the hash of every distinct tag (seeded apart from tokens) and of every
//! distinct lowercased message token. A query probes it before touching the block: if a tag it
//! requires, or a token that every match must contain, is definitely absent, the block is
//! skipped without reading or decompressing it.
//!
//! Tokens are maximal runs of ASCII letters and digits and of non-ASCII bytes; ASCII letters
//! are lowercased so one filter serves case-sensitive and case-insensitive search.
//!
//! The filter also holds every distinct *letter 4-gram*: each 4-letter window of a run of ASCII
//! letters, lowercased, coded in 20 bits. Tokens only help needles that hold a whole token (`lockup` in
//! `soft lockup - CPU`); a substring such as `user` (which also matches `superuser`) or
//! `orchid-sentinel` (whose two words touch the needle's ends) has no whole token, but every
//! 4-letter window of its letter runs must occur in a matching message's letter runs. Logs
//! repeat their templates, so a block holds only a thousand or two distinct letter 4-grams
//! (against tens of thousands of tokens): the filter grows by about a tenth.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bits per distinct key: about 1 % false positives with [`HASHES`] probes.
pub const BITS_PER_KEY: usize = 10;
pub const HASHES: u32 = 7;
const TAG_SEED: u64 = 0x7461_6773;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    words: Vec<u64>,
}

/// Hash of a token, with ASCII letters lowercased: FNV-1a over the bytes, then the murmur3
/// finalizer for avalanche. Computed while scanning a message, without copying the token.
pub fn token_hash(token: &[u8]) -> u64 {
    let mut h = TokenHasher::new();
    for &b in token {
        h.push(b);
    }
    h.finish()
}

#[derive(Clone, Copy)]
struct TokenHasher(u64);

impl TokenHasher {
    #[inline]
    fn new() -> Self {
        TokenHasher(0xcbf2_9ce4_8422_2325)
    }

    #[inline]
    fn push(&mut self, b: u8) {
        *self = self.folded(b.to_ascii_lowercase());
    }

    /// The hash with `b`, already lowercased, added.
    #[inline]
    fn folded(self, b: u8) -> Self {
        TokenHasher((self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
    }

    #[inline]
    fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Calls `f` with the hash of every token of `text` (see [`token_hash`]), in one pass.
#[inline]
pub fn for_each_token_hash(text: &[u8], mut f: impl FnMut(u64)) {
    for_each_token(text, |_, h| f(h));
}

/// Each byte as a token hashes it (ASCII letters lowercased), or 0 for a byte that separates
/// tokens (no token byte folds to 0): tokens are ASCII letters and digits and non-ASCII bytes.
static FOLD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c >= 0x80 {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

/// Calls `f` with the position and hash (see [`token_hash`]) of every token of `text`.
/// A token's letter 4-grams (see [`for_each_gram`]) lie inside it: the grams of a text are
/// the grams of its tokens.
#[inline]
pub fn for_each_token(text: &[u8], mut f: impl FnMut(std::ops::Range<usize>, u64)) {
    let mut i = 0;
    while i < text.len() {
        let c = FOLD[usize::from(text[i])];
        i += 1;
        if c == 0 {
            continue;
        }
        let start = i - 1;
        let mut h = TokenHasher::new().folded(c);
        while let Some(&b) = text.get(i) {
            let c = FOLD[usize::from(b)];
            if c == 0 {
                break;
            }
            h = h.folded(c);
            i += 1;
        }
        f(start..i, h.finish());
    }
}

/// Number of distinct letter 4-gram codes: four letters of 5 bits each.
pub const GRAMS: usize = 1 << 20;

/// The 5-bit code of an ASCII letter, case folded.
#[inline]
fn letter(b: u8) -> u32 {
    u32::from((b | 0x20) - b'a')
}

/// Calls `f` with the code (below [`GRAMS`]) of every 4-letter window of every run of ASCII
/// letters in `text`, lowercased.
#[inline]
pub fn for_each_gram(text: &[u8], mut f: impl FnMut(u32)) {
    let (mut code, mut run) = (0u32, 0u32);
    for &b in text {
        if b.is_ascii_alphabetic() {
            code = (code << 5 | letter(b)) & (GRAMS as u32 - 1);
            run += 1;
            if run >= 4 {
                f(code);
            }
        } else {
            run = 0;
        }
    }
}

/// Bloom key of a letter 4-gram code (kept apart from token hashes by the high bits).
#[inline]
pub fn gram_hash(code: u32) -> u64 {
    let mut h = u64::from(code) | 0x6772_616d << 32;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Bloom keys of the letter 4-grams a message holding `needle` must hold. With
/// `case_insensitive`, windows holding `k` or `s` are left out (see [`needle_tokens`]).
pub fn needle_grams(needle: &[u8], case_insensitive: bool) -> Vec<u64> {
    let mut keys = Vec::new();
    let (mut code, mut run, mut since_ks) = (0u32, 0usize, usize::MAX);
    for &b in needle {
        if b.is_ascii_alphabetic() {
            code = (code << 5 | letter(b)) & (GRAMS as u32 - 1);
            run += 1;
            since_ks = if matches!(b | 0x20, b'k' | b's') { 0 } else { since_ks.saturating_add(1) };
            if run >= 4 && !(case_insensitive && since_ks < 4) {
                keys.push(gram_hash(code));
            }
        } else {
            run = 0;
            code = 0;
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

pub fn tag_hash(tag: &str) -> u64 {
    xxh3_64_with_seed(tag.as_bytes(), TAG_SEED)
}

impl Bloom {
    /// Builds a filter holding `hashes` (duplicates allowed).
    pub fn build(hashes: &[u64]) -> Bloom {
        let bits = (hashes.len() * BITS_PER_KEY).max(64).next_multiple_of(64);
        let mut words = vec![0u64; bits / 64];
        for &h in hashes {
            for bit in probes(h, bits as u64) {
                words[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        Bloom { words }
    }

    pub fn from_words(words: Vec<u64>) -> Bloom {
        Bloom { words }
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// False means the key is certainly absent.
    pub fn may_contain(&self, hash: u64) -> bool {
        let bits = self.words.len() as u64 * 64;
        if bits == 0 {
            return true;
        }
        probes(hash, bits).all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

fn probes(h: u64, bits: u64) -> impl Iterator<Item = u64> {
    let h1 = h & 0xffff_ffff;
    let h2 = (h >> 32) | 1;
    (0..u64::from(HASHES)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

#[inline]
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Hashes of the tokens a message holding `needle` must hold whole: the runs with a separator
/// on both sides inside the needle. With `case_insensitive`, only tokens that can match nothing
/// but their ASCII case variants count: Unicode folds `k` and `s` together with the Kelvin sign
/// and the long s, which hash differently, so tokens holding them are left out.
pub fn needle_tokens(needle: &[u8], case_insensitive: bool) -> Vec<u64> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < needle.len() {
        if !is_token_byte(needle[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < needle.len() && is_token_byte(needle[i]) {
            i += 1;
        }
        let bounded = start > 0 && i < needle.len();
        let tok = &needle[start..i];
        let foldable = |t: &[u8]| t.is_ascii() && !t.iter().any(|b| matches!(b, b'k' | b'K' | b's' | b'S'));
        if bounded && (!case_insensitive || foldable(tok)) {
            out.push(token_hash(tok));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives() {
        let keys: Vec<u64> = (0..5000u64).map(|i| token_hash(format!("tok{i}").as_bytes())).collect();
        let b = Bloom::build(&keys);
        assert!(keys.iter().all(|&k| b.may_contain(k)));
        let fp = (0..10_000u64).filter(|i| b.may_contain(token_hash(format!("other{i}").as_bytes()))).count();
        assert!(fp < 300, "false positive rate too high: {fp}/10000");
    }

    #[test]
    fn tokens_and_needles() {
        // "req-0000": "req" touches the start and "0000" the end: neither is certain
        assert!(needle_tokens(b"req-0000", false).is_empty());
        assert_eq!(needle_tokens(b"soft lockup - CPU#3", false), vec![token_hash(b"lockup"), token_hash(b"cpu")]);
        let mut hashes = Vec::new();
        for_each_token_hash(b"Got EXCEPTION: req-00ab x", |h| hashes.push(h));
        let want: Vec<u64> =
            ["got", "exception", "req", "00ab", "x"].iter().map(|t| token_hash(t.as_bytes())).collect();
        assert_eq!(hashes, want);
        assert_eq!(token_hash(b"Exception"), token_hash(b"exception"));
    }

    #[test]
    fn grams_of_needles_are_grams_of_matching_messages() {
        let grams = |t: &[u8]| {
            let mut v = Vec::new();
            for_each_gram(t, |c| v.push(gram_hash(c)));
            v
        };
        let msg = b"a superuser logged in; orchid-sentinel2 fired; Kelvin";
        let have = grams(msg);
        for needle in [&b"user"[..], b"orchid-sentinel", b"USER", b"uperuse"] {
            let want = needle_grams(needle, false);
            assert!(!want.is_empty(), "{needle:?}");
            assert!(want.iter().all(|k| have.contains(k)), "{needle:?}");
        }
        assert!(needle_grams(b"abc-de", false).is_empty(), "runs under four letters give nothing");
        assert!(!needle_grams(b"missing", false).iter().all(|k| have.contains(k)));
        // a case-insensitive needle keeps only windows free of k and s
        assert_eq!(needle_grams(b"kelvin", true), needle_grams(b"elvin", false));
        assert!(needle_grams(b"sass", true).is_empty());
    }
}
