//! The `warden` binary with a `warden.toml`: `check` checks the whole file as `serve` reads it (located
//! errors with the line, the key and a close name; nothing made); `serve` runs the file's sessions with the
//! real adapters against an OAuth2 mock broker, makes its token file (0600), proxies, re-reads the file on
//! SIGHUP and on `POST /v1/reload`, and drains and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use warden_actors::Clock;
use warden_sim::mock::{MockBroker, MockConfig};
use warden_sim::model::{BrokerModel, BrokerSpec, ModelKind};

const BINARY: &str = env!("CARGO_BIN_EXE_warden");

async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill");
    assert!(status.success());
}

/// The next line containing `needle`, within `lines` lines or 20 s of reading.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> Option<String> {
    for _ in 0..2_000 {
        match lines.recv_timeout(Duration::from_millis(10)) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
    None
}

/// A configuration with one OAuth2 session per name in `sessions`, against the mock at `base`; the
/// client id comes from `MOCK_CLIENT_ID`, the secret from a 0600 file in `folder`.
fn config_text(folder: &std::path::Path, base: &str, sessions: &[&str], serve: &str) -> String {
    let secret = folder.join("client_secret");
    std::fs::write(&secret, "mock-client-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host = base.trim_start_matches("http://");
    let mut text = format!("[store]\npath = \"{}\"\n", folder.join("store").display());
    for name in sessions {
        text.push_str(&format!(
            "\n[sessions.{name}]\nbroker = \"oauth2\"\ntoken_url = \"{base}/oauth2/token\"\napi_hosts = [\"{host}\"]\n\
             credentials = {{ client_id = \"env:MOCK_CLIENT_ID\", client_secret = \"file:{}\" }}\n\
             \n[serve.sessions.{name}]\napi_root = \"{base}/\"\n",
            secret.display()
        ));
    }
    text.push_str(&format!("\n[serve]\n{serve}"));
    text
}

fn check(config: &std::path::Path) -> std::process::Output {
    Command::new(BINARY).args(["check", "--config"]).arg(config).env("MOCK_CLIENT_ID", "mock-client").output().unwrap()
}

#[test]
fn check_reads_the_whole_file_and_names_the_place_of_a_problem() {
    let folder = tempfile::tempdir().unwrap();
    let base = "http://127.0.0.1:9";
    let good = folder.path().join("good.toml");
    std::fs::write(&good, config_text(folder.path(), base, &["vendor"], "listen = \"127.0.0.1:7979\"\n")).unwrap();
    let output = check(&good);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("fine: 1 session(s): vendor (oauth2)"), "{text}");
    assert!(text.contains("listens on http://127.0.0.1:7979"), "{text}");
    assert!(!folder.path().join("warden-serve.token").exists(), "check makes nothing");
    assert!(!folder.path().join("store").exists(), "check opens no store");

    let cases: [(&str, &str, &[&str]); 5] = [
        ("listen = \"0.0.0.0:7878\"\n", "", &["is not a loopback address"]),
        (
            "lisen = \"127.0.0.1:1\"\n",
            "",
            &["line 14, column 1", "unknown key `lisen` in [serve]", "did you mean `listen`?"],
        ),
        ("proxy_timeout = \"soon\"\n", "", &["line 14", "`serve.proxy_timeout`"]),
        (
            "[serve.sessions.vendr]\nlogin_url = \"https://x\"\n",
            "",
            &["line 14", "there is no [sessions.vendr] in this file (did you mean `vendor`?)"],
        ),
        ("", "MOCK_CLIENT_ID", &["line 8", "`sessions.vendor.credentials.client_id`", "MOCK_CLIENT_ID"]),
    ];
    for (serve, unset, needles) in cases {
        let bad = folder.path().join("bad.toml");
        std::fs::write(&bad, config_text(folder.path(), base, &["vendor"], serve)).unwrap();
        let mut command = Command::new(BINARY);
        command.args(["check", "--config"]).arg(&bad).env("MOCK_CLIENT_ID", "x");
        if !unset.is_empty() {
            command.env_remove(unset);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{serve}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for needle in needles {
            assert!(stderr.contains(needle), "{serve}: `{needle}` not in {stderr}");
        }
        assert!(!stderr.contains("mock-client-secret"), "no secret in an error: {stderr}");
    }
}

#[test]
fn serve_runs_the_files_sessions_reloads_on_sighup_and_post_and_drains_on_sigterm() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mock = runtime.block_on(async {
        let model = BrokerModel::new(BrokerSpec::preset(ModelKind::OAuth2), 7);
        MockBroker::start(MockConfig::demo(model, Clock::system()).unwrap()).await.unwrap()
    });
    let base = mock.base_url().to_owned();
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("warden.toml");
    let serve = "listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n";
    std::fs::write(&config, config_text(folder.path(), &base, &["vendor"], serve)).unwrap();
    let mut child = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("MOCK_CLIENT_ID", "mock-client")
        .env("WARDEN_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .env_remove("WARDEN_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (send, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
    }
    drop(send);
    let mut seen = Vec::new();
    let listening = wait_for(&lines, "warden serve is listening", &mut seen);
    let listening = listening.unwrap_or_else(|| panic!("no listening line: {seen:#?}"));
    let address = listening.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let token_file = folder.path().join("warden-serve.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is made private");
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
    assert!(folder.path().join("store").exists(), "the file's store is opened");

    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{address}{path}")).bearer_auth(&token).send();
    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
    };
    runtime.block_on(async {
        let health = client.get(format!("http://{address}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let denied = client.get(format!("http://{address}/v1/sessions")).send().await.unwrap();
        assert_eq!(denied.status(), 401);
        // The real OAuth2 adapter logs in to the mock and the proxy signs calls with its grant.
        let quote = get("/proxy/vendor/api/v1/quote?symbol=ACME").await.unwrap();
        assert_eq!(quote.status(), 200, "{:?}", quote.text().await);
        let sessions = json(get("/v1/sessions").await.unwrap()).await;
        assert_eq!(ids(&sessions), ["vendor"]);
        assert_eq!(sessions["sessions"][0]["state"], "Valid", "{sessions}");
    });
    assert_eq!(mock.stats().model.logins, 1, "one login");

    // SIGHUP re-reads the file: a session added.
    std::fs::write(&config, config_text(folder.path(), &base, &["vendor", "vendor-2"], serve)).unwrap();
    signal(child.id(), "HUP");
    assert!(wait_for(&lines, "SIGHUP: reloaded", &mut seen).is_some(), "SIGHUP is handled: {seen:#?}");
    runtime.block_on(async {
        let sessions = json(get("/v1/sessions").await.unwrap()).await;
        assert_eq!(ids(&sessions), ["vendor", "vendor-2"]);
        assert_eq!(get("/proxy/vendor-2/api/v1/quote?symbol=ACME").await.unwrap().status(), 200);
    });
    // POST /v1/reload: a session removed; a broken file changes nothing and says where it is broken.
    std::fs::write(&config, config_text(folder.path(), &base, &["vendor-2"], serve)).unwrap();
    runtime.block_on(async {
        let reload = client.post(format!("http://{address}/v1/reload")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(reload.status(), 200);
        let report = json(reload).await;
        assert_eq!(report["removed"], serde_json::json!(["vendor"]), "{report}");
        assert_eq!(report["unchanged"], serde_json::json!(["vendor-2"]), "{report}");
        std::fs::write(&config, "[store]\npath = \"x\"\n[sessions.a]\nbrokr = \"kite\"\n").unwrap();
        let reload = client.post(format!("http://{address}/v1/reload")).bearer_auth(&token).send().await.unwrap();
        let status = reload.status();
        let body = reload.text().await.unwrap();
        assert_eq!(status, 409, "{body}");
        assert!(body.contains("line 4") && body.contains("did you mean `broker`?"), "{body}");
        let sessions = json(get("/v1/sessions").await.unwrap()).await;
        assert_eq!(ids(&sessions), ["vendor-2"], "nothing changed");
    });

    signal(child.id(), "TERM");
    assert!(wait_for(&lines, "stopped; sessions were not logged out", &mut seen).is_some(), "{seen:#?}");
    let mut status = None;
    for _ in 0..500 {
        if let Some(done) = child.try_wait().unwrap() {
            status = Some(done);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("did not exit after SIGTERM")
    });
    assert!(status.success(), "{status:?}");
    assert_eq!(mock.stats().model.logouts, 0, "a stop does not log out");
    for line in &seen {
        assert!(!line.contains(&token), "the token is never logged: {line}");
        assert!(!line.contains("mock-client-secret"), "the client secret is never logged: {line}");
    }
    runtime.block_on(mock.stop());
}

#[test]
fn the_demo_serves_a_session_for_every_mock_broker() {
    let folder = tempfile::tempdir().unwrap();
    let mut child = Command::new(BINARY)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .current_dir(folder.path())
        .env("RUST_LOG", "info")
        .env_remove("WARDEN_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (send, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
    }
    drop(send);
    let mut seen = Vec::new();
    let listening = wait_for(&lines, "warden serve is listening", &mut seen);
    let listening = listening.unwrap_or_else(|| panic!("no listening line: {seen:#?}"));
    let address = listening.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let token = std::fs::read_to_string(folder.path().join("warden-serve.token")).unwrap().trim().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let calls = [
            ("saxo", "/proxy/saxo/trade/v1/infoprices?Uic=21&AssetType=FxSpot"),
            ("ibkr", "/proxy/ibkr/iserver/marketdata/snapshot?conids=265598&fields=31"),
            ("kotak-neo", "/proxy/kotak-neo/script-details/1.0/quotes/neosymbol/nse_cm%7C11536/all"),
            ("kite", "/proxy/kite/quote?i=NSE:INFY"),
            ("oauth2", "/proxy/oauth2/api/v1/quote?symbol=ACME"),
        ];
        for (session, path) in calls {
            let answer = client.get(format!("http://{address}{path}")).bearer_auth(&token).send().await.unwrap();
            let status = answer.status();
            assert_eq!(status, 200, "{session}: {:?}", answer.text().await);
        }
        let sessions =
            json(client.get(format!("http://{address}/v1/sessions")).bearer_auth(&token).send().await.unwrap()).await;
        let states: Vec<(String, String)> = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_owned(), s["state"].as_str().unwrap().to_owned()))
            .collect();
        let valid = |id: &str| (id.to_owned(), "Valid".to_owned());
        assert_eq!(states, ["ibkr", "kite", "kotak-neo", "oauth2", "saxo"].map(valid), "{sessions}");
        let page = client.get(format!("http://{address}/")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(page.status(), 200);
    });
    signal(child.id(), "TERM");
    assert!(wait_for(&lines, "stopped; sessions were not logged out", &mut seen).is_some(), "{seen:#?}");
    let _ = child.wait();
    for line in &seen {
        assert!(!line.contains(&token), "the token is never logged: {line}");
    }
}
