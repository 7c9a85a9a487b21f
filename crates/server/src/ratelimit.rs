//! Per-application ingest limits: records per second and bytes (message and tags) per second,
//! so one application flooding cannot take the capacity the others need.
//!
//! One token bucket per app and unit, refilled continuously at the limit and holding at most
//! one second of it. A batch is admitted while every bucket it touches is not in debt, and then
//! takes its whole cost (which may put the bucket into debt: a batch larger than a second's
//! worth still passes, alone); so the long-run rate never exceeds the limit and a refused
//! batch costs nothing. A refusal is `429 app_rate_limited`, naming the app and the limit, with
//! `Retry-After` the seconds until the debt is paid.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::StatusCode;
use logpipe_model::AppName;
use parking_lot::Mutex;

use crate::ApiError;

/// Limits of one app; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AppLimit {
    pub records_per_second: Option<f64>,
    pub bytes_per_second: Option<f64>,
}

struct Bucket {
    /// Records and bytes available; negative is debt.
    records: f64,
    bytes: f64,
    at: Instant,
}

pub struct RateLimits {
    default: AppLimit,
    per_app: HashMap<AppName, AppLimit>,
    buckets: Mutex<HashMap<AppName, Bucket>>,
}

/// A refusal: which app, which limit, and how long until it may send again.
#[derive(Debug)]
pub struct Limited {
    pub app: AppName,
    pub what: &'static str,
    pub limit: f64,
    pub retry_after_secs: u64,
}

impl From<Limited> for ApiError {
    fn from(l: Limited) -> ApiError {
        let msg = format!(
            "app {:?} is over its ingest limit of {} {} per second; nothing in this batch was stored",
            l.app.as_str(),
            l.limit,
            l.what
        );
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "app_rate_limited", msg);
        e.retry_after = Some(l.retry_after_secs);
        e
    }
}

impl RateLimits {
    pub fn new(default: AppLimit, per_app: HashMap<AppName, AppLimit>) -> RateLimits {
        RateLimits { default, per_app, buckets: Mutex::new(HashMap::new()) }
    }

    pub fn is_unlimited(&self) -> bool {
        self.default == AppLimit::default() && self.per_app.values().all(|l| *l == AppLimit::default())
    }

    fn limit(&self, app: &AppName) -> AppLimit {
        self.per_app.get(app).copied().unwrap_or(self.default)
    }

    /// Admits a batch of `(app, records, bytes)` whole, or refuses it whole.
    pub fn admit(&self, batch: &[(&AppName, u64, u64)]) -> Result<(), Limited> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        for &(app, ..) in batch {
            let l = self.limit(app);
            if l == AppLimit::default() {
                continue;
            }
            let b = buckets.entry(app.clone()).or_insert_with(|| Bucket {
                records: l.records_per_second.unwrap_or(0.0),
                bytes: l.bytes_per_second.unwrap_or(0.0),
                at: now,
            });
            let dt = now.duration_since(b.at).as_secs_f64();
            b.at = now;
            for (have, rate, what) in
                [(&mut b.records, l.records_per_second, "records"), (&mut b.bytes, l.bytes_per_second, "bytes")]
            {
                let Some(rate) = rate else { continue };
                *have = (*have + dt * rate).min(rate);
                if *have < 0.0 {
                    let retry_after_secs = (-*have / rate).ceil().max(1.0) as u64;
                    return Err(Limited { app: app.clone(), what, limit: rate, retry_after_secs });
                }
            }
        }
        for &(app, records, bytes) in batch {
            if let Some(b) = buckets.get_mut(app) {
                b.records -= records as f64;
                b.bytes -= bytes as f64;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_app_is_refused_alone_and_whole_batches_only() {
        let (a, b) = (AppName::parse("a").unwrap(), AppName::parse("b").unwrap());
        let limits = RateLimits::new(
            AppLimit { records_per_second: Some(1000.0), bytes_per_second: None },
            [(b.clone(), AppLimit { records_per_second: None, bytes_per_second: Some(100.0) })].into(),
        );
        assert!(limits.admit(&[(&a, 600, 0)]).is_ok());
        assert!(limits.admit(&[(&a, 600, 0)]).is_ok(), "into debt, once");
        let e = limits.admit(&[(&a, 1, 0)]).unwrap_err();
        assert_eq!((e.app.as_str(), e.what, e.limit), ("a", "records", 1000.0));
        assert!(e.retry_after_secs >= 1);
        // b is limited by bytes only, and a's debt does not touch it
        assert!(limits.admit(&[(&b, 5000, 150)]).is_ok());
        assert_eq!(limits.admit(&[(&b, 1, 1)]).unwrap_err().what, "bytes");
        // a batch touching a limited app is refused whole: c's records are not counted
        let c = AppName::parse("c").unwrap();
        assert!(limits.admit(&[(&c, 900, 0), (&a, 1, 0)]).is_err());
        assert!(limits.admit(&[(&c, 900, 0)]).is_ok(), "c's bucket was untouched by the refusal");
    }
}
