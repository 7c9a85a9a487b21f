//! VictoriaLogs' JSON lines: `POST /insert/jsonline`, so pipelines and handlers written for
//! VictoriaLogs can point at logpipe unchanged.
//!
//! One JSON object per line. Query parameters (or the `VL-*` headers VictoriaLogs also reads)
//! name the fields: `_msg_field` (default `_msg`; a comma-separated list, the first present
//! wins), `_time_field` (default `_time`: RFC 3339, or a Unix timestamp in seconds —
//! fractional allowed —, milliseconds, microseconds or nanoseconds, told apart by size),
//! `_stream_fields`, `ignore_fields`, `extra_fields` (`k=v,…`, added to every record). The
//! app is logpipe's own `app` parameter, else the record's `app` field, else the value of the
//! first stream field, else `unknown_service`. Every other field becomes a tag, nested objects
//! flattened with dots. A request is all or nothing (`400` naming the line).

use http::HeaderMap;
use logpipe_model::{parse_time, AppName, Record};
use sonic_rs::{JsonValueTrait, LazyValue};

use crate::doc::{self, Doc};
use crate::{sanitize_app, DecodeCtx, Refused};

/// Which fields mean what, from the request's parameters and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub msg: Vec<String>,
    pub time: String,
    pub stream: Vec<String>,
    pub ignore: Vec<String>,
    pub extra: Vec<String>,
    pub app: Option<AppName>,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            msg: vec!["_msg".into()],
            time: "_time".into(),
            stream: Vec::new(),
            ignore: Vec::new(),
            extra: Vec::new(),
            app: None,
        }
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

impl Fields {
    /// Query parameters win over headers; unknown parameters are ignored, as VictoriaLogs
    /// has many that do not apply here.
    pub fn from_request(raw: Option<&str>, headers: &HeaderMap) -> Result<Fields, Refused> {
        let mut f = Fields::default();
        let mut set = |k: &str, v: &str| -> Result<(), Refused> {
            match k {
                "_msg_field" => f.msg = list(v),
                "_time_field" => f.time = v.trim().to_string(),
                "_stream_fields" => f.stream = list(v),
                "ignore_fields" => f.ignore = list(v),
                "extra_fields" => {
                    f.extra = list(v);
                    if let Some(bad) = f.extra.iter().find(|e| !e.contains('=')) {
                        return Err(Refused::bad_request("bad_parameter", format!("extra_fields: {bad:?} is not k=v")));
                    }
                }
                "app" => {
                    f.app = Some(
                        AppName::parse(v).map_err(|e| Refused::bad_request("bad_parameter", format!("app: {e}")))?,
                    )
                }
                _ => {}
            }
            Ok(())
        };
        for (h, k) in [
            ("vl-msg-field", "_msg_field"),
            ("vl-time-field", "_time_field"),
            ("vl-stream-fields", "_stream_fields"),
            ("vl-ignore-fields", "ignore_fields"),
            ("vl-extra-fields", "extra_fields"),
        ] {
            if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
                set(k, v)?;
            }
        }
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            set(&k, &v)?;
        }
        if f.msg.is_empty() {
            f.msg = vec!["_msg".into()];
        }
        Ok(f)
    }
}

/// A Unix timestamp written in decimal (`1740830400`, `1740830400.25`, `-5`), its unit told
/// apart by the size of its integer part — seconds, milliseconds, microseconds or
/// nanoseconds — converted to nanoseconds exactly, without going through a float.
fn unix(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = int.parse().ok()?;
    let scale: i64 = match whole {
        0..=99_999_999_999 => 1_000_000_000,
        100_000_000_000..=99_999_999_999_999 => 1_000_000,
        100_000_000_000_000..=99_999_999_999_999_999 => 1_000,
        _ => 1,
    };
    // the fraction's digits, as many as the unit has below a nanosecond
    let places = scale.ilog10() as usize;
    let mut part: i64 = 0;
    for i in 0..places {
        part = part * 10 + frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
    }
    let ns = whole.checked_mul(scale)?.checked_add(part)?;
    Some(if neg { -ns } else { ns })
}

fn time(v: &LazyValue) -> Result<i64, String> {
    if v.is_str() {
        let s = doc::text(v)?;
        return unix(s.trim()).map_or_else(|| parse_time(&s).map_err(|e| e.to_string()), Ok);
    }
    if v.is_number() {
        let text = v.as_raw_str();
        return unix(text)
            .or_else(|| v.as_f64().map(|f| (f * 1e9) as i64))
            .ok_or_else(|| format!("{text} is not a time"));
    }
    Err(format!("{} is not a time", v.as_raw_str()))
}

/// Decodes a body of JSON lines into records, all or nothing.
pub fn decode(body: &[u8], f: &Fields, ctx: &DecodeCtx, now: i64) -> Result<Vec<Record>, Refused> {
    let text = crate::text(std::borrow::Cow::Borrowed(body));
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad =
            |m: String| Refused::bad_request("bad_record", format!("line {}: {m}", i + 1)).with("line", (i + 1).into());
        let mut obj = doc::object(line).map_err(bad)?;
        out.push(record(&mut obj, f, ctx, now).map_err(bad)?);
    }
    Ok(out)
}

fn record(obj: &mut Doc, f: &Fields, ctx: &DecodeCtx, now: i64) -> Result<Record, String> {
    for k in &f.ignore {
        obj.remove(k);
    }
    let ts = match obj.remove(&f.time) {
        Some(v) if !v.is_null() => time(&v).map_err(|e| format!("{}: {e}", f.time))?,
        _ => now,
    };
    let message = match f.msg.iter().find_map(|k| obj.remove(k)) {
        Some(v) if !v.is_null() => doc::text(&v)?,
        _ => String::new(),
    };
    let app = match (&f.app, obj.get("app").and_then(|v| v.as_str())) {
        (Some(a), _) => a.clone(),
        (None, Some(a)) => sanitize_app(a),
        _ => f
            .stream
            .iter()
            .find_map(|k| obj.get(k).and_then(|v| v.as_str()).map(sanitize_app))
            .or_else(|| ctx.default_app.cloned())
            .unwrap_or_else(|| AppName::parse("unknown_service").expect("a valid name")),
    };
    if let Some(c) = (ctx.cutoff)(&app).filter(|&c| ts < c) {
        return Err(format!("time {ts} is older than the retention of app {app} (cut-off {c})"));
    }
    let mut tags = f.extra.clone();
    obj.tags(&mut tags)?;
    Record::new(app, ts, message, tags, ctx.limits).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpipe_model::Limits;

    fn run(body: &str, query: &str) -> Result<Vec<Record>, Refused> {
        let f = Fields::from_request(Some(query), &HeaderMap::new())?;
        let limits = Limits::default();
        let ctx = DecodeCtx { default_app: None, limits: &limits, cutoff: &|_| None };
        decode(body.as_bytes(), &f, &ctx, 9)
    }

    #[test]
    fn fields_times_and_apps() {
        let body = concat!(
            r#"{"_msg":"plain","_time":"2025-03-01T12:00:00.5Z","host":"h1","kube":{"pod":"p"}}"#,
            "\n",
            r#"{"message":"custom","timestamp":1740830400.25,"stream":"billing","level":"INFO","skip":1}"#,
            "\n\n",
        );
        let r =
            run(body, "_msg_field=msg,message&_time_field=timestamp&_stream_fields=stream&ignore_fields=skip").unwrap();
        assert_eq!(r[0].message, "", "_msg is not a message field here");
        assert_eq!(
            (r[1].message.as_str(), r[1].ts, r[1].app.as_str()),
            ("custom", 1_740_830_400_250_000_000, "billing")
        );
        assert_eq!(r[1].tags, ["level=INFO", "stream=billing"]);
        let r = run(body, "extra_fields=dc=eu,team=x").unwrap();
        assert_eq!(
            (r[0].message.as_str(), r[0].ts, r[0].app.as_str()),
            ("plain", 1_740_830_400_500_000_000, "unknown_service")
        );
        assert_eq!(r[0].tags, ["dc=eu", "host=h1", "kube.pod=p", "team=x"]);
        assert_eq!(r[1].ts, 9, "no _time: the time it arrived");
        assert_eq!(run(r#"{"app":"Web","_msg":"m"}"#, "").unwrap()[0].app.as_str(), "web");
        assert_eq!(run(r#"{"app":"web","_msg":"m"}"#, "app=other").unwrap()[0].app.as_str(), "other");
    }

    #[test]
    fn unix_times_in_every_unit() {
        for (v, want) in [
            ("1740830400", 1_740_830_400_000_000_000i64),
            ("1740830400123", 1_740_830_400_123_000_000),
            ("1740830400123456", 1_740_830_400_123_456_000),
            ("1740830400123456789", 1_740_830_400_123_456_789),
            ("\"1740830400123\"", 1_740_830_400_123_000_000),
            ("\"2025-03-01T12:00:00Z\"", 1_740_830_400_000_000_000),
            ("\"1740830400.123456789\"", 1_740_830_400_123_456_789),
            ("1740830400123.5", 1_740_830_400_123_500_000),
            ("-1.5", -1_500_000_000),
        ] {
            let r = run(&format!("{{\"_msg\":\"m\",\"_time\":{v}}}"), "").unwrap();
            assert_eq!(r[0].ts, want, "{v}");
        }
    }

    #[test]
    fn bad_lines_fail_the_request() {
        for (body, needle) in [
            ("{\"_msg\":\"ok\"}\n[1]", "line 2"),
            ("{\"_msg\":\"ok\"}\n{\"_time\":\"soon\"}", "line 2"),
            ("{oops", "line 1"),
        ] {
            let e = run(body, "").unwrap_err();
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
        assert!(run("{}", "extra_fields=novalue").is_err());
    }
}
