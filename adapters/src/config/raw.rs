//! `warden.toml` as written: serde structs with `deny_unknown_fields` everywhere, before any value is
//! checked against another or against the broker it belongs to (that is [`super::resolve`]'s job).
//!
//! A session's table holds the settings of every adapter side by side (`redirect_uri`, `base_url`,
//! `login_url`, …): serde refuses a key no adapter knows, with a suggestion, and the resolver refuses a
//! key that belongs to another broker than the session's, naming the ones its broker takes.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use warden_engine::policy::PolicyFile;
use warden_engine::time::HumanDuration;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub allow_inline_secrets: bool,
    pub store: RawStore,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub policy: PolicyFile,
    #[serde(default)]
    pub sessions: Sessions,
    /// The service's settings: read by `warden serve` (the `warden` crate), accepted and left alone here.
    pub serve: Option<IgnoredAny>,
    /// Several warden processes on one PostgreSQL database.
    pub cluster: Option<RawCluster>,
}

/// The top-level tables that are reserved: accepted and ignored, with a warning (none at present).
pub(crate) const RESERVED_TABLES: [&str; 0] = [];

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub database: String,
    pub member: String,
    pub lease_ttl: Option<HumanDuration>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub path: String,
    pub key: Option<String>,
    pub previous_key: Option<String>,
    pub durability: Option<DurabilityName>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DurabilityName {
    AsRequested,
    Always,
    Never,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub connect_timeout: Option<HumanDuration>,
    pub request_timeout: Option<HumanDuration>,
    pub max_response_bytes: Option<u64>,
    pub user_agent: Option<String>,
}

/// The sessions in the order they are written.
#[derive(Debug, Default)]
pub(crate) struct Sessions(pub Vec<(String, RawSession)>);

impl<'de> Deserialize<'de> for Sessions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sessions, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Sessions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of sessions by id ([sessions.kite-main])")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Sessions, M::Error> {
                let mut sessions = Vec::new();
                while let Some(id) = map.next_key::<String>()? {
                    sessions.push((id, map.next_value::<RawSession>()?));
                }
                Ok(Sessions(sessions))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSession {
    pub broker: BrokerName,
    pub account: Option<String>,
    pub seed: Option<u64>,
    // Saxo.
    pub environment: Option<SaxoEnvironment>,
    pub auth_url: Option<String>,
    pub redirect_uri: Option<String>,
    pub refresh_lifetime: Option<HumanDuration>,
    // Saxo, OAuth2.
    pub client_auth: Option<ClientAuthName>,
    // IBKR, Kite.
    pub base_url: Option<String>,
    // IBKR.
    pub realm: Option<String>,
    // Kotak Neo.
    pub login_url: Option<String>,
    pub neo_fin_key: Option<String>,
    // OAuth2.
    pub token_url: Option<String>,
    pub scope: Option<String>,
    pub api_hosts: Option<Vec<String>>,
    // Saxo, IBKR, Kotak Neo, OAuth2.
    pub token_lifetime: Option<HumanDuration>,
    // The session's own HTTP client settings (over [http]).
    pub connect_timeout: Option<HumanDuration>,
    pub request_timeout: Option<HumanDuration>,
    pub max_response_bytes: Option<u64>,
    #[serde(default)]
    pub credentials: BTreeMap<String, RawSecret>,
    #[serde(default)]
    pub policy: PolicyFile,
}

impl RawSession {
    /// The adapter settings written in this table, by name.
    pub fn written_settings(&self) -> Vec<&'static str> {
        let written = [
            ("environment", self.environment.is_some()),
            ("auth_url", self.auth_url.is_some()),
            ("redirect_uri", self.redirect_uri.is_some()),
            ("refresh_lifetime", self.refresh_lifetime.is_some()),
            ("client_auth", self.client_auth.is_some()),
            ("base_url", self.base_url.is_some()),
            ("realm", self.realm.is_some()),
            ("login_url", self.login_url.is_some()),
            ("neo_fin_key", self.neo_fin_key.is_some()),
            ("token_url", self.token_url.is_some()),
            ("scope", self.scope.is_some()),
            ("api_hosts", self.api_hosts.is_some()),
            ("token_lifetime", self.token_lifetime.is_some()),
        ];
        written.into_iter().filter(|(_, w)| *w).map(|(name, _)| name).collect()
    }
}

/// The brokers warden has adapters for.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BrokerName {
    /// Saxo OpenAPI.
    Saxo,
    /// Interactive Brokers Web API (OAuth 1.0a).
    Ibkr,
    /// Kotak Neo Trade API.
    KotakNeo,
    /// Zerodha Kite Connect.
    Kite,
    /// Any OAuth 2.0 client-credentials server.
    Oauth2,
}

impl BrokerName {
    /// Its name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerName::Saxo => "saxo",
            BrokerName::Ibkr => "ibkr",
            BrokerName::KotakNeo => "kotak_neo",
            BrokerName::Kite => "kite",
            BrokerName::Oauth2 => "oauth2",
        }
    }

    /// The adapter settings its sessions take (besides `broker`, `account`, `seed`, the HTTP settings,
    /// `credentials` and `policy`).
    pub fn settings(self) -> &'static [&'static str] {
        match self {
            BrokerName::Saxo => {
                &["environment", "auth_url", "redirect_uri", "client_auth", "token_lifetime", "refresh_lifetime"]
            }
            BrokerName::Ibkr => &["base_url", "realm", "token_lifetime"],
            BrokerName::KotakNeo => &["login_url", "neo_fin_key", "token_lifetime"],
            BrokerName::Kite => &["base_url"],
            BrokerName::Oauth2 => &["token_url", "scope", "client_auth", "api_hosts", "token_lifetime"],
        }
    }

    /// The credentials its logins need, then the ones they may use.
    pub fn credentials(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            BrokerName::Saxo => (&["app_key", "app_secret"], &["refresh_token", "authorization_code"]),
            BrokerName::Ibkr => (
                &["consumer_key", "access_token", "access_token_secret", "signature_key", "encryption_key", "dh_param"],
                &[],
            ),
            BrokerName::KotakNeo => (&["consumer_key", "mobile_number", "ucc", "mpin"], &["totp_secret"]),
            BrokerName::Kite => (&["api_key", "api_secret"], &["request_token"]),
            BrokerName::Oauth2 => (&["client_id", "client_secret"], &[]),
        }
    }
}

impl fmt::Display for BrokerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SaxoEnvironment {
    Live,
    Simulation,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClientAuthName {
    Basic,
    Form,
}

/// A credential as written: a string (a reference, or an inline secret). Anything else is refused
/// without echoing the value, which might be a secret written as a number.
pub(crate) struct RawSecret(pub warden_engine::Secret);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawSecret(***)")
    }
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawSecret, D::Error> {
        struct V;
        const EXPECTED: &str = r#"expected a reference "env:NAME" or "file:PATH""#;
        fn refuse<E: de::Error>(found: &str) -> E {
            E::custom(format!("{EXPECTED}, found {found}"))
        }
        impl<'de> Visitor<'de> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a reference "env:NAME" or "file:PATH""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecret, E> {
                Ok(RawSecret(warden_engine::Secret::new(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawSecret, E> {
                Err(refuse("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawSecret, E> {
                Err(refuse("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawSecret, E> {
                Err(refuse("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawSecret, E> {
                Err(refuse("a number"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawSecret, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Err(refuse("a list"))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<RawSecret, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Err(refuse("a table or a date"))
            }
        }
        d.deserialize_any(V)
    }
}
