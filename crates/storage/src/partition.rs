//! Partitions: one application's records of one UTC day, in one directory.

use std::path::{Path, PathBuf};

use logpipe_model::{format_time, parse_time, AppName, Timestamp, NANOS_PER_DAY};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    pub app: AppName,
    /// Days since 1970-01-01, UTC.
    pub day: i32,
}

impl PartitionKey {
    pub fn of(app: &AppName, ts: Timestamp) -> PartitionKey {
        PartitionKey { app: app.clone(), day: logpipe_model::day_of(ts) }
    }

    /// `partitions/<app>/<YYYY-MM-DD>` under `root`. The app name's grammar keeps it a single
    /// safe path component.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(self.app.as_str()).join(day_name(self.day))
    }

    /// First nanosecond of the day.
    pub fn start(&self) -> Timestamp {
        i64::from(self.day) * NANOS_PER_DAY
    }

    /// First nanosecond after the day.
    pub fn end(&self) -> Timestamp {
        self.start() + NANOS_PER_DAY
    }
}

pub fn day_name(day: i32) -> String {
    format_time(i64::from(day) * NANOS_PER_DAY)[..10].to_string()
}

/// The day number a directory name stands for, if it is one.
pub fn parse_day_name(name: &str) -> Option<i32> {
    if name.len() != 10 {
        return None;
    }
    let ts = parse_time(&format!("{name}T00:00:00Z")).ok()?;
    let day = logpipe_model::day_of(ts);
    (day_name(day) == name).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_round_trip() {
        for day in [-1, 0, 20089, 40000] {
            assert_eq!(parse_day_name(&day_name(day)), Some(day));
        }
        assert_eq!(day_name(20089), "2025-01-01");
        assert_eq!(parse_day_name("2025-1-01"), None);
        assert_eq!(parse_day_name("../../etc"), None);
    }
}
