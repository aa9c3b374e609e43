//! `warden.toml`: good files give typed sessions; every kind of bad input is an error that names the file,
//! the line, the key and the problem (with "did you mean" where a name is close) and never a secret; and
//! random mutations of a good file never panic.

use std::time::Duration;

use proptest::prelude::*;
use warden_adapters::broker::ClientAuth;
use warden_adapters::config::{AdapterConfig, BrokerName, ConfigError, KeyRef, StaticEnvironment, WardenConfig};
use warden_adapters::{FlushPolicy, KeySource};

const ORIGIN: &str = "/etc/warden/warden.toml";

/// A good file with one session per broker. Line numbers matter to the assertions.
const BASE: &str = r#"[store]
path = "/var/lib/warden/warden.db"
key = "env:WARDEN_KEY"
durability = "always"

[http]
request_timeout = "10s"

[policy]
preset = "hybrid"

[sessions.saxo-main]
broker = "saxo"
environment = "simulation"
redirect_uri = "https://my.app/callback"
account = "saxo-acct"
credentials = { app_key = "env:SAXO_APP_KEY", app_secret = "file:/run/secrets/saxo_app_secret" }

[sessions.ibkr-main]
broker = "ibkr"
realm = "test_realm"

[sessions.ibkr-main.credentials]
consumer_key = "env:IBKR_CONSUMER_KEY"
access_token = "env:IBKR_ACCESS_TOKEN"
access_token_secret = "env:IBKR_ACCESS_TOKEN_SECRET"
signature_key = "file:/etc/warden/ibkr/private_signature.pem"
encryption_key = "file:/etc/warden/ibkr/private_encryption.pem"
dh_param = "file:/etc/warden/ibkr/dhparam.pem"

[sessions.kotak-main]
broker = "kotak_neo"
token_lifetime = "24h"
credentials = { consumer_key = "env:KOTAK_CONSUMER_KEY", mobile_number = "env:KOTAK_MOBILE", ucc = "env:KOTAK_UCC", mpin = "env:KOTAK_MPIN", totp_secret = "env:KOTAK_TOTP_SECRET" }

[sessions.kite-main]
broker = "kite"
request_timeout = "5s"
credentials = { api_key = "env:KITE_API_KEY", api_secret = "env:KITE_API_SECRET" }

[sessions.kite-main.policy]
preset = "daily"
after_cutoff = "operator"

[sessions.vendor]
broker = "oauth2"
token_url = "https://auth.example.com/oauth2/token"
scope = "orders:write"
client_auth = "form"
api_hosts = ["api.example.com"]
token_lifetime = "1h"
credentials = { client_id = "env:VENDOR_ID", client_secret = "env:VENDOR_SECRET" }
"#;

fn parse_err(text: &str) -> ConfigError {
    match WardenConfig::parse(text, ORIGIN) {
        Ok(_) => panic!("the configuration parsed, but it is broken:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts that the error names the file, the line, the key and the problem.
fn assert_error(err: &ConfigError, line: usize, key: &str, problem: &[&str]) {
    let text = err.to_string();
    assert!(text.starts_with(&format!("{ORIGIN} line {line}")), "wrong file or line (want {line}): {text}");
    assert_eq!(err.line(), Some(line), "{text}");
    assert!(text.contains(key), "does not name the key `{key}`: {text}");
    for p in problem {
        assert!(text.contains(p), "does not say {p:?}: {text}");
    }
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} is not in BASE");
    BASE.replacen(from, to, 1)
}

fn good() -> WardenConfig {
    WardenConfig::parse(BASE, ORIGIN).unwrap()
}

#[test]
fn the_base_file_is_valid() {
    let config = good();
    assert!(config.warnings.is_empty());
    assert_eq!(config.store.path.to_str(), Some("/var/lib/warden/warden.db"));
    assert_eq!(config.store.durability, FlushPolicy::Always);
    let ids: Vec<&str> = config.sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["saxo-main", "ibkr-main", "kotak-main", "kite-main", "vendor"], "in the order written");
    let brokers: Vec<BrokerName> = config.sessions.iter().map(|s| s.broker()).collect();
    assert_eq!(
        brokers,
        [BrokerName::Saxo, BrokerName::Ibkr, BrokerName::KotakNeo, BrokerName::Kite, BrokerName::Oauth2]
    );

    let saxo = config.session("saxo-main").unwrap();
    let AdapterConfig::Saxo(settings) = &saxo.adapter else { panic!("not saxo") };
    assert_eq!(settings.auth_url, "https://sim.logonvalidation.net");
    assert_eq!(settings.redirect_uri, "https://my.app/callback");
    assert_eq!(saxo.account.as_deref(), Some("saxo-acct"));
    assert_eq!(saxo.http.request_timeout, Duration::from_secs(10), "[http] applies");
    assert_eq!(saxo.policy.refresh_buffer, Some(Duration::from_secs(30)), "saxo's hint fills the preset");

    let ibkr = config.session("ibkr-main").unwrap();
    let AdapterConfig::Ibkr(settings) = &ibkr.adapter else { panic!("not ibkr") };
    assert_eq!(settings.realm, "test_realm");
    assert_eq!(ibkr.policy.keepalive_interval, Some(Duration::from_secs(60)), "ibkr's tickle");

    let kotak = config.session("kotak-main").unwrap();
    let AdapterConfig::KotakNeo(settings) = &kotak.adapter else { panic!("not kotak") };
    assert_eq!(settings.token_lifetime, Duration::from_secs(24 * 3600));

    let kite = config.session("kite-main").unwrap();
    assert_eq!(kite.http.request_timeout, Duration::from_secs(5), "the session's own timeout");
    assert_eq!(kite.policy.after_cutoff, warden_engine::policy::AfterCutoff::Operator);
    assert!(kite.policy.daily_cutoff.is_some(), "kite's 06:00 reset fills the daily preset");

    let vendor = config.session("vendor").unwrap();
    let AdapterConfig::OAuth2(settings) = &vendor.adapter else { panic!("not oauth2") };
    assert_eq!(settings.client_auth, ClientAuth::Form);
    assert_eq!(settings.api_hosts, ["api.example.com"]);
    assert_eq!(settings.token_lifetime, Some(Duration::from_secs(3600)));
}

#[test]
fn credentials_resolve_through_the_environment() {
    let config = good();
    let env = StaticEnvironment::new()
        .var("KITE_API_KEY", "kite-key")
        .var("KITE_API_SECRET", "kite-secret")
        .var("SAXO_APP_KEY", "saxo-key")
        .file("/run/secrets/saxo_app_secret", "saxo-secret\n", 0o600);
    let kite = config.session("kite-main").unwrap().credentials(&env).unwrap();
    assert_eq!(kite.get("api_key").unwrap().expose(), "kite-key");
    assert_eq!(kite.get("api_secret").unwrap().expose(), "kite-secret");
    let saxo = config.session("saxo-main").unwrap().credentials(&env).unwrap();
    assert_eq!(saxo.get("app_secret").unwrap().expose(), "saxo-secret", "the trailing line break is dropped");
    let debug = format!("{kite:?}{saxo:?}");
    assert!(!debug.contains("kite-secret") && !debug.contains("saxo-secret"), "Debug shows a secret: {debug}");
}

#[test]
fn ibkr_key_files_are_checked_and_the_dh_prime_read() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ibkr");
    let read = |name: &str| std::fs::read_to_string(fixtures.join(name)).unwrap();
    let env = StaticEnvironment::new()
        .var("IBKR_CONSUMER_KEY", "TESTCONS")
        .var("IBKR_ACCESS_TOKEN", "token")
        .var("IBKR_ACCESS_TOKEN_SECRET", "c2VjcmV0")
        .file("/etc/warden/ibkr/private_signature.pem", &read("private_signature.pem"), 0o600)
        .file("/etc/warden/ibkr/private_encryption.pem", &read("private_encryption.pem"), 0o600)
        .file("/etc/warden/ibkr/dhparam.pem", &read("dhparam.pem"), 0o600);
    let config = good();
    let ibkr = config.session("ibkr-main").unwrap();
    let credentials = ibkr.credentials(&env).unwrap();
    assert!(credentials.get("dh_prime").is_some_and(|p| p.expose().len() > 100));
    assert_eq!(credentials.get("dh_generator").unwrap().expose(), "2");
    assert!(credentials.get("dh_param").is_none());
    let broken = env.clone().file("/etc/warden/ibkr/private_signature.pem", "not a key", 0o600);
    let err = ibkr.credentials(&broken).unwrap_err();
    assert_error(&err, 27, "sessions.ibkr-main.credentials.signature_key", &["signature_key"]);
}

#[test]
fn unknown_keys_suggest_the_right_name() {
    let err = parse_err(&replace("redirect_uri = ", "redirect_url = "));
    assert_error(
        &err,
        15,
        "redirect_url",
        &["unknown key `redirect_url` in [sessions.saxo-main]", "did you mean `redirect_uri`?"],
    );
    assert_eq!(err.key(), Some("sessions.saxo-main.redirect_url"));
    let err = parse_err(&replace("[http]", "[htp]"));
    assert_error(&err, 6, "htp", &["unknown key `htp` at the top level", "did you mean `http`?"]);
    let err = parse_err(&replace("durability = ", "durabilty = "));
    assert_error(&err, 4, "durabilty", &["in [store]", "did you mean `durability`?"]);
    let err = parse_err(&replace("after_cutoff = ", "after_cutof = "));
    assert_error(&err, 43, "after_cutof", &["did you mean `after_cutoff`?"]);
    let err = parse_err(&replace("consumer_key = \"env:IBKR", "consumer_kee = \"env:IBKR"));
    assert_error(&err, 24, "consumer_kee", &["unknown credential `consumer_kee`", "did you mean `consumer_key`?"]);
}

#[test]
fn a_cluster_table_names_the_database_by_reference_the_member_and_the_ttl() {
    let cluster = "\n[cluster]\ndatabase = \"env:WARDEN_DB_URL\"\nmember = \"warden-1\"\nlease_ttl = \"6s\"\n";
    let config = WardenConfig::parse(&format!("{BASE}{cluster}"), ORIGIN).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let parsed = config.cluster.as_ref().expect("[cluster]");
    assert_eq!((parsed.database_env.as_str(), parsed.member.as_str()), ("WARDEN_DB_URL", "warden-1"));
    assert_eq!(parsed.lease_ttl, Duration::from_secs(6));
    // The URL is read when the store opens; an unset variable is named, with the file and line.
    let err = parsed.postgres_options(&config.store, &StaticEnvironment::new()).expect_err("unset variable");
    assert!(err.to_string().contains("WARDEN_DB_URL") && err.to_string().contains("line 54"), "{err}");
    // The default TTL is 10 s.
    let config =
        WardenConfig::parse(&format!("{BASE}{}", cluster.replace("lease_ttl = \"6s\"\n", "")), ORIGIN).unwrap();
    assert_eq!(config.cluster.expect("[cluster]").lease_ttl, Duration::from_secs(10));
    // Without [cluster], none.
    assert!(good().cluster.is_none());

    // A URL written in the file is refused without repeating it (it may hold a password).
    let err = parse_err(&format!("{BASE}{}", cluster.replace("env:WARDEN_DB_URL", "postgres://w:hunter2@db/warden")));
    assert_error(&err, 55, "cluster.database", &["must name an environment variable", "env:WARDEN_DB_URL"]);
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = parse_err(&format!("{BASE}{}", cluster.replace("warden-1", "warden 1")));
    assert_error(&err, 56, "cluster.member", &["every member needs its own name"]);
    let err = parse_err(&format!("{BASE}{}", cluster.replace("\"6s\"", "\"500ms\"")));
    assert_error(&err, 57, "cluster.lease_ttl", &["must be at least 1s"]);
    let err = parse_err(&format!("{BASE}{cluster}nodes = 3\n"));
    assert_error(&err, 58, "nodes", &["unknown key `nodes`"]);
    let err = parse_err(&format!("{BASE}{}", cluster.replace("member = \"warden-1\"\n", "")));
    assert_error(&err, 54, "cluster", &["missing key `member`"]);
    // Every member must seal with the same key: "auto" (a key per machine) is refused.
    let err = parse_err(&format!("{}{cluster}", replace("key = \"env:WARDEN_KEY\"\n", "")));
    assert_error(&err, 1, "store", &["same key"]);

    // `[serve]` belongs to `warden serve`: accepted here without a warning.
    let config = WardenConfig::parse(&format!("{BASE}\n[serve]\nlisten = \"127.0.0.1:9000\"\n"), ORIGIN).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let err = parse_err(&format!("{BASE}\n[serv]\n"));
    assert_error(&err, 54, "serv", &["unknown key `serv` at the top level", "did you mean `serve`?"]);
    let err = parse_err(&format!("{BASE}\n[clustr]\n"));
    assert_error(&err, 54, "clustr", &["did you mean `cluster`?"]);
}

#[test]
fn wrong_types() {
    let err = parse_err(&replace("account = \"saxo-acct\"", "account = 7"));
    assert_error(&err, 16, "sessions.saxo-main.account", &["expected a string, found integer"]);
    let err = parse_err(&replace("api_hosts = [\"api.example.com\"]", "api_hosts = \"api.example.com\""));
    assert_error(&err, 50, "api_hosts", &["expected a sequence"]);
    // A credential written as a number is refused without repeating the number (it may be a PIN).
    let err = parse_err(&replace("mpin = \"env:KOTAK_MPIN\"", "mpin = 482913"));
    assert_error(&err, 34, "mpin", &[r#"expected a reference "env:NAME" or "file:PATH", found a number"#]);
    assert!(!err.to_string().contains("482913"), "{err}");
}

#[test]
fn bad_durations_and_values() {
    let err = parse_err(&replace("request_timeout = \"10s\"", "request_timeout = \"soon\""));
    assert_error(&err, 7, "http.request_timeout", &["`soon` is not a duration", "\"30s\""]);
    let err = parse_err(&replace("token_lifetime = \"24h\"", "token_lifetime = \"0s\""));
    assert_error(&err, 33, "sessions.kotak-main.token_lifetime", &["must be longer than zero"]);
    let err = parse_err(&replace("durability = \"always\"", "durability = \"alway\""));
    assert_error(&err, 4, "store.durability", &["unknown value `alway`", "did you mean `always`?"]);
    let err = parse_err(&replace("environment = \"simulation\"", "environment = \"sim\""));
    assert_error(&err, 14, "environment", &["unknown value `sim`", "`live`, `simulation`"]);
    let err = parse_err(&replace("token_url = \"https://auth.example.com/oauth2/token\"", "token_url = \"ftp://x\""));
    assert_error(&err, 47, "sessions.vendor.token_url", &["must be an http or https URL"]);
    let err = parse_err(&replace("[sessions.vendor]", "[sessions.\"bad id\"]"));
    assert_error(&err, 45, "sessions", &["not a usable session id"]);
}

#[test]
fn missing_required_keys() {
    let err = parse_err(&replace("path = \"/var/lib/warden/warden.db\"\n", ""));
    assert_error(&err, 1, "store", &["missing key `path` in [store]"]);
    let err = parse_err(&replace("redirect_uri = \"https://my.app/callback\"\n", ""));
    assert_error(
        &err,
        12,
        "redirect_uri",
        &["missing key `redirect_uri` in [sessions.saxo-main]", "broker `saxo` needs it"],
    );
    assert_eq!(err.key(), Some("sessions.saxo-main.redirect_uri"));
    let err = parse_err(&replace("broker = \"kite\"\n", ""));
    assert_error(&err, 36, "broker", &["missing key `broker` in [sessions.kite-main]"]);
    let err = parse_err(&replace("api_key = \"env:KITE_API_KEY\", ", ""));
    assert_error(&err, 39, "api_key", &["missing credential `api_key`", "broker `kite` needs `api_key`, `api_secret`"]);
    let err = parse_err("[store]\npath = \"/x\"\n");
    assert_error(&err, 1, "", &["no session is configured"]);
    let err = parse_err("[sessions.a]\nbroker = \"kite\"\n");
    assert_error(&err, 1, "", &["missing key `store` at the top level"]);
}

#[test]
fn unknown_broker_and_settings_of_another_broker() {
    let err = parse_err(&replace("broker = \"kotak_neo\"", "broker = \"kotak\""));
    assert_error(
        &err,
        32,
        "sessions.kotak-main.broker",
        &["unknown value `kotak`", "`saxo`, `ibkr`, `kotak_neo`, `kite`, `oauth2`"],
    );
    let err = parse_err(&replace("broker = \"kite\"", "broker = \"kiet\""));
    assert_error(&err, 37, "broker", &["did you mean `kite`?"]);
    let err = parse_err(&replace("broker = \"kite\"\n", "broker = \"kite\"\nlogin_url = \"https://x.example\"\n"));
    assert_error(
        &err,
        38,
        "sessions.kite-main.login_url",
        &["is not a setting of broker `kite` (its settings: base_url)"],
    );
}

#[test]
fn inline_secrets_are_refused_unless_allowed() {
    let inline = replace("api_secret = \"env:KITE_API_SECRET\"", "api_secret = \"hunter2-inline\"");
    let err = parse_err(&inline);
    assert_error(
        &err,
        39,
        "sessions.kite-main.credentials.api_secret",
        &["an inline secret is refused", "\"env:NAME\" or \"file:PATH\"", "`allow_inline_secrets = true`"],
    );
    assert!(!err.to_string().contains("hunter2"), "the error repeats the secret: {err}");
    let allowed = WardenConfig::parse(&format!("allow_inline_secrets = true\n{inline}"), ORIGIN).unwrap();
    let credentials =
        allowed.session("kite-main").unwrap().credentials(&StaticEnvironment::new().var("KITE_API_KEY", "k"));
    assert_eq!(credentials.unwrap().get("api_secret").unwrap().expose(), "hunter2-inline");
    assert!(!format!("{allowed:?}").contains("hunter2"), "Debug of the configuration shows no secret");
    let err = parse_err(&replace("key = \"env:WARDEN_KEY\"", "key = \"c2VjcmV0\""));
    assert_error(&err, 3, "store.key", &["an inline secret is refused", "\"auto\""]);
}

#[test]
fn unset_variables_and_bad_files_are_located_at_the_credential() {
    let config = good();
    let kite = config.session("kite-main").unwrap();
    let err = kite.credentials(&StaticEnvironment::new().var("KITE_API_KEY", "k")).unwrap_err();
    assert_error(
        &err,
        39,
        "sessions.kite-main.credentials.api_secret",
        &["the environment variable `KITE_API_SECRET` is not set"],
    );
    let saxo = config.session("saxo-main").unwrap();
    let env = StaticEnvironment::new().var("SAXO_APP_KEY", "k");
    let err = saxo.credentials(&env).unwrap_err();
    assert_error(
        &err,
        17,
        "sessions.saxo-main.credentials.app_secret",
        &["the file /run/secrets/saxo_app_secret cannot be read: it does not exist"],
    );
    let env = env.file("/run/secrets/saxo_app_secret", "s3cr3t-value", 0o644);
    let err = saxo.credentials(&env).unwrap_err();
    assert_error(&err, 17, "app_secret", &["may be read by every user (mode 0644)", "chmod o-r"]);
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn real_files_are_read_and_world_readable_ones_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("kite_api_secret");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = replace("api_secret = \"env:KITE_API_SECRET\"", &format!("api_secret = \"file:{}\"", secret.display()));
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, &text).unwrap();
    let config = WardenConfig::load(&path).unwrap();
    assert_eq!(config.origin, path.display().to_string());
    let env = warden_adapters::config::SystemEnvironment;
    let kite = config.session("kite-main").unwrap();
    // KITE_API_KEY is read from the process environment: use a file for it too.
    let key = dir.path().join("kite_api_key");
    std::fs::write(&key, "key").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let text = text.replace("api_key = \"env:KITE_API_KEY\"", &format!("api_key = \"file:{}\"", key.display()));
    std::fs::write(&path, &text).unwrap();
    let config = WardenConfig::load(&path).unwrap();
    let credentials = config.session("kite-main").unwrap().credentials(&env).unwrap();
    assert_eq!(credentials.get("api_secret").unwrap().expose(), "from-a-file");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
    let err = config.session("kite-main").unwrap().credentials(&env).unwrap_err();
    assert!(err.to_string().contains("may be read by every user (mode 0604)"), "{err}");
    let _ = kite;
    let missing = WardenConfig::load(&dir.path().join("nope.toml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
}

#[test]
fn store_key_sources() {
    let config = good();
    let env = StaticEnvironment::new();
    assert!(matches!(config.store.key.key_source(&env).unwrap(), KeySource::Env));
    let other = WardenConfig::parse(&replace("env:WARDEN_KEY", "env:MY_KEY"), ORIGIN).unwrap();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    assert!(matches!(other.store.key.key_source(&env.clone().var("MY_KEY", key)).unwrap(), KeySource::Bytes(_)));
    let err = other.store.key.key_source(&env.clone().var("MY_KEY", "c2hvcnQ=")).unwrap_err();
    assert_error(&err, 3, "store.key", &["decodes to 5 bytes"]);
    let file = WardenConfig::parse(&replace("env:WARDEN_KEY", "file:/etc/warden/store.key"), ORIGIN).unwrap();
    assert!(matches!(file.store.key.key_source(&env).unwrap(), KeySource::File(ref p) if p.ends_with("store.key")));
    let auto = WardenConfig::parse(&replace("key = \"env:WARDEN_KEY\"\n", ""), ORIGIN).unwrap();
    assert!(matches!(auto.store.key, KeyRef::Auto));
}

#[test]
fn policy_problems_point_at_the_setting_or_the_preset() {
    let err = parse_err(&replace(
        "[sessions.kite-main.policy]\n",
        "[sessions.kite-main.policy]\nbackoff = { min = \"0s\" }\n",
    ));
    assert_error(&err, 42, "sessions.kite-main.policy.backoff.min", &["`backoff.min` must be longer than zero"]);
    let err = parse_err(&replace(
        "token_lifetime = \"1h\"",
        "token_lifetime = \"1h\"\npolicy = { preset = \"proactive\", refresh_buffer = \"2h\" }",
    ));
    assert_error(
        &err,
        52,
        "sessions.vendor.policy.refresh_buffer",
        &["`refresh_buffer` (2h) must be shorter than the token lifetime of broker `oauth2` (1h)"],
    );
    let err = parse_err(&replace("token_lifetime = \"1h\"", "token_lifetime = \"20s\""));
    assert_error(&err, 10, "policy.preset", &["token lifetime of broker `oauth2` (20s)", "the preset sets it"]);
    let err = parse_err(&replace("preset = \"daily\"", "preset = \"dayly\""));
    assert_error(&err, 42, "preset", &["dayly"]);
}

#[test]
fn syntax_errors_name_the_line() {
    let err = parse_err(&replace("[http]", "[http"));
    assert!(matches!(err, ConfigError::Syntax { line: 6, .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("{ORIGIN} line 6")), "{err}");
}

/// One random edit of a text: delete, duplicate, swap or replace a run of bytes.
fn mutate(text: &str, edits: &[(u8, usize, usize, u8)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(kind, at, len, byte) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        let end = (at + len % 16).min(bytes.len());
        match kind % 4 {
            0 => {
                bytes.drain(at..end);
            }
            1 => {
                let run = bytes[at..end].to_vec();
                bytes.splice(at..at, run);
            }
            2 => {
                let b = b" =\"[]{}.,\n#0aZ:_-"[usize::from(byte) % 17];
                bytes.insert(at, b);
            }
            _ => bytes[at] = byte,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_mutations_never_panic(edits in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>(), any::<u8>()), 1..6)) {
        let text = mutate(BASE, &edits);
        if let Ok(config) = WardenConfig::parse(&text, ORIGIN) {
            let env = StaticEnvironment::new();
            for session in &config.sessions {
                let _ = session.credentials(&env);
            }
            let _ = config.store.sled_options(&env);
        } else if let Err(err) = WardenConfig::parse(&text, ORIGIN) {
            let message = err.to_string();
            prop_assert!(message.starts_with(ORIGIN), "{}", message);
        }
    }
}

#[test]
fn the_documented_example_parses() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/adapters.md");
    let text = std::fs::read_to_string(docs).unwrap();
    let section = &text[text.find("## warden.toml").expect("the section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let config = WardenConfig::parse(block, "docs/adapters.md").unwrap();
    assert_eq!(config.sessions.len(), 5);
    assert!(config.warnings.is_empty());
}
