use crate::{AppName, ModelError, Timestamp};

/// Default cap on one message, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Default cap on the number of tags of one record.
pub const DEFAULT_MAX_TAGS: usize = 128;
/// Default cap on one tag, in bytes.
pub const DEFAULT_MAX_TAG_BYTES: usize = 1024;

/// Size caps applied to every record at the edge.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_tags: usize,
    pub max_tag_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_tags: DEFAULT_MAX_TAGS,
            max_tag_bytes: DEFAULT_MAX_TAG_BYTES,
        }
    }
}

/// One log record. Tags are kept sorted and unique: a tag set has no order and no duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub app: AppName,
    pub ts: Timestamp,
    pub message: String,
    pub tags: Vec<String>,
}

impl Record {
    /// Builds a record, checking the caps in `limits` and normalising the tag set.
    pub fn new(
        app: AppName,
        ts: Timestamp,
        message: String,
        mut tags: Vec<String>,
        limits: &Limits,
    ) -> Result<Record, ModelError> {
        if message.len() > limits.max_message_bytes {
            return Err(ModelError::MessageTooLong { len: message.len(), max: limits.max_message_bytes });
        }
        if tags.len() > limits.max_tags {
            return Err(ModelError::TooManyTags { count: tags.len(), max: limits.max_tags });
        }
        for t in &tags {
            if t.is_empty() {
                return Err(ModelError::EmptyTag);
            }
            if t.len() > limits.max_tag_bytes {
                return Err(ModelError::TagTooLong { len: t.len(), max: limits.max_tag_bytes });
            }
        }
        tags.sort_unstable();
        tags.dedup();
        Ok(Record { app, ts, message, tags })
    }

    /// Approximate bytes this record holds in memory; used for memory accounting.
    pub fn mem_size(&self) -> usize {
        64 + self.message.len() + self.tags.iter().map(|t| t.len() + 24).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_a_set_and_caps_hold() {
        let app = AppName::parse("a").unwrap();
        let l = Limits::default();
        let r = Record::new(app.clone(), 1, "m".into(), vec!["b".into(), "a".into(), "b".into()], &l).unwrap();
        assert_eq!(r.tags, vec!["a", "b"]);
        assert!(Record::new(app.clone(), 1, "x".repeat(l.max_message_bytes + 1), vec![], &l).is_err());
        assert!(Record::new(app.clone(), 1, "m".into(), vec!["t".into(); 129], &l).is_err());
        assert!(Record::new(app.clone(), 1, "m".into(), vec!["t".repeat(1025)], &l).is_err());
        assert!(Record::new(app, 1, "m".into(), vec![String::new()], &l).is_err());
    }
}
