//! The status page at `/`: one HTML document with its CSS and JavaScript inlined, embedded in the binary
//! (no build step, no CDN, nothing fetched from elsewhere).
//!
//! The page signs in once (the operator pastes the bearer token; it is sent in an `Authorization`
//! header to `POST /v1/signin` and forgotten, the browser keeps an HttpOnly cookie), lists every session
//! from `GET /v1/sessions` — state, generation, time to expiry, last failure, what it waits for — draws
//! each session's last 24 hours from `GET /v1/sessions/{id}/history`, and follows `GET /v1/events`
//! (Server-Sent Events, resumed by the browser with `Last-Event-ID`) to update all of it live. The same
//! document answers `/callback/{session}`: there the script hands a broker's login code from the
//! address bar to `POST /callback/{session}` when the operator confirms.
//!
//! The Content-Security-Policy allows exactly the inlined script and style (by their SHA-256), requests
//! to this origin only, and no framing.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use base64::Engine;
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("../assets/index.html");
const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/app.js");

/// The rendered page and its security headers.
#[derive(Debug)]
pub struct Page {
    html: String,
    csp: HeaderValue,
}

impl Default for Page {
    fn default() -> Page {
        Page::new()
    }
}

fn sha256_source(text: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes())))
}

impl Page {
    /// Renders the page once.
    pub fn new() -> Page {
        let html = TEMPLATE.replace("/*STYLE*/", STYLE).replace("/*SCRIPT*/", SCRIPT);
        let csp = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            sha256_source(SCRIPT),
            sha256_source(STYLE)
        );
        let csp = HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
        Page { html, csp }
    }

    /// The page as a response (200; the auth layer makes it a 401 for a browser not signed in).
    pub fn response(&self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.html.clone()));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// The HTML.
    pub fn html(&self) -> &str {
        &self.html
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_assets_and_allows_only_them() {
        let page = Page::new();
        assert!(page.html().contains(SCRIPT) && page.html().contains(STYLE));
        assert!(!page.html().contains("/*SCRIPT*/") && !page.html().contains("src=\"http"), "nothing from elsewhere");
        let csp = page.csp.to_str().unwrap();
        assert!(csp.contains(&sha256_source(SCRIPT)) && csp.starts_with("default-src 'none'"), "{csp}");
    }
}
