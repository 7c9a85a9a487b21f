//! Bearer tokens with scopes.
//!
//! Each configured token has a name (for logs and metrics; the token itself is never logged),
//! scopes (`read`, `write`, `admin`) and the app patterns its `read` and `write` apply to. A
//! request's `Authorization: Bearer <token>` is checked by [`authenticate`] before any handler
//! runs: no or an unknown token is `401`, a token without the scope the endpoint needs is
//! `403`. What a token may read is enforced inside the query itself (the storage filter's app
//! scope), so counts, histograms, top values, tails and explains never see other apps.
//!
//! Tokens are compared as SHA-256 digests in constant time, against every configured token
//! (no early exit), so neither timing nor length says how close a guess was.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use logpipe_model::{AppName, AppPattern};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            _ => Err(format!("unknown scope {s:?}; expected read, write or admin")),
        }
    }
}

/// One configured token. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct TokenSpec {
    pub name: String,
    pub token: String,
    pub scopes: Vec<Scope>,
    /// Apps `read` and `write` apply to; `admin` is not limited by app.
    pub apps: Vec<AppPattern>,
}

impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("apps", &self.apps)
            .finish()
    }
}

/// Shortest token accepted in the configuration.
pub const MIN_TOKEN_LEN: usize = 16;

/// What the caller of one request may do. Without configured tokens, everything.
#[derive(Debug, Clone)]
pub struct Access {
    /// The token's name; `None` when authentication is off.
    pub name: Option<Arc<str>>,
    read: Option<Arc<[AppPattern]>>,
    write: Option<Arc<[AppPattern]>>,
    admin: bool,
}

impl Access {
    fn everything() -> Access {
        let all: Arc<[AppPattern]> = Arc::new([]);
        Access { name: None, read: Some(all.clone()), write: Some(all), admin: true }
    }

    fn forbidden(&self, scope: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token {:?} has no {scope} scope", self.name.as_deref().unwrap_or("")),
        )
    }

    /// The app patterns this caller may read (empty: every app), or `403`.
    pub fn read_scope(&self) -> Result<Vec<AppPattern>, ApiError> {
        self.read.as_ref().map(|p| p.to_vec()).ok_or_else(|| self.forbidden("read"))
    }

    /// Checks that this caller may write records of `app`.
    pub fn check_write(&self, app: &AppName) -> Result<(), ApiError> {
        let Some(patterns) = &self.write else { return Err(self.forbidden("write")) };
        if patterns.is_empty() || patterns.iter().any(|p| p.matches(app.as_str())) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_app",
            format!(
                "token {:?} may not write app {:?}; nothing in this batch was stored",
                self.name.as_deref().unwrap_or(""),
                app.as_str()
            ),
        ))
    }

    /// `403` unless this caller may write some app (checked before a body is read).
    pub fn check_may_write(&self) -> Result<(), ApiError> {
        match self.write {
            Some(_) => Ok(()),
            None => Err(self.forbidden("write")),
        }
    }

    pub fn check_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(self.forbidden("admin"))
        }
    }
}

struct Entry {
    digest: [u8; 32],
    access: Access,
}

/// The configured tokens.
pub struct Tokens(Vec<Entry>);

impl Tokens {
    pub fn new(specs: &[TokenSpec]) -> Result<Tokens, String> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for s in specs {
            if s.token.len() < MIN_TOKEN_LEN {
                return Err(format!("token {:?}: shorter than {MIN_TOKEN_LEN} characters", s.name));
            }
            if !seen.insert(s.token.clone()) {
                return Err(format!("token {:?}: the same secret is configured twice", s.name));
            }
            if s.scopes.is_empty() {
                return Err(format!("token {:?}: no scopes", s.name));
            }
            // `*` anywhere among the patterns means every app: an empty list
            let apps: Arc<[AppPattern]> =
                if s.apps.iter().any(AppPattern::is_any) { Arc::new([]) } else { s.apps.clone().into() };
            if apps.is_empty() && !s.apps.iter().any(AppPattern::is_any) && !s.scopes.iter().all(|&x| x == Scope::Admin)
            {
                return Err(format!("token {:?}: read and write need apps (patterns, or \"*\")", s.name));
            }
            let has = |x| s.scopes.contains(&x);
            out.push(Entry {
                digest: Sha256::digest(s.token.as_bytes()).into(),
                access: Access {
                    name: Some(s.name.as_str().into()),
                    read: has(Scope::Read).then(|| apps.clone()),
                    write: has(Scope::Write).then(|| apps.clone()),
                    admin: has(Scope::Admin),
                },
            });
        }
        Ok(Tokens(out))
    }

    fn check(&self, presented: &str) -> Option<Access> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for e in &self.0 {
            if bool::from(e.digest.ct_eq(&digest)) {
                found = Some(e.access.clone());
            }
        }
        found
    }
}

fn unauthorized(msg: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"logpipe\""));
    resp
}

/// The token in an `Authorization` header: `Bearer <token>`, or — for shippers that only
/// know these — `ApiKey <token>` (Elasticsearch clients) or `Basic` with the token as the
/// password (any user name).
fn presented(v: &str) -> Option<String> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("apikey") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
        let pair = String::from_utf8(raw).ok()?;
        return Some(pair.split_once(':')?.1.to_string());
    }
    None
}

/// Identifies the caller of every request but `/health`, `/ready` and the web UI's files and
/// hands handlers an [`Access`]; the scope an endpoint needs is checked by the endpoint.
pub async fn authenticate(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let open =
        req.method() == Method::GET && (matches!(req.uri().path(), "/health" | "/ready") || crate::ui::is_ui(&req));
    let access = match &st.tokens {
        None => Access::everything(),
        Some(_) if open => Access { name: None, read: None, write: None, admin: false },
        Some(tokens) => {
            let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(presented);
            let Some(presented) = presented else {
                st.metrics.rejected.with_label_values(&["auth", "unauthorized"]).inc();
                return unauthorized(
                    "this server needs `Authorization: Bearer <token>` (or `ApiKey <token>`, or Basic with the token as password)",
                );
            };
            match tokens.check(presented.trim()) {
                Some(a) => a,
                None => {
                    st.metrics.rejected.with_label_values(&["auth", "unauthorized"]).inc();
                    return unauthorized("unknown token");
                }
            }
        }
    };
    req.extensions_mut().insert(access);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, token: &str, scopes: &[Scope], apps: &[&str]) -> TokenSpec {
        TokenSpec {
            name: name.into(),
            token: token.into(),
            scopes: scopes.to_vec(),
            apps: apps.iter().map(|a| AppPattern::parse(a).unwrap()).collect(),
        }
    }

    #[test]
    fn tokens_grant_what_they_say() {
        let t = Tokens::new(&[
            spec("shipper", "s3cret-shipper-0001", &[Scope::Write], &["web-*"]),
            spec("ops", "s3cret-ops-00000001", &[Scope::Read, Scope::Admin], &["*"]),
        ])
        .unwrap();
        assert!(t.check("s3cret-shipper-0002").is_none());
        assert!(t.check("").is_none());
        let shipper = t.check("s3cret-shipper-0001").unwrap();
        assert_eq!(shipper.name.as_deref(), Some("shipper"));
        assert!(shipper.check_write(&AppName::parse("web-1").unwrap()).is_ok());
        assert_eq!(shipper.check_write(&AppName::parse("db").unwrap()).unwrap_err().code, "forbidden_app");
        assert_eq!(shipper.read_scope().unwrap_err().status, StatusCode::FORBIDDEN);
        assert!(shipper.check_admin().is_err());
        let ops = t.check("s3cret-ops-00000001").unwrap();
        assert!(ops.read_scope().unwrap().is_empty(), "every app");
        assert!(ops.check_admin().is_ok());
        assert!(ops.check_write(&AppName::parse("web-1").unwrap()).is_err());
        assert!(!format!("{:?}", spec("x", "s3cret-shipper-0001", &[Scope::Read], &["a"])).contains("s3cret"));
    }

    #[test]
    fn tokens_are_taken_from_bearer_apikey_and_basic() {
        assert_eq!(presented("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(presented("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(presented("ApiKey abc").as_deref(), Some("abc"));
        // base64("shipper:s3cret:with:colons")
        assert_eq!(presented("Basic c2hpcHBlcjpzM2NyZXQ6d2l0aDpjb2xvbnM=").as_deref(), Some("s3cret:with:colons"));
        for bad in ["Basic !!!", "Basic bm9jb2xvbg==", "Digest abc", "abc", ""] {
            assert_eq!(presented(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_token_configurations_are_refused() {
        for bad in [
            vec![spec("short", "tooshort", &[Scope::Read], &["*"])],
            vec![spec("none", "long-enough-token-1", &[], &["*"])],
            vec![spec("noapps", "long-enough-token-1", &[Scope::Read], &[])],
            vec![
                spec("a", "long-enough-token-1", &[Scope::Read], &["*"]),
                spec("b", "long-enough-token-1", &[Scope::Write], &["*"]),
            ],
        ] {
            assert!(Tokens::new(&bad).is_err(), "{bad:?}");
        }
        assert!(Tokens::new(&[spec("admin", "long-enough-token-1", &[Scope::Admin], &[])]).is_ok());
    }
}
