//! Who may call the service: a bearer token for programs, a cookie for the browser page, a CSRF token
//! for the page's changes.
//!
//! - [`load_or_create_token`]: the bearer token from `WARDEN_SERVE_TOKEN`, else from the token file, else
//!   a new random one (32 bytes, hex) written to the token file with mode 0600. A token file others can
//!   read is refused.
//! - [`Auth::check`]: every route but `/healthz` needs `Authorization: Bearer <token>` (compared in
//!   constant time, as SHA-256 digests) or the browser cookie. The page signs in once by sending the token
//!   in the `Authorization` header to `POST /v1/signin`, which sets `warden_session` — a random id, not
//!   the token — `HttpOnly; SameSite=Strict; Path=/` (plus `Secure` over TLS). A request carried by the
//!   cookie that changes something (POST, PUT, PATCH, DELETE) must also carry that browser session's
//!   `X-CSRF-Token`. A token never goes in a URL.
//! - [`Authorizer`]: the check as a `tower_http::auth::AsyncRequireAuthorizationLayer`.
//!
//! Browser sign-ins are bounded (`MAX_BROWSER_SESSIONS`, the oldest goes first) and expire after
//! `browser_session_ttl`.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warden_actors::Clock;
use warden_engine::{Secret, UnixMs};

use crate::page::Page;

/// The environment variable that gives the bearer token (instead of the token file).
pub const TOKEN_ENV_VAR: &str = "WARDEN_SERVE_TOKEN";
/// The shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 32;
/// The most browser sign-ins kept at once.
pub const MAX_BROWSER_SESSIONS: usize = 64;
/// The browser session cookie's name.
pub const COOKIE_NAME: &str = "warden_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Why the bearer token could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token file could not be read or written.
    #[error("token file {path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// Others may read the token file.
    #[error("token file {path} may be read by others (mode {mode:o}); run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// The token is too short.
    #[error("the bearer token from {origin} is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort {
        /// Where it came from.
        origin: String,
    },
}

/// Where the bearer token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `WARDEN_SERVE_TOKEN`.
    Environment,
    /// The token file, as found.
    File,
    /// The token file, just made.
    Created,
}

/// The bearer token: from `env_token` (the value of [`TOKEN_ENV_VAR`], if set), else the file at `path`,
/// else a new random token written there (mode 0600).
pub fn load_or_create_token(path: &Path, env_token: Option<String>) -> Result<(Secret, TokenOrigin), TokenError> {
    if let Some(token) = env_token {
        let token = token.trim().to_owned();
        if token.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { origin: TOKEN_ENV_VAR.to_owned() });
        }
        return Ok((Secret::new(token), TokenOrigin::Environment));
    }
    let shown = path.display().to_string();
    let file_error = |e: std::io::Error| TokenError::File { path: shown.clone(), detail: e.to_string() };
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(TokenError::Exposed { path: shown, mode });
            }
            let text = std::fs::read_to_string(path).map_err(file_error)?;
            let token = text.trim().to_owned();
            if token.len() < MIN_TOKEN_LEN {
                return Err(TokenError::TooShort { origin: shown });
            }
            Ok((Secret::new(token), TokenOrigin::File))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_hex(32)
                .ok_or_else(|| TokenError::File { path: shown.clone(), detail: "no system randomness".into() })?;
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(file_error)?;
            file.write_all(format!("{token}\n").as_bytes()).map_err(file_error)?;
            file.sync_all().map_err(file_error)?;
            Ok((Secret::new(token), TokenOrigin::Created))
        }
        Err(e) => Err(file_error(e)),
    }
}

/// `bytes` random bytes as hex.
pub fn random_hex(bytes: usize) -> Option<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).ok()?;
    Some(hex::encode(buf))
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Who a request is from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A program with the bearer token.
    Bearer,
    /// The signed-in browser page.
    Browser,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or wrong ones.
    Unauthorized,
    /// A change carried by the cookie without the right CSRF token.
    Csrf,
}

struct BrowserSession {
    csrf: String,
    expires_at: UnixMs,
    created_at: UnixMs,
}

/// The checks. Cheap to share (`Arc`).
pub struct Auth {
    token_digest: [u8; 32],
    browsers: Mutex<HashMap<[u8; 32], BrowserSession>>,
    ttl: Duration,
    secure_cookie: bool,
    clock: Clock,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// A browser sign-in: the cookie to set and the CSRF token the page sends with its changes.
pub struct SignIn {
    /// The `Set-Cookie` value.
    pub set_cookie: String,
    /// The CSRF token.
    pub csrf: String,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignIn(***)")
    }
}

impl Auth {
    /// Checks against `token`; browser sign-ins last `ttl`; the cookie is `Secure` when `secure_cookie`.
    pub fn new(token: &Secret, ttl: Duration, secure_cookie: bool, clock: Clock) -> Auth {
        Auth { token_digest: digest(token.expose()), browsers: Mutex::new(HashMap::new()), ttl, secure_cookie, clock }
    }

    /// Whether `presented` is the bearer token (constant time).
    pub fn token_matches(&self, presented: &str) -> bool {
        bool::from(digest(presented).ct_eq(&self.token_digest))
    }

    /// Who sent a request with these headers and this method, or why it is refused.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<Principal, Denied> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let text = value.to_str().unwrap_or_default();
            let token = text.strip_prefix("Bearer ").or_else(|| text.strip_prefix("bearer ")).unwrap_or_default();
            return if !token.is_empty() && self.token_matches(token.trim()) {
                Ok(Principal::Bearer)
            } else {
                Err(Denied::Unauthorized)
            };
        }
        let Some(cookie) = cookie_value(headers, COOKIE_NAME) else { return Err(Denied::Unauthorized) };
        let now = self.clock.now();
        let mut browsers = self.browsers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = digest(cookie);
        let Some(session) = browsers.get(&key) else { return Err(Denied::Unauthorized) };
        if now >= session.expires_at {
            browsers.remove(&key);
            return Err(Denied::Unauthorized);
        }
        if changes_something(method) {
            let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !bool::from(digest(presented).ct_eq(&digest(&session.csrf))) {
                return Err(Denied::Csrf);
            }
        }
        Ok(Principal::Browser)
    }

    /// Signs a browser in (after a bearer check): a new cookie and CSRF token.
    pub fn sign_in(&self) -> Option<SignIn> {
        let id = random_hex(32)?;
        let csrf = random_hex(32)?;
        let now = self.clock.now();
        let mut browsers = self.browsers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        browsers.retain(|_, s| s.expires_at > now);
        while browsers.len() >= MAX_BROWSER_SESSIONS {
            let oldest = browsers.iter().min_by_key(|(_, s)| s.created_at).map(|(k, _)| *k);
            match oldest {
                Some(key) => browsers.remove(&key),
                None => break,
            };
        }
        let expires_at = now.saturating_add(self.ttl);
        browsers.insert(digest(&id), BrowserSession { csrf: csrf.clone(), expires_at, created_at: now });
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        let set_cookie =
            format!("{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", self.ttl.as_secs());
        Some(SignIn { set_cookie, csrf })
    }

    /// The CSRF token of the browser session in these headers' cookie.
    pub fn csrf_of(&self, headers: &HeaderMap) -> Option<String> {
        let cookie = cookie_value(headers, COOKIE_NAME)?;
        let browsers = self.browsers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        browsers.get(&digest(cookie)).map(|s| s.csrf.clone())
    }

    /// Signs the browser of these headers out; returns the `Set-Cookie` value that clears its cookie.
    pub fn sign_out(&self, headers: &HeaderMap) -> String {
        if let Some(cookie) = cookie_value(headers, COOKIE_NAME) {
            let mut browsers = self.browsers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            browsers.remove(&digest(cookie));
        }
        format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    }
}

fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The auth check as a tower-http authorization layer: the principal goes into the request's
/// extensions; a refusal is a 401 (403 for a missing CSRF token), and an HTML page asked for without
/// credentials gets the sign-in page with its 401.
#[derive(Clone)]
pub struct Authorizer {
    auth: Arc<Auth>,
    page: Arc<Page>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

impl Authorizer {
    /// The check of `auth`; `page` answers a browser that is not signed in.
    pub fn new(auth: Arc<Auth>, page: Arc<Page>) -> Authorizer {
        Authorizer { auth, page }
    }
}

impl<B> tower_http::auth::AsyncAuthorizeRequest<B> for Authorizer {
    type RequestBody = B;
    type ResponseBody = Body;
    type Future = std::future::Ready<Result<Request<B>, Response<Body>>>;

    fn authorize(&mut self, mut request: Request<B>) -> Self::Future {
        let result = match self.auth.check(request.method(), request.headers()) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Ok(request)
            }
            Err(denied) => Err(self.refusal(&request, denied)),
        };
        std::future::ready(result)
    }
}

impl Authorizer {
    fn refusal<B>(&self, request: &Request<B>, denied: Denied) -> Response<Body> {
        let path = request.uri().path();
        let is_page = request.method() == Method::GET && (path == "/" || path.starts_with("/callback/"));
        if is_page && denied == Denied::Unauthorized {
            let mut response = self.page.response();
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            return response;
        }
        let (status, error, detail) = match denied {
            Denied::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send `Authorization: Bearer <token>` (the token file's content) or sign in at /",
            ),
            Denied::Csrf => (StatusCode::FORBIDDEN, "csrf", "a change from the browser page needs its X-CSRF-Token"),
        };
        let body = serde_json::json!({"error": error, "detail": detail}).to_string();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"warden\""));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bearer_cookie_and_csrf() {
        let token = Secret::new("t".repeat(40));
        let auth = Auth::new(&token, Duration::from_secs(60), false, Clock::starting_at(UnixMs::from_millis(0)));
        let mut headers = HeaderMap::new();
        assert_eq!(auth.check(&Method::GET, &headers), Err(Denied::Unauthorized));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", "t".repeat(40))).unwrap());
        assert_eq!(auth.check(&Method::POST, &headers), Ok(Principal::Bearer), "a bearer needs no CSRF token");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer wrong"));
        assert_eq!(auth.check(&Method::GET, &headers), Err(Denied::Unauthorized));

        let sign_in = auth.sign_in().unwrap();
        assert!(sign_in.set_cookie.contains("HttpOnly; SameSite=Strict; Path=/"), "{}", sign_in.set_cookie);
        let id = sign_in.set_cookie.split(';').next().unwrap().to_owned();
        let mut browser = HeaderMap::new();
        browser.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {id}")).unwrap());
        assert_eq!(auth.check(&Method::GET, &browser), Ok(Principal::Browser));
        assert_eq!(auth.check(&Method::POST, &browser), Err(Denied::Csrf));
        browser.insert(CSRF_HEADER, HeaderValue::from_str(&sign_in.csrf).unwrap());
        assert_eq!(auth.check(&Method::POST, &browser), Ok(Principal::Browser));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(auth.check(&Method::GET, &browser), Err(Denied::Unauthorized), "sign-ins expire");
    }

    #[test]
    fn the_token_file_is_made_private_and_refused_when_others_can_read_it() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("serve.token");
        let (made, origin) = load_or_create_token(&path, None).unwrap();
        assert_eq!(origin, TokenOrigin::Created);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (read, origin) = load_or_create_token(&path, None).unwrap();
        assert_eq!((read.expose(), origin), (made.expose(), TokenOrigin::File));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_or_create_token(&path, None), Err(TokenError::Exposed { mode: 0o644, .. })));
        let (env, origin) = load_or_create_token(&path, Some("e".repeat(32))).unwrap();
        assert_eq!((env.expose().len(), origin), (32, TokenOrigin::Environment));
        assert!(matches!(load_or_create_token(&path, Some("short".into())), Err(TokenError::TooShort { .. })));
    }
}
