//! Members started from a `warden.toml` with `[cluster]` against the PostgreSQL of `WARDEN_PG_URL`
//! (skipped without it unless `WARDEN_PG_TEST=required`): the database URL comes from the environment
//! variable the file names, the member and its TTL from the file, and the sessions are placed.

mod common;

use warden_actors::Warden;
use warden_adapters::config::{StaticEnvironment, WardenConfig};

fn config(dir: &std::path::Path, member: &str, stamp: u128) -> WardenConfig {
    let text = format!(
        r#"[store]
path = "{}/unused.db"
key = "env:STORE_KEY"

[cluster]
database = "env:WARDEN_DB_URL"
member = "{member}"
lease_ttl = "3s"

[sessions.kite-{stamp}]
broker = "kite"
base_url = "http://127.0.0.1:9"
credentials = {{ api_key = "env:KITE_API_KEY", api_secret = "env:KITE_API_SECRET" }}
policy = {{ mode = "lazy" }}

[sessions.vendor-{stamp}]
broker = "oauth2"
token_url = "http://127.0.0.1:9/token"
credentials = {{ client_id = "env:VENDOR_ID", client_secret = "env:VENDOR_SECRET" }}
policy = {{ mode = "lazy" }}
"#,
        dir.display()
    );
    WardenConfig::parse(&text, "warden.toml").unwrap()
}

#[tokio::test]
async fn members_start_from_a_cluster_config_and_hand_over_on_shutdown() {
    let Some((url, _schema)) = common::pg("config") else { return };
    let env = StaticEnvironment::new()
        .var("WARDEN_DB_URL", url.as_str())
        .var("STORE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .var("KITE_API_KEY", "kite-key")
        .var("KITE_API_SECRET", "kite-secret")
        .var("VENDOR_ID", "id")
        .var("VENDOR_SECRET", "secret");
    // The tables are in the default schema, shared by every run: fresh session ids per run.
    let stamp = std::time::UNIX_EPOCH.elapsed().map(|d| d.as_micros()).unwrap_or(0);
    let dir = tempfile::tempdir().unwrap();

    let (first, sessions) = Warden::from_config(&config(dir.path(), "cfg-1", stamp), &env).await.expect("start");
    assert_eq!(first.member().map(|m| m.as_str()), Some("cfg-1"));
    assert_eq!(sessions.len(), 2, "alone, the member runs both sessions");
    first.shutdown(false).await;
    assert!(!dir.path().join("unused.db").exists(), "no sled database with [cluster]");

    // The second member takes both over at once: the first released them.
    let (second, sessions) = Warden::from_config(&config(dir.path(), "cfg-2", stamp), &env).await.expect("start");
    assert_eq!(sessions.len(), 2);
    second.shutdown(false).await;

    // A URL variable that is not set stops the start, naming it (and nothing is opened).
    let no_url = StaticEnvironment::new()
        .var("STORE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .var("KITE_API_KEY", "kite-key")
        .var("KITE_API_SECRET", "kite-secret")
        .var("VENDOR_ID", "id")
        .var("VENDOR_SECRET", "secret");
    let err = Warden::from_config(&config(dir.path(), "cfg-3", stamp), &no_url).await.expect_err("no database");
    assert!(err.to_string().contains("`WARDEN_DB_URL` is not set"), "{err}");
}
