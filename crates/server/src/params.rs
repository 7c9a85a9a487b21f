//! Query-string parsing for the native API: every parameter known, every value checked.

use logpipe_model::{parse_duration, parse_time, AppName};
use logpipe_query::Pipe;
use logpipe_storage::{Cursor, Order, Query};

use crate::now_ns;
use crate::ApiError;

/// The filters and options of one query request.
pub struct QueryParams {
    pub query: Query,
    pub limit: Option<usize>,
    pub order: Option<Order>,
    pub cursor: Option<Cursor>,
    pub step: Option<i64>,
    /// Pipes of the `q=` query, in order.
    pub pipes: Vec<Pipe>,
    /// Histograms: list empty buckets too (`fill=zero`).
    pub fill_zero: bool,
}

const FILTERS: &[&str] = &["app", "from", "to", "tag", "any", "not", "contains", "icontains", "regex", "q"];

/// Parses `raw` accepting the filters plus `extra` parameter names.
pub fn parse(raw: Option<&str>, extra: &[&str]) -> Result<QueryParams, ApiError> {
    let mut p = QueryParams {
        query: Query::default(),
        limit: None,
        order: None,
        cursor: None,
        step: None,
        pipes: Vec::new(),
        fill_zero: false,
    };
    let bad = |name: &str, msg: String| {
        ApiError::bad_request("bad_parameter", format!("{name}: {msg}")).with("parameter", name.into())
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let k = k.as_ref();
        if !FILTERS.contains(&k) && !extra.contains(&k) {
            let mut known: Vec<&str> = FILTERS.to_vec();
            known.extend_from_slice(extra);
            return Err(bad(k, format!("unknown parameter; expected one of {}", known.join(", "))));
        }
        let q = &mut p.query;
        match k {
            "app" => q.apps.push(AppName::parse(&v).map_err(|e| bad(k, e.to_string()))?),
            "from" => q.from = Some(parse_time(&v).map_err(|e| bad(k, e.to_string()))?),
            "to" => q.to = Some(parse_time(&v).map_err(|e| bad(k, e.to_string()))?),
            "tag" | "any" | "not" => {
                if v.is_empty() {
                    return Err(bad(k, "empty tag".into()));
                }
                let list = match k {
                    "tag" => &mut q.tags_all,
                    "any" => &mut q.tags_any,
                    _ => &mut q.tags_none,
                };
                list.push(v.into_owned());
            }
            "q" => {
                let plan = logpipe_query::parse(&v).map_err(|e| {
                    ApiError::bad_request("bad_query", format!("q: {e}")).with("column", e.column.into())
                })?;
                if let Some(filter) = plan.filter {
                    q.and_expr(filter, now_ns()).map_err(|e| ApiError::bad_request("bad_query", format!("q: {e}")))?;
                }
                if !p.pipes.is_empty() && !plan.pipes.is_empty() {
                    return Err(bad(k, "pipes may appear in one q only".into()));
                }
                p.pipes.extend(plan.pipes);
            }
            "contains" => q.contains.push(v.into_owned()),
            "icontains" => q.icontains.push(v.into_owned()),
            "regex" => q.regex.push(v.into_owned()),
            "limit" => p.limit = Some(v.parse().map_err(|_| bad(k, format!("{v:?} is not a non-negative integer")))?),
            "order" => {
                p.order = Some(match v.as_ref() {
                    "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    _ => return Err(bad(k, format!("{v:?}: expected asc or desc"))),
                })
            }
            "fill" => {
                p.fill_zero = match v.as_ref() {
                    "zero" => true,
                    "none" => false,
                    _ => return Err(bad(k, format!("{v:?}: expected zero or none"))),
                }
            }
            "cursor" => p.cursor = Some(Cursor::decode(&v).ok_or_else(|| bad(k, "malformed cursor".into()))?),
            "step" => {
                let step = parse_duration(&v).map_err(|e| bad(k, e.to_string()))?;
                if step < 1_000_000 {
                    return Err(bad(k, "step must be at least 1ms".into()));
                }
                p.step = Some(step);
            }
            _ => unreachable!("checked against the known names"),
        }
    }
    if let (Some(f), Some(t)) = (p.query.from, p.query.to) {
        if f > t {
            return Err(bad("from", "from is after to".into()));
        }
    }
    p.query.apps.sort();
    p.query.apps.dedup();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_filters_and_errors() {
        let p = parse(Some("app=HDFS&tag=a%3Db&tag=c&any=x&not=y&contains=a+b&limit=5&order=asc"), &["limit", "order"])
            .unwrap();
        assert_eq!(p.query.apps[0].as_str(), "hdfs");
        assert_eq!(p.query.tags_all, ["a=b", "c"]);
        assert_eq!(p.query.contains, ["a b"]);
        assert_eq!(p.limit, Some(5));
        for bad in ["bogus=1", "limit=-1", "order=up", "from=yesterday", "app=../x", "step=5m", "from=2&to=1", "tag="] {
            assert!(parse(Some(bad), &["limit", "order"]).is_err(), "{bad}");
        }
    }
}
