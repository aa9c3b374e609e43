//! A `Warden` started from a `warden.toml`: sessions opened with their adapters, credentials and
//! policies; a reference that cannot be resolved stops the start before the store is opened.

use warden_actors::{FromConfigError, Warden, load_specs};
use warden_adapters::config::{Adapter, StaticEnvironment, WardenConfig};
use warden_engine::SessionId;

fn config(dir: &std::path::Path) -> WardenConfig {
    let text = format!(
        r#"[store]
path = "{}/warden.db"
key = "env:STORE_KEY"

[sessions.kite-main]
broker = "kite"
base_url = "http://127.0.0.1:9"
account = "ZX1234"
credentials = {{ api_key = "env:KITE_API_KEY", api_secret = "env:KITE_API_SECRET" }}
policy = {{ preset = "daily", after_cutoff = "operator", mode = "lazy" }}

[sessions.vendor]
broker = "oauth2"
token_url = "http://127.0.0.1:9/token"
credentials = {{ client_id = "env:VENDOR_ID", client_secret = "env:VENDOR_SECRET" }}
policy = {{ mode = "lazy" }}
"#,
        dir.display()
    );
    WardenConfig::parse(&text, "warden.toml").unwrap()
}

fn env() -> StaticEnvironment {
    StaticEnvironment::new()
        .var("STORE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .var("KITE_API_KEY", "kite-key")
        .var("KITE_API_SECRET", "kite-secret")
        .var("VENDOR_ID", "id")
        .var("VENDOR_SECRET", "secret")
}

#[tokio::test]
async fn a_warden_starts_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let (warden, sessions) = Warden::from_config(&config, &env()).await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(matches!(sessions[0].adapter, Adapter::Kite(_)));
    assert!(matches!(sessions[1].adapter, Adapter::OAuth2(_)));
    let kite = warden.session(&SessionId::new("kite-main").unwrap()).expect("open");
    assert_eq!(kite.policy().after_cutoff, warden_engine::policy::AfterCutoff::Operator);
    assert_eq!(sessions[1].handle.id().as_str(), "vendor");
    warden.shutdown(false).await;
    assert!(dir.path().join("warden.db").exists(), "the store is where the file says");
}

#[tokio::test]
async fn specs_carry_credentials_account_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let clock = warden_actors::Clock::system();
    let specs = load_specs(&config(dir.path()), &env(), &clock).unwrap();
    let kite = &specs[0].spec;
    assert_eq!(kite.id.as_str(), "kite-main");
    assert_eq!(kite.account.as_deref(), Some("ZX1234"));
    assert_eq!(kite.broker.name(), "kite");
    assert_eq!(kite.credentials.get("api_secret").unwrap().expose(), "kite-secret");
    assert!(kite.policy.is_some());
    assert!(!format!("{specs:?}").contains("kite-secret"), "Debug shows no secret");
}

#[tokio::test]
async fn an_unset_variable_stops_the_start_before_the_store_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let env = StaticEnvironment::new().var("STORE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    let err = Warden::from_config(&config, &env).await.unwrap_err();
    assert!(matches!(err, FromConfigError::Config(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "warden.toml line 9, column 17: `sessions.kite-main.credentials.api_key`: the environment variable \
         `KITE_API_KEY` is not set"
    );
    assert!(!dir.path().join("warden.db").exists(), "nothing was opened");
}
