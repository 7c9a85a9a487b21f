use thiserror::Error;

/// Why a value from outside failed validation. Messages are shown to API clients as they are.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid app name {name:?}: {reason}")]
    InvalidApp { name: String, reason: &'static str },
    #[error("invalid timestamp {value:?}: expected RFC 3339 or integer nanoseconds")]
    InvalidTimestamp { value: String },
    #[error("invalid duration {value:?}: expected e.g. 90s, 5m, 1h30m, 30d")]
    InvalidDuration { value: String },
    #[error("message is {len} bytes, over the limit of {max}")]
    MessageTooLong { len: usize, max: usize },
    #[error("{count} tags, over the limit of {max}")]
    TooManyTags { count: usize, max: usize },
    #[error("tag is {len} bytes, over the limit of {max}")]
    TagTooLong { len: usize, max: usize },
    #[error("empty tag")]
    EmptyTag,
}
