//! The client side of a mock: warden's real adapter (`warden_adapters::broker`) configured for a mock's
//! URLs, the account's client credentials, and the wire form of a quote and an order for each broker.
//!
//! ```no_run
//! # async fn demo(mock: warden_sim::mock::MockBroker, clock: warden_actors::Clock) -> Result<(), Box<dyn std::error::Error>> {
//! use warden_adapters::broker::{HttpClient, HttpSettings};
//! use warden_sim::mock::client::MockClient;
//!
//! let http = HttpClient::new(HttpSettings::default())?;
//! let client = MockClient::for_mock(&mock, http, clock)?;
//! let broker = client.broker();                    // an Arc<dyn Broker> for a SessionSpec
//! let credentials = client.credentials().clone();  // the demo account's client side
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use warden_actors::Clock;
use warden_adapters::broker::{
    AdapterError, ApiRequest, ApiResponse, ClientAuth, HttpClient, Ibkr, IbkrSettings, Kite, KiteSettings, KotakNeo,
    KotakSettings, OAuth2ClientCredentials, OAuth2Settings, Saxo, SaxoSettings,
};
use warden_engine::{Broker, BrokerError, Credentials, Grant, UnixMs};

use super::MockBroker;
use super::account::{Account, ibkr_demo};

/// The IBKR account number the mock's order routes use.
pub const IBKR_ACCOUNT_ID: &str = "U1234567";

/// The credentials of the IBKR demo account's client side (what `ibkr::credentials_from_files` would
/// read from `sim/fixtures/ibkr-demo/client`).
pub fn ibkr_demo_credentials() -> Credentials {
    let Ok(Account::Ibkr(account)) = Account::demo(crate::model::ModelKind::Ibkr) else {
        return Credentials::new();
    };
    Credentials::new()
        .with("consumer_key", account.consumer_key.clone())
        .with("access_token", account.access_token.clone())
        .with("access_token_secret", ibkr_demo::CLIENT_SECRET_B64.trim())
        .with("signature_key", ibkr_demo::CLIENT_SIGNATURE_KEY)
        .with("encryption_key", ibkr_demo::CLIENT_ENCRYPTION_KEY)
        .with("dh_prime", account.dh.prime.to_str_radix(16))
        .with("dh_generator", account.dh.generator.to_string())
}

/// Why a client for a mock could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The adapter refused its settings.
    #[error("the adapter for the mock: {0}")]
    Adapter(#[from] AdapterError),
}

/// One broker's adapter, pointed at a mock.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Adapter {
    /// Saxo.
    Saxo(Arc<Saxo>),
    /// IBKR.
    Ibkr(Arc<Ibkr>),
    /// Kotak Neo.
    Kotak(Arc<KotakNeo>),
    /// Kite.
    Kite(Arc<Kite>),
    /// OAuth 2.0 client credentials.
    OAuth2(Arc<OAuth2ClientCredentials>),
}

/// warden's adapter for a mock, with the account's credentials.
#[derive(Clone, Debug)]
pub struct MockClient {
    adapter: Adapter,
    base_url: String,
    credentials: Credentials,
}

impl MockClient {
    /// The adapter of `mock`'s broker, configured for its URLs, with its account's client credentials
    /// (for IBKR the demo account's keys: a mock with another account needs
    /// [`MockClient::with_credentials`]). `clock` stamps IBKR's signatures.
    pub fn for_mock(mock: &MockBroker, http: HttpClient, clock: Clock) -> Result<MockClient, ClientError> {
        let base = mock.base_url().to_owned();
        let lifetime = mock.model().token_lifetime();
        let account = mock.account();
        let (adapter, credentials) = match account {
            Account::Saxo(a) => {
                let settings = SaxoSettings {
                    auth_url: base.clone(),
                    redirect_uri: a.redirect_uri.clone(),
                    client_auth: ClientAuth::Basic,
                    token_lifetime: lifetime,
                    refresh_lifetime: mock.model().spec().refresh_lifetime.unwrap_or(lifetime),
                };
                (Adapter::Saxo(Arc::new(Saxo::new(settings, http)?)), account.client_credentials())
            }
            Account::Ibkr(a) => {
                let settings =
                    IbkrSettings { base_url: format!("{base}/v1/api"), realm: a.realm.clone(), lst_lifetime: lifetime };
                let ibkr = Ibkr::new(settings, http, Arc::new(move || clock.now()))?;
                (Adapter::Ibkr(Arc::new(ibkr)), ibkr_demo_credentials())
            }
            Account::Kotak(_) => {
                let settings =
                    KotakSettings { login_url: base.clone(), token_lifetime: lifetime, ..KotakSettings::default() };
                (Adapter::Kotak(Arc::new(KotakNeo::new(settings, http)?)), account.client_credentials())
            }
            Account::Kite(_) => {
                let kite = Kite::new(KiteSettings { base_url: base.clone() }, http)?;
                (Adapter::Kite(Arc::new(kite)), account.client_credentials())
            }
            Account::OAuth2(_) => {
                let settings = OAuth2Settings {
                    token_url: format!("{base}/oauth2/token"),
                    scope: None,
                    client_auth: ClientAuth::Basic,
                    api_hosts: vec![base.trim_start_matches("http://").to_owned()],
                    token_lifetime: Some(lifetime),
                };
                (Adapter::OAuth2(Arc::new(OAuth2ClientCredentials::new(settings, http)?)), account.client_credentials())
            }
        };
        Ok(MockClient { adapter, base_url: base, credentials })
    }

    /// The same client with other credentials.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Credentials) -> MockClient {
        self.credentials = credentials;
        self
    }

    /// The adapter.
    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }

    /// The adapter as the engine's `Broker` port (for a `SessionSpec`).
    pub fn broker(&self) -> Arc<dyn Broker> {
        match &self.adapter {
            Adapter::Saxo(a) => a.clone(),
            Adapter::Ibkr(a) => a.clone(),
            Adapter::Kotak(a) => a.clone(),
            Adapter::Kite(a) => a.clone(),
            Adapter::OAuth2(a) => a.clone(),
        }
    }

    /// The credentials a session logs in with.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Sends `request` through the adapter with `grant` (its `send`).
    pub async fn send(&self, now: UnixMs, grant: &Grant, request: ApiRequest) -> Result<ApiResponse, BrokerError> {
        match &self.adapter {
            Adapter::Saxo(a) => a.send(now, grant, request).await,
            Adapter::Ibkr(a) => a.send(now, grant, request).await,
            Adapter::Kotak(a) => a.send(now, grant, request).await,
            Adapter::Kite(a) => a.send(now, grant, request).await,
            Adapter::OAuth2(a) => a.send(now, grant, request).await,
        }
    }

    /// A quote request of the broker's wire format (an idempotent read).
    pub fn quote(&self, grant: &Grant) -> Result<ApiRequest, BrokerError> {
        let base = &self.base_url;
        Ok(match &self.adapter {
            Adapter::Saxo(_) => ApiRequest::get(format!("{base}/openapi/trade/v1/infoprices?Uic=21&AssetType=FxSpot")),
            Adapter::Ibkr(_) => {
                ApiRequest::get(format!("{base}/v1/api/iserver/marketdata/snapshot?conids=265598&fields=31"))
            }
            Adapter::Kotak(_) => {
                ApiRequest::get(KotakNeo::api_url(grant, "script-details/1.0/quotes/neosymbol/nse_cm%7C11536/all")?)
            }
            Adapter::Kite(_) => ApiRequest::get(format!("{base}/quote?i=NSE:INFY")),
            Adapter::OAuth2(_) => ApiRequest::get(format!("{base}/api/v1/quote?symbol=ACME")),
        })
    }

    /// An order of the broker's wire format with `client_order_id` (the broker's client order id field:
    /// Kite `tag`, Kotak `ig`, Saxo `ExternalReference`, IBKR `cOID`, OAuth2 `client_order_id`).
    pub fn order(&self, grant: &Grant, client_order_id: &str) -> Result<ApiRequest, BrokerError> {
        let base = &self.base_url;
        let pairs = |items: &[(&str, &str)]| items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Ok(match &self.adapter {
            Adapter::Saxo(_) => ApiRequest::post(format!("{base}/openapi/trade/v2/orders")).json(serde_json::json!({
                "AccountKey": "mock-account-key", "Uic": 21, "AssetType": "FxSpot", "BuySell": "Buy",
                "Amount": 1000, "OrderType": "Market", "ManualOrder": false, "ExternalReference": client_order_id,
            })),
            Adapter::Ibkr(_) => ApiRequest::post(format!("{base}/v1/api/iserver/account/{IBKR_ACCOUNT_ID}/orders"))
                .json(serde_json::json!({"orders": [{
                    "conid": 265598, "orderType": "MKT", "side": "BUY", "quantity": 1, "tif": "DAY",
                    "cOID": client_order_id,
                }]})),
            Adapter::Kotak(_) => {
                let order = serde_json::json!({
                    "am": "NO", "dq": "0", "es": "nse_cm", "mp": "0", "pc": "CNC", "pf": "N", "pr": "0", "pt": "MKT",
                    "qt": "1", "rt": "DAY", "tp": "0", "ts": "INFY-EQ", "tt": "B", "ig": client_order_id,
                });
                ApiRequest::post(KotakNeo::api_url(grant, "quick/order/rule/ms/place")?)
                    .form(vec![("jData".to_owned(), order.to_string())])
            }
            Adapter::Kite(_) => ApiRequest::post(format!("{base}/orders/regular")).form(pairs(&[
                ("exchange", "NSE"),
                ("tradingsymbol", "INFY"),
                ("transaction_type", "BUY"),
                ("quantity", "1"),
                ("product", "CNC"),
                ("order_type", "MARKET"),
                ("tag", client_order_id),
            ])),
            Adapter::OAuth2(_) => ApiRequest::post(format!("{base}/api/v1/orders")).json(serde_json::json!({
                "symbol": "ACME", "side": "buy", "quantity": 1, "client_order_id": client_order_id,
            })),
        })
    }

    /// The credentials of a session's first login: the account's, plus a person's login code where the
    /// broker's wire login needs one (Kite's `request_token`, Saxo's `authorization_code`), issued now by
    /// the mock's model.
    pub fn first_login_credentials(&self, mock: &MockBroker, now: UnixMs) -> Credentials {
        match &self.adapter {
            Adapter::Kite(_) => self.credentials.clone().with("request_token", mock.model().issue_login_code(now)),
            Adapter::Saxo(_) => self.credentials.clone().with("authorization_code", mock.model().issue_login_code(now)),
            _ => self.credentials.clone(),
        }
    }
}

/// How long a client should wait for a mock at most (connect and answer): the mock holds a request at
/// most [`super::MAX_HOLD`].
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
