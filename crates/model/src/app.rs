use std::fmt;
use std::sync::Arc;

use crate::ModelError;

/// Longest application name, in bytes.
pub const MAX_APP_LEN: usize = 64;

/// A validated application name: `[a-z0-9][a-z0-9._-]{0,63}` after lowercasing.
///
/// The grammar makes it safe as a single path component (no `/`, cannot be `.` or `..`),
/// which is why storage may use it to name partition directories. Cloning is cheap (a shared
/// string): every record carries one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(Arc<str>);

impl AppName {
    /// Validates `name`, lowercasing ASCII letters first.
    pub fn parse(name: &str) -> Result<AppName, ModelError> {
        let lower = checked(name, true, b"._-", "only letters, digits, '.', '_' and '-' are allowed")?;
        Ok(AppName(lower.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `s` lowercased, if it is 1 to 64 bytes of ASCII letters, digits and `extra` (starting
/// with a letter or digit when `alnum_first`).
fn checked(s: &str, alnum_first: bool, extra: &[u8], reason: &'static str) -> Result<String, ModelError> {
    let invalid = |reason| ModelError::InvalidApp { name: truncate(s), reason };
    if s.is_empty() {
        return Err(invalid("empty"));
    }
    if s.len() > MAX_APP_LEN {
        return Err(invalid("longer than 64 characters"));
    }
    let lower = s.to_ascii_lowercase();
    if alnum_first && !lower.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(invalid("must start with a letter or digit"));
    }
    if !lower.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b)) {
        return Err(invalid(reason));
    }
    Ok(lower)
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for AppName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A pattern of application names: an app name in which `*` stands for any run of characters
/// (`web`, `web-*`, `*-prod`, `*`). Used to say which apps a token may read or write.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AppPattern(Arc<str>);

impl AppPattern {
    pub fn parse(pattern: &str) -> Result<AppPattern, ModelError> {
        let lower =
            checked(pattern, false, b"._-*", "only letters, digits, '.', '_', '-' and '*' are allowed in a pattern")?;
        Ok(AppPattern(lower.into()))
    }

    /// Whether the pattern is `*`: every app.
    pub fn is_any(&self) -> bool {
        self.0.bytes().all(|b| b == b'*')
    }

    pub fn matches(&self, app: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = app.strip_prefix(first) else { return false };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
        for p in middle {
            match rest.find(p) {
                Some(i) => rest = &rest[i + p.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AppPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_lowercases() {
        assert_eq!(AppName::parse("HDFS").unwrap().as_str(), "hdfs");
        assert_eq!(AppName::parse("a.b_c-9").unwrap().as_str(), "a.b_c-9");
        assert!(AppName::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_paths_and_junk() {
        for bad in ["", "../x", "..", ".", "-a", "a/b", "a b", "é", &"a".repeat(65)] {
            assert!(AppName::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn patterns() {
        let p = |s: &str| AppPattern::parse(s).unwrap();
        for (pat, app, want) in [
            ("web", "web", true),
            ("web", "web2", false),
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("web-*", "api-1", false),
            ("*-prod", "api-prod", true),
            ("*-prod", "api-prod2", false),
            ("*", "anything", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("WEB-*", "web-x", true),
        ] {
            assert_eq!(p(pat).matches(app), want, "{pat} on {app}");
        }
        assert!(p("*").is_any() && !p("web*").is_any());
        for bad in ["", "web/1", "../x", "a b"] {
            assert!(AppPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
