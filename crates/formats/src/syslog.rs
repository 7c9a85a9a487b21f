//! Syslog over TCP and UDP: RFC 5424 (with or without a BOM before the message; structured
//! data as tags) and RFC 3164, framed by octet counting (RFC 6587), newlines, NULs, or the end
//! of the connection.
//!
//! Mapping (docs/INTEGRATIONS.md): APP-NAME (RFC 3164: the tag before `[pid]:`) is the app,
//! made valid as for OTLP (`-` or none: `syslog`); `host=` the hostname; `level=` the
//! severity's keyword (`emerg` … `debug`); `facility=` the facility's keyword; `procid=`,
//! `msgid=` when given; structured data as `SD-ID.PARAM=value` (`origin.ip=10.0.0.1`). A
//! message whose time cannot be read keeps the time it arrived.
//!
//! Frames are cut on the async runtime; parsing runs on the ingest pool, as for every other
//! protocol. Syslog has no acknowledgement and no authentication: TCP is read no faster than
//! records are made durable (a writer that outruns the server waits in TCP's flow control), UDP datagrams
//! that arrive while the server is overloaded are dropped and counted. Connections and frame
//! sizes are bounded.

use bytes::{Buf, BytesMut};
use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use logpipe_model::{parse_time, AppName, Limits, Record};

use crate::sanitize_app;

/// Largest syslog frame accepted by default (RFC 5425 asks receivers for at least 2 KiB; most
/// senders cap lines at 8 KiB, journald at 64 KiB).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;
/// TCP connections served at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// A frame over the size limit.
#[derive(Debug, PartialEq)]
pub enum Oversized {
    /// A whole delimited frame, already taken out of the buffer: drop it and go on.
    Dropped,
    /// No delimiter within the limit: drop what is buffered and the rest up to the next one.
    Unfinished,
    /// An octet count over the limit: the stream cannot be framed any more.
    Count,
}

/// The next frame in `buf`: `Ok(Some(frame))`, `Ok(None)` when more bytes are needed, or the
/// way a frame is over `max` bytes. With `eof` the rest of the buffer is the last frame.
pub fn next_frame(buf: &mut BytesMut, max: usize, eof: bool) -> Result<Option<Vec<u8>>, Oversized> {
    // skip the delimiters between frames
    let skip = buf.iter().take_while(|&&b| matches!(b, b'\n' | b'\r' | 0)).count();
    buf.advance(skip);
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0].is_ascii_digit() {
        // octet counting: MSG-LEN SP SYSLOG-MSG
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits < buf.len() && buf[digits] == b' ' {
            let len: usize =
                std::str::from_utf8(&buf[..digits]).ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
            if len > max {
                return Err(Oversized::Count);
            }
            if buf.len() < digits + 1 + len {
                return if eof { Ok(Some(buf.split().to_vec())) } else { Ok(None) };
            }
            buf.advance(digits + 1);
            return Ok(Some(buf.split_to(len).to_vec()));
        }
        if digits == buf.len() && !eof && digits < 10 {
            return Ok(None);
        }
    }
    match buf.iter().position(|&b| b == b'\n' || b == 0) {
        Some(end) if end > max => {
            buf.advance(end + 1);
            Err(Oversized::Dropped)
        }
        Some(end) => {
            let frame = buf.split_to(end).to_vec();
            buf.advance(1);
            Ok(Some(frame))
        }
        None if buf.len() > max => Err(Oversized::Unfinished),
        None if eof => Ok(Some(buf.split().to_vec())),
        None => Ok(None),
    }
}

/// One syslog message (RFC 5424 or RFC 3164) as a record; `now` is used when it has no time.
pub fn parse(frame: &[u8], now: i64, limits: &Limits) -> Result<Record, String> {
    // the SIMD check first; the lossy conversion only for frames that need it
    let text = match std::str::from_utf8(frame) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(frame),
    };
    let text = text.trim_end_matches(['\r', '\n', '\0']);
    let rest = text.strip_prefix('<').ok_or("a syslog message starts with <PRI>")?;
    let close = rest.find('>').filter(|&i| (1..=3).contains(&i)).ok_or("bad <PRI>")?;
    let pri: usize = rest[..close].parse().map_err(|_| "bad <PRI>")?;
    if pri > 191 {
        return Err(format!("<{pri}> is not a priority"));
    }
    let (facility, severity) = (FACILITIES[pri / 8], SEVERITIES[pri % 8]);
    let body = &rest[close + 1..];
    let mut tags = vec![super::tag("facility", facility), super::tag("level", severity)];
    let (app, ts, message) = match body.strip_prefix("1 ") {
        Some(v1) => rfc5424(v1, now, &mut tags)?,
        None => rfc3164(body, now, &mut tags),
    };
    let app = app
        .filter(|a| !a.is_empty() && *a != "-")
        .map_or_else(|| AppName::parse("syslog").expect("valid"), sanitize_app);
    Record::new(app, ts, message, tags, limits).map_err(|e| e.to_string())
}

/// Splits off the next space-separated header field.
fn field(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((f, rest)) => (f, rest),
        None => (s, ""),
    }
}

fn rfc5424<'a>(s: &'a str, now: i64, tags: &mut Vec<String>) -> Result<(Option<&'a str>, i64, String), String> {
    let (time, s) = field(s);
    let (host, s) = field(s);
    let (app, s) = field(s);
    let (procid, s) = field(s);
    let (msgid, s) = field(s);
    let ts = if time == "-" { now } else { parse_time(time).map_err(|e| format!("timestamp {time:?}: {e}"))? };
    for (k, v) in [("host", host), ("procid", procid), ("msgid", msgid)] {
        if v != "-" && !v.is_empty() {
            tags.push(super::tag(k, v));
        }
    }
    let msg = structured_data(s, tags)?;
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Ok((Some(app), ts, msg.to_string()))
}

/// Reads `-` or `[id k="v" …]…` into tags; returns what follows.
fn structured_data<'a>(s: &'a str, tags: &mut Vec<String>) -> Result<&'a str, String> {
    if let Some(rest) = s.strip_prefix('-') {
        return Ok(rest);
    }
    let mut rest = s;
    while let Some(r) = rest.strip_prefix('[') {
        let id_end = r.find([' ', ']']).ok_or("structured data is not closed")?;
        let id = &r[..id_end];
        let mut r = &r[id_end..];
        loop {
            r = r.trim_start_matches(' ');
            if let Some(after) = r.strip_prefix(']') {
                r = after;
                break;
            }
            let eq = r.find('=').ok_or("structured data: expected PARAM=\"value\"")?;
            let name = &r[..eq];
            let mut chars = r[eq + 1..].char_indices();
            if chars.next().map(|c| c.1) != Some('"') {
                return Err(format!("structured data {id}.{name}: expected a quoted value"));
            }
            let mut value = String::new();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e @ ('"' | '\\' | ']'))) => value.push(e),
                        Some((_, e)) => {
                            value.push('\\');
                            value.push(e);
                        }
                        None => break,
                    },
                    '"' => {
                        end = Some(eq + 1 + i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("structured data {id}.{name}: value is not closed"))?;
            let mut t = String::with_capacity(id.len() + 1 + name.len() + 1 + value.len());
            t.push_str(id);
            t.push('.');
            t.push_str(name);
            t.push('=');
            t.push_str(&value);
            tags.push(t);
            r = &r[end..];
        }
        rest = r;
    }
    Ok(rest)
}

/// RFC 3164: `Mmm dd hh:mm:ss HOST TAG[pid]: MSG`, leniently: what does not fit is message.
fn rfc3164<'a>(s: &'a str, now: i64, tags: &mut Vec<String>) -> (Option<&'a str>, i64, String) {
    let mut rest = s;
    let mut ts = now;
    if let Some(t) = bsd_time(s.get(..15).unwrap_or(""), now) {
        ts = t;
        rest = s[15..].trim_start_matches(' ');
        let (host, r) = field(rest);
        if !host.is_empty() && !host.ends_with(':') {
            tags.push(super::tag("host", host));
            rest = r;
        }
    }
    // TAG: up to 32 alphanumerics (and a few more in practice), then `[pid]` and/or `:`
    let tag_len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))).unwrap_or(0);
    let (tag, after) = rest.split_at(tag_len);
    let (procid, after) = match after.strip_prefix('[').and_then(|a| a.split_once(']')) {
        Some((pid, a)) => (Some(pid), a),
        None => (None, after),
    };
    match after.strip_prefix(':') {
        Some(msg) if tag_len > 0 => {
            if let Some(p) = procid {
                tags.push(super::tag("procid", p));
            }
            (Some(tag), ts, msg.strip_prefix(' ').unwrap_or(msg).to_string())
        }
        _ => (None, ts, rest.to_string()),
    }
}

/// `Mmm dd hh:mm:ss` in UTC, in the year that puts it nearest before `now` (+1 day of clock skew).
fn bsd_time(s: &str, now: i64) -> Option<i64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| s.starts_with(m))? as u32 + 1;
    let day: u32 = s.get(4..6)?.trim().parse().ok()?;
    let (h, m, sec) = (s.get(7..9)?.parse().ok()?, s.get(10..12)?.parse().ok()?, s.get(13..15)?.parse().ok()?);
    if s.as_bytes().get(9) != Some(&b':') || s.as_bytes().get(12) != Some(&b':') {
        return None;
    }
    let year = Utc.timestamp_nanos(now).year();
    for y in [year, year - 1] {
        let t = NaiveDate::from_ymd_opt(y, month, day)?.and_hms_opt(h, m, sec)?.and_utc().timestamp_nanos_opt()?;
        if t <= now + 86_400_000_000_000 {
            return Some(t);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_740_830_400_000_000_000; // 2025-03-01T12:00:00Z

    fn one(s: &str) -> Record {
        parse(s.as_bytes(), NOW, &Limits::default()).unwrap()
    }

    #[test]
    fn rfc5424_with_structured_data_and_bom() {
        let r = one("<165>1 2025-03-01T11:59:00.123Z host1 MyApp 1234 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\\\"lication\"][origin ip=\"10.0.0.1\"] \u{feff}An application event");
        assert_eq!(
            (r.app.as_str(), r.ts, r.message.as_str()),
            ("myapp", 1_740_830_340_123_000_000, "An application event")
        );
        assert_eq!(
            r.tags,
            [
                "exampleSDID@32473.eventSource=App\"lication",
                "exampleSDID@32473.iut=3",
                "facility=local4",
                "host=host1",
                "level=notice",
                "msgid=ID47",
                "origin.ip=10.0.0.1",
                "procid=1234"
            ]
        );
        let r = one("<13>1 - - - - - -");
        assert_eq!((r.app.as_str(), r.ts, r.message.as_str()), ("syslog", NOW, ""));
        assert_eq!(r.tags, ["facility=user", "level=notice"]);
        assert!(parse(b"<13>1 2025-99-01T00:00:00Z h a - - - m", NOW, &Limits::default()).is_err());
        assert!(parse(b"<13>1 - h a - - [unclosed x=\"1\" m", NOW, &Limits::default()).is_err());
    }

    #[test]
    fn rfc3164_and_the_year_it_belongs_to() {
        let r = one("<34>Mar  1 11:58:00 mymachine su[42]: 'su root' failed for lonvick on /dev/pts/8");
        assert_eq!((r.app.as_str(), r.ts), ("su", 1_740_830_280_000_000_000));
        assert_eq!(r.message, "'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(r.tags, ["facility=auth", "host=mymachine", "level=crit", "procid=42"]);
        // December seen in March is last year's
        assert_eq!(one("<13>Dec 31 23:00:00 h app: m").ts, 1_735_686_000_000_000_000);
        // no header at all: the whole text is the message
        let r = one("<13>just some text");
        assert_eq!((r.app.as_str(), r.message.as_str(), r.ts), ("syslog", "just some text", NOW));
        for bad in ["no pri", "<>x", "<999>x", "<1"] {
            assert!(parse(bad.as_bytes(), NOW, &Limits::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn framing_octet_counts_newlines_nuls_and_eof() {
        let mut buf = BytesMut::from(&b"11 <13>1 - - a\n<13>b\0<13>c\r\n\n12 <13>1 - - z"[..]);
        let mut frames = Vec::new();
        while let Some(f) = next_frame(&mut buf, 100, false).unwrap() {
            frames.push(String::from_utf8(f).unwrap());
        }
        assert_eq!(frames, ["<13>1 - - a", "<13>b", "<13>c\r"]);
        assert_eq!(&buf[..], b"12 <13>1 - - z", "an incomplete counted frame waits for more");
        assert_eq!(next_frame(&mut buf, 100, true).unwrap().unwrap(), b"12 <13>1 - - z".to_vec(), "or ends at eof");
        let mut buf = BytesMut::from(&b"<13>ends at close"[..]);
        assert_eq!(next_frame(&mut buf, 100, false).unwrap(), None);
        assert_eq!(next_frame(&mut buf, 100, true).unwrap().unwrap(), b"<13>ends at close".to_vec());
        assert_eq!(next_frame(&mut BytesMut::from(&b"99999 <13>x"[..]), 100, false), Err(Oversized::Count));
        assert_eq!(next_frame(&mut BytesMut::from(&[b'x'; 200][..]), 100, false), Err(Oversized::Unfinished));
        let mut buf = BytesMut::from(&b"<13>too long\n<13>ok\n"[..]);
        assert_eq!(next_frame(&mut buf, 8, false), Err(Oversized::Dropped));
        assert_eq!(next_frame(&mut buf, 8, false).unwrap().unwrap(), b"<13>ok".to_vec());
    }
}
