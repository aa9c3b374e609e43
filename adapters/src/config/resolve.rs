//! From `warden.toml` as written ([`super::raw`]) to a [`WardenConfig`]: adapter settings checked per
//! broker, credentials checked by name and kept as references, each session's policy built from its
//! preset with the broker's hints and both `[policy]` tables, and checked against the token lifetime the
//! broker's settings declare. Every problem is a [`ConfigError`] located at the key.

use std::path::PathBuf;
use std::time::Duration;

use warden_engine::policy::{BrokerHints, DailyCutoff, LocalTime, PolicyFile, Rate};
use warden_engine::time::{HumanDuration, format_duration};
use warden_engine::{Policy, PolicyError, SessionId};

use super::error::ConfigError;
use super::locate::{Document, KeyPath};
use super::located::{Locator, suggest, syntax_problem};
use super::raw::{
    BrokerName, ClientAuthName, DurabilityName, RESERVED_TABLES, RawCluster, RawConfig, RawHttp, RawSession, RawStore,
    SaxoEnvironment,
};
use super::sources::SecretRef;
use super::{AdapterConfig, ClusterConfig, ConfiguredSession, CredentialRef, KeyRef, StoreConfig, WardenConfig};
use crate::broker::{
    ClientAuth, HttpSettings, IbkrSettings, KiteSettings, KotakSettings, OAuth2Settings, SaxoSettings, parse_base_url,
};
use crate::store::FlushPolicy;

type Result<T> = std::result::Result<T, ConfigError>;

/// The largest `max_response_bytes` accepted (1 GiB).
const MAX_RESPONSE_BYTES_LIMIT: u64 = 1 << 30;
/// Most sessions in one file.
const MAX_SESSIONS: usize = 10_000;

/// Parses and resolves a configuration text.
pub(crate) fn parse(text: &str, origin: &str) -> Result<WardenConfig> {
    let doc = Document::parse(text).map_err(|e| {
        let p = syntax_problem(origin, text, &e);
        ConfigError::Syntax { origin: p.origin, line: p.line, column: p.column, problem: p.problem }
    })?;
    let loc = Locator::new(origin, &doc);
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::from(loc.toml_error(&e)))?;
    resolve(&loc, raw)
}

fn resolve(loc: &Locator<'_>, raw: RawConfig) -> Result<WardenConfig> {
    let root = KeyPath::root();
    let mut warnings = Vec::new();
    for name in RESERVED_TABLES {
        let path = root.key(name);
        if loc.doc.has(&path) {
            warnings.push(loc.invalid(&path, "is reserved for a later version of warden; it is ignored"));
        }
    }
    let _ = &raw.serve;
    let store = resolve_store(loc, raw.store, raw.allow_inline_secrets)?;
    let cluster = match raw.cluster {
        Some(cluster) => Some(resolve_cluster(loc, cluster, &store)?),
        None => None,
    };
    let http = http_settings(loc, &root.key("http"), HttpSettings::default(), &raw.http)?;
    if raw.sessions.0.is_empty() {
        let problem = "no session is configured: add a [sessions.NAME] table with a `broker`".to_owned();
        return Err(loc.message_at(&root, problem).into());
    }
    if raw.sessions.0.len() > MAX_SESSIONS {
        return Err(loc.invalid(&root.key("sessions"), format!("at most {MAX_SESSIONS} sessions are allowed")).into());
    }
    // toml hands the tables over sorted by name; put them back in the order they are written.
    let mut written = raw.sessions.0;
    written.sort_by_key(|(id, _)| loc.doc.span_of(&KeyPath::of(&["sessions", id])).start);
    let mut sessions = Vec::with_capacity(written.len());
    for (id, session) in written {
        sessions.push(resolve_session(loc, &id, session, &http, &raw.policy, raw.allow_inline_secrets)?);
    }
    Ok(WardenConfig {
        origin: loc.origin.to_owned(),
        store,
        cluster,
        sessions,
        allow_inline_secrets: raw.allow_inline_secrets,
        warnings,
    })
}

fn resolve_store(loc: &Locator<'_>, raw: RawStore, allow_inline: bool) -> Result<StoreConfig> {
    let path = KeyPath::of(&["store"]);
    if raw.path.trim().is_empty() {
        return Err(loc.invalid(&path.key("path"), "must name the store's database directory").into());
    }
    let key_ref = |name: &str, text: &Option<String>| -> Result<Option<KeyRef>> {
        let Some(text) = text else { return Ok(None) };
        if text == "auto" {
            return Ok(Some(KeyRef::Auto));
        }
        let at = path.key(name);
        let source = SecretRef::parse(text).map_err(|e| loc.invalid(&at, e))?;
        if source.is_inline() && !allow_inline {
            return Err(loc.invalid(&at, inline_refusal("\"auto\", \"env:NAME\" or \"file:PATH\"")).into());
        }
        Ok(Some(KeyRef::Source { source, place: loc.place(&at) }))
    };
    let key = key_ref("key", &raw.key)?.unwrap_or(KeyRef::Auto);
    let previous_key = key_ref("previous_key", &raw.previous_key)?;
    if matches!(previous_key, Some(KeyRef::Auto)) {
        let problem = r#"must name the old key ("env:NAME" or "file:PATH"), not "auto""#;
        return Err(loc.invalid(&path.key("previous_key"), problem).into());
    }
    let durability = match raw.durability.unwrap_or(DurabilityName::AsRequested) {
        DurabilityName::AsRequested => FlushPolicy::AsRequested,
        DurabilityName::Always => FlushPolicy::Always,
        DurabilityName::Never => FlushPolicy::Never,
    };
    Ok(StoreConfig { path: PathBuf::from(raw.path), key, previous_key, durability })
}

/// The shortest `lease_ttl` accepted: a member renews every third of it, a store round trip each.
const MIN_LEASE_TTL: Duration = Duration::from_secs(1);
/// The default `lease_ttl`.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

fn resolve_cluster(loc: &Locator<'_>, raw: RawCluster, store: &StoreConfig) -> Result<ClusterConfig> {
    let path = KeyPath::of(&["cluster"]);
    let at = path.key("database");
    // Only a reference: the URL may hold a password, and neither the file nor its Debug may.
    let database = match SecretRef::parse(&raw.database) {
        Ok(SecretRef::Env(name)) => name,
        _ => {
            let problem = r#"must name an environment variable holding the PostgreSQL URL ("env:WARDEN_DB_URL"): the URL may hold a password, which does not belong in this file"#;
            return Err(loc.invalid(&at, problem).into());
        }
    };
    let member = warden_engine::MemberName::new(raw.member.as_str()).map_err(|e| {
        loc.invalid(&path.key("member"), format!("{e} (every member needs its own name, e.g. \"warden-1\")"))
    })?;
    let lease_ttl = match positive(loc, &path.key("lease_ttl"), raw.lease_ttl)? {
        Some(ttl) if ttl < MIN_LEASE_TTL => {
            let problem =
                format!("must be at least {} (it is renewed every third of it)", format_duration(MIN_LEASE_TTL));
            return Err(loc.invalid(&path.key("lease_ttl"), problem).into());
        }
        Some(ttl) => ttl,
        None => DEFAULT_LEASE_TTL,
    };
    if matches!(store.key, KeyRef::Auto) {
        let problem = r#"with [cluster], every member must seal records with the same key: write `key = "env:NAME"` or `key = "file:PATH"` in [store] ("auto" would make a key per machine)"#;
        return Err(loc.message_at(&KeyPath::of(&["store"]), problem.to_owned()).into());
    }
    Ok(ClusterConfig { database_env: database, member, lease_ttl, place: loc.place(&path) })
}

/// The message for an inline secret without `allow_inline_secrets`.
fn inline_refusal(write: &str) -> String {
    format!(
        "an inline secret is refused: write {write} (or set `allow_inline_secrets = true` at the top level, for a \
         file that never leaves this machine)"
    )
}

fn positive(loc: &Locator<'_>, path: &KeyPath, value: Option<HumanDuration>) -> Result<Option<Duration>> {
    match value {
        Some(d) if d.0.is_zero() => Err(loc.invalid(path, "must be longer than zero").into()),
        other => Ok(other.map(|d| d.0)),
    }
}

fn http_settings(loc: &Locator<'_>, table: &KeyPath, base: HttpSettings, raw: &RawHttp) -> Result<HttpSettings> {
    let mut settings = base;
    if let Some(d) = positive(loc, &table.key("connect_timeout"), raw.connect_timeout)? {
        settings.connect_timeout = d;
    }
    if let Some(d) = positive(loc, &table.key("request_timeout"), raw.request_timeout)? {
        settings.request_timeout = d;
    }
    if let Some(bytes) = raw.max_response_bytes {
        if bytes == 0 || bytes > MAX_RESPONSE_BYTES_LIMIT {
            let problem = format!("must be between 1 and {MAX_RESPONSE_BYTES_LIMIT} (1 GiB)");
            return Err(loc.invalid(&table.key("max_response_bytes"), problem).into());
        }
        settings.max_response_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    if let Some(agent) = &raw.user_agent {
        if agent.trim().is_empty() || agent.chars().any(char::is_control) {
            return Err(loc.invalid(&table.key("user_agent"), "must be printable text").into());
        }
        settings.user_agent = agent.clone();
    }
    Ok(settings)
}

fn resolve_session(
    loc: &Locator<'_>,
    id: &str,
    raw: RawSession,
    http: &HttpSettings,
    default_policy: &PolicyFile,
    allow_inline: bool,
) -> Result<ConfiguredSession> {
    let path = KeyPath::of(&["sessions", id]);
    let session_id =
        SessionId::new(id).map_err(|e| loc.message_at(&path, format!("`{path}`: not a usable session id: {e}")))?;
    let broker = raw.broker;
    let allowed = broker.settings();
    for name in raw.written_settings() {
        if !allowed.contains(&name) {
            let problem = format!("is not a setting of broker `{broker}` (its settings: {})", allowed.join(", "));
            return Err(loc.invalid(&path.key(name), problem).into());
        }
    }
    if let Some(account) = &raw.account
        && account.trim().is_empty()
    {
        return Err(loc.invalid(&path.key("account"), "must not be empty (leave it out to use the session id)").into());
    }
    let session_http = RawHttp {
        connect_timeout: raw.connect_timeout,
        request_timeout: raw.request_timeout,
        max_response_bytes: raw.max_response_bytes,
        user_agent: None,
    };
    let http = http_settings(loc, &path, http.clone(), &session_http)?;
    let adapter = adapter_config(loc, &path, broker, &raw)?;
    let credentials = credentials(loc, &path, broker, &raw, allow_inline)?;
    let policy = session_policy(loc, &path, broker, &adapter, default_policy, &raw.policy)?;
    Ok(ConfiguredSession {
        id: session_id,
        account: raw.account,
        seed: raw.seed.unwrap_or(0),
        adapter,
        http,
        policy,
        credentials,
        place: loc.place(&path),
    })
}

fn url(loc: &Locator<'_>, path: &KeyPath, name: &'static str, text: &str) -> Result<String> {
    parse_base_url(name, text).map_err(|e| {
        let problem = match e {
            crate::broker::AdapterError::Setting { problem, .. } => problem,
            other => other.to_string(),
        };
        loc.invalid(&path.key(name), problem)
    })?;
    Ok(text.to_owned())
}

fn non_empty(loc: &Locator<'_>, path: &KeyPath, name: &str, text: &str) -> Result<String> {
    if text.trim().is_empty() {
        return Err(loc.invalid(&path.key(name), "must not be empty").into());
    }
    Ok(text.to_owned())
}

fn required<'r>(
    loc: &Locator<'_>,
    path: &KeyPath,
    broker: BrokerName,
    name: &str,
    value: &'r Option<String>,
) -> Result<&'r str> {
    value.as_deref().ok_or_else(|| {
        let problem = format!("missing key `{name}` in [{path}] (broker `{broker}` needs it)");
        ConfigError::from(loc.message_at(&path.key(name), problem))
    })
}

fn client_auth(name: Option<ClientAuthName>) -> ClientAuth {
    match name {
        Some(ClientAuthName::Form) => ClientAuth::Form,
        Some(ClientAuthName::Basic) | None => ClientAuth::Basic,
    }
}

fn adapter_config(loc: &Locator<'_>, path: &KeyPath, broker: BrokerName, raw: &RawSession) -> Result<AdapterConfig> {
    let token_lifetime = positive(loc, &path.key("token_lifetime"), raw.token_lifetime)?;
    Ok(match broker {
        BrokerName::Saxo => {
            let redirect_uri =
                non_empty(loc, path, "redirect_uri", required(loc, path, broker, "redirect_uri", &raw.redirect_uri)?)?;
            let mut settings = match raw.environment {
                Some(SaxoEnvironment::Simulation) => SaxoSettings::simulation(redirect_uri),
                Some(SaxoEnvironment::Live) | None => SaxoSettings::live(redirect_uri),
            };
            if let Some(auth_url) = &raw.auth_url {
                if raw.environment.is_some() {
                    let problem = "give either `environment` or `auth_url`, not both";
                    return Err(loc.invalid(&path.key("auth_url"), problem).into());
                }
                settings.auth_url = url(loc, path, "auth_url", auth_url)?;
            } else if raw.environment.is_none() {
                let problem = format!(
                    "missing key `environment` in [{path}] (broker `saxo` needs \"live\" or \"simulation\", or an `auth_url`)"
                );
                return Err(loc.message_at(&path.key("environment"), problem).into());
            }
            settings.client_auth = client_auth(raw.client_auth);
            if let Some(d) = token_lifetime {
                settings.token_lifetime = d;
            }
            if let Some(d) = positive(loc, &path.key("refresh_lifetime"), raw.refresh_lifetime)? {
                settings.refresh_lifetime = d;
            }
            AdapterConfig::Saxo(settings)
        }
        BrokerName::Ibkr => {
            let mut settings = IbkrSettings::default();
            if let Some(base) = &raw.base_url {
                settings.base_url = url(loc, path, "base_url", base)?;
            }
            if let Some(realm) = &raw.realm {
                settings.realm = non_empty(loc, path, "realm", realm)?;
            }
            if let Some(d) = token_lifetime {
                settings.lst_lifetime = d;
            }
            AdapterConfig::Ibkr(settings)
        }
        BrokerName::KotakNeo => {
            let mut settings = KotakSettings::default();
            if let Some(login) = &raw.login_url {
                settings.login_url = url(loc, path, "login_url", login)?;
            }
            if let Some(key) = &raw.neo_fin_key {
                settings.neo_fin_key = non_empty(loc, path, "neo_fin_key", key)?;
            }
            if let Some(d) = token_lifetime {
                settings.token_lifetime = d;
            }
            AdapterConfig::KotakNeo(settings)
        }
        BrokerName::Kite => {
            let mut settings = KiteSettings::default();
            if let Some(base) = &raw.base_url {
                settings.base_url = url(loc, path, "base_url", base)?;
            }
            AdapterConfig::Kite(settings)
        }
        BrokerName::Oauth2 => {
            let token_url = url(loc, path, "token_url", required(loc, path, broker, "token_url", &raw.token_url)?)?;
            let scope = match &raw.scope {
                Some(scope) => Some(non_empty(loc, path, "scope", scope)?),
                None => None,
            };
            let api_hosts = raw.api_hosts.clone().unwrap_or_default();
            if let Some(i) = api_hosts.iter().position(|h| h.trim().is_empty() || h.contains('/')) {
                let problem = "must be a host name, with a port if any (`api.example.com`, `127.0.0.1:8080`)";
                return Err(loc.invalid(&path.key("api_hosts").index(i), problem).into());
            }
            let settings = OAuth2Settings {
                token_url,
                scope,
                client_auth: client_auth(raw.client_auth),
                api_hosts,
                token_lifetime,
            };
            AdapterConfig::OAuth2(settings)
        }
    })
}

fn credentials(
    loc: &Locator<'_>,
    path: &KeyPath,
    broker: BrokerName,
    raw: &RawSession,
    allow_inline: bool,
) -> Result<Vec<CredentialRef>> {
    let table = path.key("credentials");
    let (needed, optional) = broker.credentials();
    let known: Vec<&str> = needed.iter().chain(optional).copied().collect();
    for name in raw.credentials.keys() {
        if !known.contains(&name.as_str()) {
            let problem = format!(
                "unknown credential `{name}` in [{table}] (broker `{broker}` takes {}){}",
                known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
                suggest(name, &known)
            );
            return Err(loc.message_at(&table.key(name), problem).into());
        }
    }
    for name in needed {
        if !raw.credentials.contains_key(*name) {
            let problem = format!(
                "missing credential `{name}` in [{table}] (broker `{broker}` needs {})",
                needed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            );
            return Err(loc.message_at(&table.key(name), problem).into());
        }
    }
    let mut refs = Vec::with_capacity(raw.credentials.len());
    for (name, value) in &raw.credentials {
        let at = table.key(name);
        let source = SecretRef::parse(value.0.expose()).map_err(|e| loc.invalid(&at, e))?;
        if source.is_inline() && !allow_inline {
            return Err(loc.invalid(&at, inline_refusal("\"env:NAME\" or \"file:PATH\"")).into());
        }
        refs.push(CredentialRef { name: name.clone(), source, place: loc.place(&at) });
    }
    Ok(refs)
}

/// What each broker is known to need, for the presets (the same facts the simulator's models use).
pub(crate) fn hints(broker: BrokerName) -> BrokerHints {
    let mut hints = BrokerHints::default();
    let rate = |max, secs| Some(Rate { max, per: HumanDuration(Duration::from_secs(secs)) });
    match broker {
        BrokerName::Saxo => {
            hints.refresh_buffer = Some(Duration::from_secs(30));
            hints.request_rate = rate(120, 60);
        }
        BrokerName::Ibkr => {
            hints.keepalive_interval = Some(Duration::from_secs(60));
            hints.request_rate = rate(50, 1);
        }
        BrokerName::KotakNeo => hints.request_rate = rate(10, 1),
        BrokerName::Kite => {
            hints.request_rate = rate(10, 1);
            hints.daily_reset = LocalTime::hm(6, 0).and_then(|at| DailyCutoff::new(at, "Asia/Kolkata").ok());
        }
        BrokerName::Oauth2 => {}
    }
    hints
}

/// The session's policy: its preset (or the top-level one) filled with the broker's hints, the
/// top-level overrides, then the session's, validated against the token lifetime its settings declare.
fn session_policy(
    loc: &Locator<'_>,
    path: &KeyPath,
    broker: BrokerName,
    adapter: &AdapterConfig,
    default: &PolicyFile,
    own: &PolicyFile,
) -> Result<Policy> {
    let preset = own.preset.or(default.preset).unwrap_or_default();
    let mut policy = Policy::preset_for(preset, &hints(broker));
    default.clone().apply_to(&mut policy);
    own.clone().apply_to(&mut policy);
    let checked = match adapter.token_lifetime() {
        Some(lifetime) => policy.validate_for_lifetime(lifetime),
        None => policy.validate(),
    };
    checked.map_err(|e| policy_error(loc, path, broker, &e))?;
    Ok(policy)
}

/// A policy error, pointed at the setting it names where it is written (the session's `[policy]`, then
/// the top-level one), else at the preset that set it, else at the session's `broker`.
fn policy_error(loc: &Locator<'_>, session: &KeyPath, broker: BrokerName, error: &PolicyError) -> ConfigError {
    let setting = match error {
        PolicyError::Zero { setting }
        | PolicyError::ZeroRate { setting, .. }
        | PolicyError::ZeroCount { setting }
        | PolicyError::Fraction { setting, .. }
        | PolicyError::LongerThanLifetime { setting, .. } => Some(*setting),
        PolicyError::Multiplier { .. } => Some("backoff.multiplier"),
        PolicyError::BackoffOrder { .. } => Some("backoff.min"),
        _ => None,
    };
    let under = |table: KeyPath| {
        setting.unwrap_or("").split('.').filter(|p| !p.is_empty()).fold(table, |path, part| path.key(part))
    };
    let own = under(session.key("policy"));
    let top = under(KeyPath::of(&["policy"]));
    let candidates =
        [own.clone(), top.clone(), session.key("policy").key("preset"), KeyPath::of(&["policy", "preset"])];
    let at = candidates.into_iter().find(|p| loc.doc.has(p)).unwrap_or_else(|| session.key("broker"));
    let problem = match error {
        PolicyError::LongerThanLifetime { setting, value, lifetime } => format!(
            "the policy's `{setting}` ({}) must be shorter than the token lifetime of broker `{broker}` ({}){}",
            format_duration(*value),
            format_duration(*lifetime),
            if at == own || at == top { "" } else { " — the preset sets it; override it in the session's [policy]" }
        ),
        other => other.to_string(),
    };
    loc.invalid(&at, problem).into()
}
