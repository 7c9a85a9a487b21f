//! Message templates: the message column of settled segments, split into the text that repeats
//! and the values that vary.
//!
//! Logs are printed from a few thousand format strings, so a block's messages are a few hundred
//! templates filled with numbers, ids and addresses. Each message is cut at its *variables* —
//! maximal runs of ASCII letters and digits that hold at least one digit (`4447`, `10`, `a0b6ed6709a1`,
//! `blk_-1608999687919862906` gives `blk_-` and a variable) — and the rest, the *template*, is
//! stored once per block. The variables are stored grouped by template, row after row, so the
//! variables of messages printed by one format string sit together, where zstd finds what they
//! share; interleaved with the template text, each one cost a match or a run of literals of
//! its own. (Grouping by position in the template as well compresses 3 % better, but spreads a
//! row's variables over the column: with them consecutive, a row is rebuilt with one cursor
//! per template, and rows a query does not return are skipped.)
//!
//! ```text
//! column    := 0xFF | ntemplates varint
//!              planes(variables per template * ntemplates)
//!              planes(piece length * pieces)   each template's variables + 1 literal pieces
//!              piece bytes concatenated
//!              planes(template id * rows)
//!              planes(variable length * variables) | variable bytes concatenated
//!                  variables ordered by (template, row, position in the row)
//! ```
//!
//! Decoding rebuilds the plain column exactly (any bytes, any UTF-8 or none, survive): a row is
//! its template's first piece, then each variable followed by the next piece. A plain column
//! starts with the width of its length planes (0 to 8), so the first byte tells them apart.
//! Blocks whose messages share little (more templates than half the rows) stay plain.

use rustc_hash::FxHashMap;

use crate::varint::{self, Malformed, Reader};

/// First byte of a message column in this encoding.
pub const MARKER: u8 = 0xFF;

/// Largest message column a block decodes to, whatever a damaged column claims.
const MAX_DECODED: u64 = 1 << 30;

/// Bytes of a variable: ASCII letters and digits.
static WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    t
};

/// Reused state for encoding message columns.
#[derive(Default)]
pub struct TemplateEncoder {
    /// Template key (each piece as varint length and bytes) → template id.
    ids: FxHashMap<Vec<u8>, u32>,
    /// Per template: its number of variables; then every template's piece lengths, and bytes.
    slots: Vec<u64>,
    pieces: Vec<u64>,
    text: Vec<u8>,
    /// Per row: its template, and where its variables start in `vars`.
    row_template: Vec<u32>,
    row_vars: Vec<u32>,
    /// Every variable of every row (start, end in the block's messages), in row order.
    vars: Vec<(u32, u32)>,
    key: Vec<u8>,
    row_pieces: Vec<(u32, u32)>,
    ints: Vec<u64>,
}

impl TemplateEncoder {
    /// Appends the template encoding of `msgs` (messages back to back, `lens` each) to `out`,
    /// or returns `false` and leaves `out` alone when the messages share too few templates
    /// for it to pay (the caller then writes the plain column).
    pub fn encode(&mut self, msgs: &[u8], lens: &[u32], out: &mut Vec<u8>) -> bool {
        self.clear();
        let rows = lens.len();
        let mut at = 0usize;
        for &len in lens {
            let m = &msgs[at..at + len as usize];
            self.split(m, at);
            at += len as usize;
            if self.slots.len() * 2 > rows.max(2) {
                self.clear();
                return false;
            }
        }
        out.push(MARKER);
        varint::put_u64(out, self.slots.len() as u64);
        varint::put_planes(out, &self.slots);
        varint::put_planes(out, &self.pieces);
        out.extend_from_slice(&self.text);
        self.ints.clear();
        self.ints.extend(self.row_template.iter().map(|&t| u64::from(t)));
        varint::put_planes(out, &self.ints);

        // rows grouped by template (a counting sort), then variables by (template, slot, row)
        let mut start = vec![0u32; self.slots.len() + 1];
        for &t in &self.row_template {
            start[t as usize + 1] += 1;
        }
        for t in 0..self.slots.len() {
            start[t + 1] += start[t];
        }
        let mut by_template = vec![0u32; rows];
        let mut next = start.clone();
        for (row, &t) in self.row_template.iter().enumerate() {
            by_template[next[t as usize] as usize] = row as u32;
            next[t as usize] += 1;
        }
        let mut order = Vec::with_capacity(self.vars.len());
        for (t, &k) in self.slots.iter().enumerate() {
            for &r in &by_template[start[t] as usize..start[t + 1] as usize] {
                let first = self.row_vars[r as usize] as usize;
                order.extend_from_slice(&self.vars[first..first + k as usize]);
            }
        }
        self.ints.clear();
        self.ints.extend(order.iter().map(|&(s, e)| u64::from(e - s)));
        varint::put_planes(out, &self.ints);
        for &(s, e) in &order {
            out.extend_from_slice(&msgs[s as usize..e as usize]);
        }
        true
    }

    fn clear(&mut self) {
        self.ids.clear();
        self.slots.clear();
        self.pieces.clear();
        self.text.clear();
        self.row_template.clear();
        self.row_vars.clear();
        self.vars.clear();
    }

    /// Cuts one message (at byte `base` of the block's messages) into pieces and variables.
    fn split(&mut self, m: &[u8], base: usize) {
        self.row_vars.push(self.vars.len() as u32);
        self.row_pieces.clear();
        let (mut i, mut lit) = (0, 0);
        while i < m.len() {
            if !WORD[m[i] as usize] {
                i += 1;
                continue;
            }
            let s = i;
            let mut digit = false;
            while i < m.len() && WORD[m[i] as usize] {
                digit |= m[i].is_ascii_digit();
                i += 1;
            }
            if digit {
                self.row_pieces.push((lit as u32, s as u32));
                self.vars.push(((base + s) as u32, (base + i) as u32));
                lit = i;
            }
        }
        self.row_pieces.push((lit as u32, m.len() as u32));
        self.key.clear();
        for &(s, e) in &self.row_pieces {
            varint::put_bytes(&mut self.key, &m[s as usize..e as usize]);
        }
        let id = match self.ids.get(self.key.as_slice()) {
            Some(&id) => id,
            None => {
                let id = self.slots.len() as u32;
                self.slots.push(self.row_pieces.len() as u64 - 1);
                for &(s, e) in &self.row_pieces {
                    self.pieces.push(u64::from(e - s));
                    self.text.extend_from_slice(&m[s as usize..e as usize]);
                }
                self.ids.insert(self.key.clone(), id);
                id
            }
        };
        self.row_template.push(id);
    }
}

/// Decodes a message column in this encoding (`raw` starts with [`MARKER`]) of `rows` rows
/// into the messages back to back and each one's end offset. Every count and length is
/// checked against the bytes that are there before anything is allocated for it.
pub fn decode(raw: &[u8], rows: usize) -> Result<(Vec<u8>, Vec<u32>), Malformed> {
    decode_rows(raw, rows, None)
}

/// [`decode`], rebuilding only the rows `wanted` marks (one flag per row); the others decode as
/// empty messages. A query that returns a few rows of a block skips rebuilding the rest.
pub fn decode_rows(raw: &[u8], rows: usize, wanted: Option<&[bool]>) -> Result<(Vec<u8>, Vec<u32>), Malformed> {
    if wanted.is_some_and(|w| w.len() != rows) {
        return Err(Malformed);
    }
    let mut r = Reader::new(raw);
    if r.take(1)? != [MARKER] {
        return Err(Malformed);
    }
    let budget = raw.len() as u64;
    let nt = r.u64()?;
    if nt == 0 || nt > rows as u64 {
        return Err(Malformed);
    }
    let nt = nt as usize;
    // every template is some row's and each of its variables at least a byte: so no more
    // variables, hence pieces, than the column has bytes
    let mut slots = Vec::with_capacity(nt);
    let mut total_slots = 0u64;
    r.planes(nt, |k| {
        total_slots = total_slots.saturating_add(k);
        slots.push(k.min(budget) as u32);
    })?;
    if total_slots > budget {
        return Err(Malformed);
    }
    // every piece as (start, end) in `src` below, which holds the template text, then the
    // variables, then slack that lets short copies move a fixed 16 bytes
    let npieces = nt + total_slots as usize;
    let mut pieces = Vec::with_capacity(npieces);
    let mut end = 0u64;
    r.planes(npieces, |len| {
        let start = end.min(budget) as u32;
        end = end.saturating_add(len);
        pieces.push((start, end.min(budget) as u32));
    })?;
    if end > budget {
        return Err(Malformed);
    }
    let text = r.take(end as usize)?;
    let mut first_piece = Vec::with_capacity(nt);
    let mut template_len = Vec::with_capacity(nt);
    let mut p = 0usize;
    for &k in &slots {
        first_piece.push(p as u32);
        template_len.push(u64::from(pieces[p + k as usize].1 - pieces[p].0));
        p += k as usize + 1;
    }

    let row_template = r.u32_planes(rows)?;
    let mut uses = vec![0u32; nt];
    let mut out_of_range = false;
    for &t in &row_template {
        match uses.get_mut(t as usize) {
            Some(n) => *n += 1,
            None => out_of_range = true,
        }
    }
    if out_of_range || uses.contains(&0) {
        return Err(Malformed);
    }
    // template t's variables start at group[t], row after row
    let mut group = Vec::with_capacity(nt);
    let mut nvars = 0u64;
    let mut text_total = 0u64;
    for t in 0..nt {
        group.push(nvars);
        nvars = nvars.saturating_add(u64::from(uses[t]).saturating_mul(u64::from(slots[t])));
        text_total = text_total.saturating_add(u64::from(uses[t]).saturating_mul(template_len[t]));
    }
    if nvars > budget {
        return Err(Malformed);
    }
    // variable v spans var_at[v]..var_at[v + 1] of `src`
    let lens = r.u32_planes(nvars as usize)?;
    let var_total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
    if lens.contains(&0) || var_total > budget - text.len() as u64 {
        return Err(Malformed);
    }
    let mut var_at = Vec::with_capacity(lens.len() + 1);
    var_at.push(text.len() as u32);
    let mut at = text.len() as u32;
    var_at.extend(lens.iter().map(|&l| {
        at += l;
        at
    }));
    let var_bytes = r.take(usize::try_from(var_total).map_err(|_| Malformed)?)?;
    let total = text_total.saturating_add(var_total);
    if !r.is_empty() || total > MAX_DECODED {
        return Err(Malformed);
    }
    let mut src = Vec::with_capacity(text.len() + var_bytes.len() + SLACK);
    src.extend_from_slice(text);
    src.extend_from_slice(var_bytes);
    src.resize(src.len() + SLACK, 0);

    // each template's next variable; a row's variables are consecutive
    let mut next: Vec<usize> = group.iter().map(|&g| g as usize).collect();
    let len = match wanted {
        None => total as usize,
        Some(wanted) => {
            let mut len = 0;
            for (&t, &want) in row_template.iter().zip(wanted) {
                let t = t as usize;
                let v = next[t];
                next[t] += slots[t] as usize;
                if want {
                    len += template_len[t] as usize + (var_at[next[t]] - var_at[v]) as usize;
                }
            }
            next.iter_mut().zip(&group).for_each(|(n, &g)| *n = g as usize);
            len
        }
    };
    let mut out = vec![0u8; len + SLACK];
    let mut pos = 0usize;
    let mut ends = Vec::with_capacity(rows);
    // row after row: its template's next variables (consecutive), skipped or rebuilt
    let mut row_into = |t: usize, pos: usize, out: &mut [u8], build: bool| {
        let (k, first) = (slots[t] as usize, first_piece[t] as usize);
        let v = next[t];
        next[t] += k;
        if !build {
            return pos;
        }
        let (s, e) = pieces[first];
        let mut pos = copy(out, pos, &src, s as usize, e as usize);
        for (v, &(s, e)) in (v..).zip(&pieces[first + 1..first + 1 + k]) {
            pos = copy(out, pos, &src, var_at[v] as usize, var_at[v + 1] as usize);
            pos = copy(out, pos, &src, s as usize, e as usize);
        }
        pos
    };
    match wanted {
        None => {
            for &t in &row_template {
                pos = row_into(t as usize, pos, &mut out, true);
                ends.push(pos as u32);
            }
        }
        Some(wanted) => {
            for (&t, &want) in row_template.iter().zip(wanted) {
                pos = row_into(t as usize, pos, &mut out, want);
                ends.push(pos as u32);
            }
        }
    }
    out.truncate(pos);
    Ok((out, ends))
}

/// Slack after the copy sources and the output, so that short copies move a fixed 16 bytes.
const SLACK: usize = 16;

/// Copies `src[s..e]` to `out` at `pos` and returns the new end. Most pieces and variables are
/// a few bytes: those move as one 16-byte copy (past `e` into the slack, overwritten next).
#[inline(always)]
fn copy(out: &mut [u8], pos: usize, src: &[u8], s: usize, e: usize) -> usize {
    let n = e - s;
    if n <= SLACK {
        out[pos..pos + SLACK].copy_from_slice(&src[s..s + SLACK]);
    } else {
        out[pos..pos + n].copy_from_slice(&src[s..e]);
    }
    pos + n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(msgs: &[&[u8]]) -> Option<Vec<u8>> {
        let lens: Vec<u32> = msgs.iter().map(|m| m.len() as u32).collect();
        let mut out = Vec::new();
        TemplateEncoder::default().encode(&msgs.concat(), &lens, &mut out).then_some(out)
    }

    fn decode_all(col: &[u8], rows: usize) -> Vec<Vec<u8>> {
        let (text, ends) = decode(col, rows).unwrap();
        let mut start = 0;
        ends.iter()
            .map(|&e| {
                let m = text[start..e as usize].to_vec();
                start = e as usize;
                m
            })
            .collect()
    }

    #[test]
    fn splits_messages_into_templates_and_variables() {
        let msgs: Vec<&[u8]> = vec![
            b"Received block blk_-160899 of size 67108864 from /10.250.19.102",
            b"Received block blk_-378411 of size 67108864 from /10.251.43.21",
            b"xinetd[4447]: Reading file req-a0b6ed6709a1",
            b"Received block blk_-99 of size 3 from /10.0.0.1",
        ];
        let col = encode(&msgs).expect("two templates for four rows");
        assert_eq!(col[0], MARKER);
        let mut r = Reader::new(&col[1..]);
        assert_eq!(r.u64().unwrap(), 2, "the three `Received block` rows share one template");
        assert_eq!(decode_all(&col, msgs.len()), msgs);
        // the template text is stored once: `Received block` appears once in the column
        let needle = b"Received block";
        assert_eq!(col.windows(needle.len()).filter(|w| w == needle).count(), 1);
    }

    #[test]
    fn only_the_wanted_rows_are_rebuilt() {
        let msgs: Vec<&[u8]> = vec![b"get 1 ok", b"put 22 ok", b"get 333 ok", b"put 4 ok", b"x", b"x"];
        let col = encode(&msgs).unwrap();
        let wanted = [false, true, true, false, false, true];
        let (text, ends) = decode_rows(&col, 6, Some(&wanted)).unwrap();
        let mut start = 0;
        for (i, &e) in ends.iter().enumerate() {
            let got = &text[start..e as usize];
            assert_eq!(got, if wanted[i] { msgs[i] } else { b"" }, "row {i}");
            start = e as usize;
        }
        assert!(decode_rows(&col, 6, Some(&wanted[..5])).is_err());
    }

    #[test]
    fn messages_sharing_no_template_stay_plain() {
        let msgs: Vec<&[u8]> = vec![b"alpha", b"beta", b"gamma 1", b"delta"];
        assert!(encode(&msgs).is_none());
    }

    #[test]
    fn damaged_columns_are_malformed_not_panics() {
        let msgs: Vec<&[u8]> = vec![b"a 1 b 22", b"a 3 b 4", b"c", b"c"];
        let col = encode(&msgs).unwrap();
        assert_eq!(decode_all(&col, 4), msgs);
        assert!(decode(&col, 3).is_err(), "more rows than the column holds");
        assert!(decode(&col, 5).is_err(), "fewer rows than the column holds");
        for cut in 0..col.len() {
            assert!(decode(&col[..cut], 4).is_err(), "cut at {cut}");
        }
        for i in 0..col.len() {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut bad = col.clone();
                bad[i] = b;
                let _ = decode(&bad, 4);
            }
        }
    }

    proptest! {
        /// Whatever the messages (digits, letters, separators, UTF-8, empty), decoding gives
        /// back exactly what was encoded.
        #[test]
        fn round_trips(
            msgs in proptest::collection::vec("([a-f0-9]{0,6}[ :=/._\\-\u{1}\u{ff}é]{0,2}){0,6}", 1..200),
            repeat in 1usize..4,
        ) {
            let msgs: Vec<String> = msgs.iter().flat_map(|m| std::iter::repeat_n(m.clone(), repeat)).collect();
            let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_bytes()).collect();
            // inputs that templates would not shrink are left plain (`None`); those are not
            // counted, and proptest fails the test if too many are, so the round trip is
            // exercised on hundreds of template columns, not on none
            let col = encode(&refs);
            prop_assume!(col.is_some());
            prop_assert_eq!(decode_all(&col.unwrap(), refs.len()), refs);
        }
    }
}
