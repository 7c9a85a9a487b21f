//! The web UI: three files embedded in the binary (`crates/server/ui/`), served without a token
//! (they hold no data; the page asks for a token when the API answers 401). `GET /` answers the
//! page to a browser (a request that accepts `text/html`) and Elasticsearch's banner to
//! everyone else.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// Whether a request is a browser's asking for a page.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// Whether `req` is for the UI's files, which need no token.
pub fn is_ui(req: &Request) -> bool {
    let path = req.uri().path();
    path.starts_with("/ui/") || (path == "/" && wants_html(req.headers()))
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

pub fn index() -> Response {
    let mut resp = file(INDEX, "text/html; charset=utf-8");
    // everything the page loads comes from this server; nothing inline
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    resp
}

pub async fn app_js() -> Response {
    file(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn app_css() -> Response {
    file(APP_CSS, "text/css; charset=utf-8")
}
