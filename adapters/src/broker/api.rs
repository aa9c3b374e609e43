//! [`BrokerApi`]: the adapters' `send`, object-safe, for a transparent proxy that holds one
//! `Arc<dyn BrokerApi>` per session.
//!
//! A proxy (`warden serve`) forwards an engine's request to the session's broker with the grant put on
//! by the adapter. It needs four things from an adapter, whatever the broker: where a path goes
//! ([`BrokerApi::url`]: Kite's and IBKR's API root, Kotak's `baseUrl` from the grant, the session's
//! configured root for Saxo and OAuth2), whether the broker documents a de-duplication feature an
//! `Idempotency-Key` can map to ([`BrokerApi::apply_idempotency_key`]), the answer whatever its status
//! ([`BrokerApi::send_raw`], the raw mode of the adapters' `send`: a broker's own error answer is passed
//! on as it was sent), and the adapter's reading of that answer (its error, classified by the session's
//! `Broker::classify`).
//!
//! Every adapter implements it; [`PlainApi`] serves any [`Broker`] whose calls carry what
//! `Broker::authorize` puts on them and whose errors are plain HTTP statuses (tests, simple bearer APIs).
//!
//! | adapter | URL of a path | `Idempotency-Key` maps to |
//! | --- | --- | --- |
//! | Saxo | the session's API root (`https://gateway.saxobank.com/sim/openapi`) | `x-request-id` on order operations (`/trade/…/orders…`, not GET): Saxo refuses an order operation repeated within 15 s with the same id (409) |
//! | IBKR | `base_url` (or the session's root) | nothing yet |
//! | Kotak Neo | the grant's `baseUrl`, with `sId` | nothing |
//! | Kite | `base_url` (or the session's root) | nothing |
//! | OAuth2 | the session's API root | nothing |

use std::sync::Arc;

use reqwest::{Method, Url};
use warden_engine::{BoxFuture, Broker, BrokerError, BrokerRequest, Grant, UnixMs};

use super::http::{
    ApiRequest, Endpoint, HttpClient, RawAnswer, RawResponse, Wire, error_answer, is_success, send_authorized_raw,
};
use super::{Ibkr, Kite, KotakNeo, OAuth2ClientCredentials, Saxo, join_url};

/// A broker's API as a transparent proxy uses it. Object-safe: hold it as `Arc<dyn BrokerApi>`.
pub trait BrokerApi: Send + Sync + 'static {
    /// The broker's short name (`saxo`).
    fn name(&self) -> &str;

    /// The API root used when the session names none (Kite's and IBKR's `base_url`); `None` when the
    /// root comes from the grant (Kotak) or must be configured (Saxo, OAuth2).
    fn default_base_url(&self) -> Option<Url> {
        None
    }

    /// The URL of `path` (as the caller wrote it, percent-encoding kept) with `query`, for a call made
    /// with `grant`: `base` (the session's configured API root) or [`BrokerApi::default_base_url`],
    /// joined with the path.
    fn url(&self, base: Option<&Url>, grant: &Grant, path: &str, query: Option<&str>) -> Result<Url, BrokerError> {
        let _ = grant;
        let base = base.cloned().or_else(|| self.default_base_url()).ok_or_else(|| {
            BrokerError::not_sent(format!("{}: the session has no API base URL configured", self.name()))
        })?;
        let mut url = join_url(&base, path);
        url.set_query(query.filter(|q| !q.is_empty()));
        Ok(url)
    }

    /// Puts an idempotency key on `request` if the broker documents a de-duplication feature this request
    /// can use (a client order id, a request id it refuses to repeat); returns whether it did. The default
    /// does nothing: the key then changes nothing about retries.
    fn apply_idempotency_key(&self, request: &mut ApiRequest, key: &str) -> bool {
        let _ = (request, key);
        false
    }

    /// Sends `request` authorised with `grant` and returns the answer whatever its status, with the
    /// adapter's reading of it. `Err` only when no answer was read (never sent, timed out, connection lost,
    /// too large).
    fn send_raw<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<RawAnswer, BrokerError>>;
}

impl BrokerApi for Saxo {
    fn name(&self) -> &str {
        "saxo"
    }

    fn apply_idempotency_key(&self, request: &mut ApiRequest, key: &str) -> bool {
        let path = Url::parse(&request.url).map(|u| u.path().to_owned()).unwrap_or_default();
        if request.method == Method::GET || !saxo_order_operation(&path) {
            return false;
        }
        request.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("x-request-id"));
        request.headers.push(("x-request-id".to_owned(), key.to_owned()));
        true
    }

    fn send_raw<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<RawAnswer, BrokerError>> {
        Box::pin(Saxo::send_raw(self, now, grant, request))
    }
}

/// Whether a path is one of Saxo's order operations (`/trade/v2/orders`, `/sim/openapi/trade/v2/orders/…`).
fn saxo_order_operation(path: &str) -> bool {
    let mut segments = path.split('/').skip_while(|s| *s != "trade");
    segments.next().is_some() && segments.nth(1).is_some_and(|s| s == "orders")
}

impl BrokerApi for Ibkr {
    fn name(&self) -> &str {
        "ibkr"
    }

    fn default_base_url(&self) -> Option<Url> {
        Url::parse(&self.api_url("")).ok()
    }

    fn send_raw<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<RawAnswer, BrokerError>> {
        Box::pin(Ibkr::send_raw(self, now, grant, request))
    }
}

impl BrokerApi for Kite {
    fn name(&self) -> &str {
        "kite"
    }

    fn default_base_url(&self) -> Option<Url> {
        Url::parse(&self.api_url("")).ok()
    }

    fn send_raw<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<RawAnswer, BrokerError>> {
        Box::pin(Kite::send_raw(self, now, grant, request))
    }
}

impl BrokerApi for KotakNeo {
    fn name(&self) -> &str {
        "kotak"
    }

    /// Kotak's API root is the `baseUrl` of the grant (the login says which server the account is on),
    /// with its `sId`; a configured root is not used.
    fn url(&self, _base: Option<&Url>, grant: &Grant, path: &str, query: Option<&str>) -> Result<Url, BrokerError> {
        let text = KotakNeo::api_url(grant, path)?;
        let mut url = Url::parse(&text).map_err(|e| BrokerError::not_sent(format!("kotak: the API URL ({e})")))?;
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            let merged = match url.query() {
                Some(server) if !server.is_empty() => format!("{query}&{server}"),
                _ => query.to_owned(),
            };
            url.set_query(Some(&merged));
        }
        Ok(url)
    }

    fn send_raw<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<RawAnswer, BrokerError>> {
        Box::pin(KotakNeo::send_raw(self, now, grant, request))
    }
}

impl BrokerApi for OAuth2ClientCredentials {
    fn name(&self) -> &str {
        "oauth2"
    }

    fn send_raw<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<RawAnswer, BrokerError>> {
        Box::pin(OAuth2ClientCredentials::send_raw(self, now, grant, request))
    }
}

/// The wire format of [`PlainApi`]: no endpoint classes, every non-2xx answer an error.
const PLAIN_WIRE: Wire = Wire { name: "api", limits: &[], read_error: plain_error };

fn plain_error(endpoint: &Endpoint, raw: &RawResponse, now: UnixMs) -> Option<BrokerError> {
    (!is_success(raw.status)).then(|| error_answer(endpoint, raw, now, None, None))
}

/// Any [`Broker`] as a [`BrokerApi`]: calls go to `base_url` with what the broker's `authorize` puts
/// on them (a bearer header by default), and every answer that is not 2xx is an error read from its
/// status alone (the session's `Broker::classify` says what it means).
#[derive(Clone)]
pub struct PlainApi {
    broker: Arc<dyn Broker>,
    base_url: Url,
    http: HttpClient,
}

impl std::fmt::Debug for PlainApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainApi")
            .field("broker", &self.broker.name())
            .field("base_url", &self.base_url.as_str())
            .finish()
    }
}

impl PlainApi {
    /// Calls to `base_url`, authorised by `broker`, sent through `http`.
    pub fn new(broker: Arc<dyn Broker>, base_url: Url, http: HttpClient) -> PlainApi {
        PlainApi { broker, base_url, http }
    }
}

impl BrokerApi for PlainApi {
    fn name(&self) -> &str {
        self.broker.name()
    }

    fn default_base_url(&self) -> Option<Url> {
        Some(self.base_url.clone())
    }

    fn send_raw<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<RawAnswer, BrokerError>> {
        let authorize = |g: &Grant, r: &mut BrokerRequest| self.broker.authorize(g, r);
        Box::pin(async move { send_authorized_raw(&self.http, &PLAIN_WIRE, &authorize, now, grant, request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{HttpSettings, KotakSettings, SaxoSettings};

    fn http() -> HttpClient {
        HttpClient::new(HttpSettings::default()).expect("client")
    }

    #[test]
    fn urls_join_the_root_and_keep_the_query() {
        let saxo = Saxo::new(SaxoSettings::simulation("https://app.example/cb"), http()).unwrap();
        let grant = Grant::new("T", UnixMs::EPOCH);
        let base = Url::parse("https://gateway.saxobank.com/sim/openapi/").unwrap();
        let url = saxo.url(Some(&base), &grant, "/port/v1/balances/me", Some("FieldGroups=A%2CB")).unwrap();
        assert_eq!(url.as_str(), "https://gateway.saxobank.com/sim/openapi/port/v1/balances/me?FieldGroups=A%2CB");
        assert!(saxo.url(None, &grant, "/x", None).is_err(), "Saxo needs a configured root");
        let kotak = KotakNeo::new(KotakSettings::default(), http()).unwrap();
        let grant = grant.with_extra("base_url", "https://e21.example/").with_extra("hs_server_id", "7");
        let url = kotak.url(Some(&base), &grant, "quick/user/limits", Some("segment=ALL")).unwrap();
        assert_eq!(url.as_str(), "https://e21.example/quick/user/limits?segment=ALL&sId=7");
    }

    #[test]
    fn saxo_maps_idempotency_keys_on_order_operations_only() {
        let saxo = Saxo::new(SaxoSettings::simulation("https://app.example/cb"), http()).unwrap();
        let mut order = ApiRequest::post("https://gateway.saxobank.com/sim/openapi/trade/v2/orders");
        assert!(saxo.apply_idempotency_key(&mut order, "k-1"));
        assert_eq!(order.headers, [("x-request-id".to_owned(), "k-1".to_owned())]);
        let mut read = ApiRequest::get("https://gateway.saxobank.com/sim/openapi/trade/v2/orders");
        assert!(!saxo.apply_idempotency_key(&mut read, "k-1"), "a GET needs no key");
        let mut other = ApiRequest::post("https://gateway.saxobank.com/sim/openapi/port/v1/orders");
        assert!(!saxo.apply_idempotency_key(&mut other, "k-1"), "not a trade order operation");
        assert!(saxo_order_operation("/trade/v2/orders/123"));
        assert!(!saxo_order_operation("/trade/v2/positions"));
    }
}
