//! The logpipe data model: what a log record is and the rules every edge validates it against.
//!
//! No I/O lives here. Every other crate takes these types as already validated: an
//! [`AppName`] is safe to use as a path component, a [`Record`]'s tags are sorted and unique,
//! and timestamps are nanoseconds since the Unix epoch, UTC.

#![deny(unsafe_code)]

mod app;
mod error;
mod record;
mod time;

pub use app::{AppName, AppPattern, MAX_APP_LEN};
pub use error::ModelError;
pub use record::{Limits, Record, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_TAGS, DEFAULT_MAX_TAG_BYTES};
pub use time::{day_of, format_time, parse_duration, parse_time, Timestamp, NANOS_PER_DAY};
