//! logpipe's own ingest format: NDJSON (one record per line) or a JSON array of records.
//! A batch is all or nothing: the first bad record fails it, named by its line or index.

use std::borrow::Cow;

use logpipe_model::{format_time, parse_time, AppName, Limits, Record};
use rustc_hash::FxHashMap;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::{check_json_depth, Refused};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRecord<'a> {
    #[serde(default, borrow)]
    app: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "timestamp")]
    timestamp: Option<i64>,
    message: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// RFC 3339 string, integer nanoseconds, or null (server time).
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 string or integer nanoseconds")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v).map(Some).map_err(|_| E::custom("timestamp out of range"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_time(v).map(Some).map_err(E::custom)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

/// Parses and validates every record of a body (NDJSON or a JSON array); the first bad one
/// fails the batch. `cutoff` gives the oldest timestamp kept for an app, if any.
pub fn parse_records(
    body: &str,
    default_app: Option<&AppName>,
    limits: &Limits,
    cutoff: &dyn Fn(&AppName) -> Option<i64>,
) -> Result<Vec<Record>, Refused> {
    let now = crate::now_ns();
    // most batches name a handful of apps: parse each name and look up its retention once
    let mut apps: FxHashMap<String, (AppName, Option<i64>)> = FxHashMap::default();
    let default_app = default_app.map(|d| (d.clone(), cutoff(d)));
    let mut check = |w: WireRecord| -> Result<Record, String> {
        let (app, cut) = match (&w.app, &default_app) {
            (Some(a), _) => match apps.get(a.as_ref()) {
                Some((app, cut)) => (app.clone(), *cut),
                None => {
                    let app = AppName::parse(a).map_err(|e| e.to_string())?;
                    let cut = cutoff(&app);
                    apps.insert(a.to_string(), (app.clone(), cut));
                    (app, cut)
                }
            },
            (None, Some((d, cut))) => (d.clone(), *cut),
            (None, None) => return Err("missing app: set it in the record or with ?app=".into()),
        };
        let ts = w.timestamp.unwrap_or(now);
        if let Some(c) = cut.filter(|&c| ts < c) {
            return Err(format!(
                "timestamp {} is older than the retention of app {app} (records before {} are not kept)",
                format_time(ts),
                format_time(c)
            ));
        }
        Record::new(app, ts, w.message, w.tags.unwrap_or_default(), limits).map_err(|e| e.to_string())
    };
    let trimmed = body.trim_start();
    let mut out = Vec::new();
    if trimmed.starts_with('[') {
        check_json_depth(trimmed).map_err(|m| Refused::bad_request("bad_record", m))?;
        let items: Vec<serde_json::Value> = serde_json::from_str(trimmed)
            .map_err(|e| Refused::bad_request("bad_record", format!("body is not a JSON array of records: {e}")))?;
        for (i, v) in items.into_iter().enumerate() {
            let bad = |m: String| Refused::bad_request("bad_record", format!("index {i}: {m}")).with("index", i.into());
            let w = WireRecord::deserialize(&v).map_err(|e| bad(e.to_string()))?;
            out.push(check(w).map_err(bad)?);
        }
    } else {
        for (i, line) in body.split('\n').enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let n = i + 1;
            let bad = |m: String| Refused::bad_request("bad_record", format!("line {n}: {m}")).with("line", n.into());
            // sonic-rs: a SIMD JSON parser behind the same serde types, several times faster
            // than serde_json on this, the hottest loop of ingest
            check_json_depth(line).map_err(bad)?;
            let w: WireRecord = sonic_rs::from_str(line).map_err(|e| bad(e.to_string()))?;
            out.push(check(w).map_err(bad)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<Record>, Refused> {
        parse_records(body, None, &Limits::default(), &|_| None)
    }

    #[test]
    fn ndjson_and_arrays() {
        let r = parse("{\"app\":\"A\",\"timestamp\":\"2025-01-01T00:00:00+01:00\",\"message\":\"m\",\"tags\":[\"b\",\"a\"]}\n\n{\"app\":\"b\",\"timestamp\":5,\"message\":\"x\"}").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].app.as_str(), "a");
        assert_eq!(r[0].ts, 1_735_686_000_000_000_000);
        assert_eq!(r[0].tags, ["a", "b"]);
        assert_eq!(r[1].ts, 5);
        let a = parse("[{\"app\":\"a\",\"message\":\"m\",\"timestamp\":null}]").unwrap();
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        for n in [33, 100_000] {
            let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
            for body in [
                format!("{{\"app\":{deep},\"message\":\"x\"}}"),
                format!("{{\"app\":\"a\",\"message\":\"x\",\"extra\":{deep}}}"),
                format!("[{{\"app\":\"a\",\"message\":\"x\",\"tags\":{deep}}}]"),
                // an escaped backslash ends in a real closing quote
                format!("{{\"app\":\"a\",\"message\":\"x\\\\\",\"extra\":{deep}}}"),
            ] {
                let e = parse(&body).unwrap_err();
                assert!(e.message.contains("nested deeper than 32"), "{n}: {}", e.message);
            }
        }
        // brackets inside strings are text, however many
        let msg = "[".repeat(1000);
        let ok = parse(&format!("{{\"app\":\"a\",\"message\":\"{msg}\\\"{msg}\",\"tags\":[\"k=[{{\"]}}")).unwrap();
        assert_eq!(ok[0].message.len(), 2001);
    }

    #[test]
    fn errors_name_the_line_or_index() {
        let e = parse("{\"app\":\"a\",\"message\":\"m\"}\n{\"app\":\"a\",\"message\":5}").unwrap_err();
        assert!(e.message.starts_with("line 2:"), "{}", e.message);
        let e = parse("[{\"app\":\"a\",\"message\":\"m\"},{\"app\":\"a\"}]").unwrap_err();
        assert!(e.message.starts_with("index 1:"), "{}", e.message);
        for bad in [
            "{\"message\":\"no app\"}",
            "{\"app\":\"a\",\"message\":\"m\",\"timestamp\":\"soon\"}",
            "{\"app\":\"a\",\"message\":\"m\",\"timestamp\":1.5}",
            "{\"app\":\"a\",\"message\":\"m\",\"level\":\"x\"}",
            "{\"app\":\"a\",\"message\":\"m\",\"tags\":\"x\"}",
            "not json",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
