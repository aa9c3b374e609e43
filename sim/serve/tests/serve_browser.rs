//! The status page in a real browser: headless Chromium, driven over the DevTools protocol. It signs in,
//! shows every session, follows a live state change from the event stream, and hands a login code in
//! from the broker's redirect; the test checks the DOM.
//!
//! Needs `/usr/bin/chromium` (Debian's package; or `WARDEN_CHROMIUM=<path>`). Without it the test says so
//! and passes, unless `WARDEN_BROWSER_TEST=required` (CI sets it). `WARDEN_SCREENSHOT=<file.png>` saves a
//! screenshot of the page.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Answer, SessionSetup, Upstream, eventually, serve};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_engine::{
    BoxFuture, Broker, BrokerError, Capabilities, ErrorClass, Grant, LoginRequest, Secret, StateKind, UnixMs,
};
use warden_serve::ServeConfig;

/// Chromium, killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> Option<String> {
    let path = std::env::var("WARDEN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    std::path::Path::new(&path).exists().then_some(path)
}

fn launch(path: &str) -> Browser {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(path)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1400,820",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let stderr = child.stderr.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = send.send(url.trim().to_owned());
            }
        }
    });
    let devtools = receive.recv_timeout(Duration::from_secs(30)).expect("chromium's DevTools address");
    Browser { child, _profile: profile, devtools }
}

/// One DevTools page session.
struct Page {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Page {
    async fn open(browser: &Browser) -> Page {
        // ws://127.0.0.1:PORT/devtools/browser/ID → the HTTP endpoint lists the page targets.
        let host = browser.devtools.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
        let targets: Value = serde_json::from_slice(
            &reqwest::get(format!("http://{host}/json/list")).await.unwrap().bytes().await.unwrap(),
        )
        .unwrap();
        let page = targets.as_array().unwrap().iter().find(|t| t["type"] == "page").expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("devtools socket");
        Page { socket, next_id: 1 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::Text(message.into())).await.unwrap();
        for _ in 0..100_000 {
            let Some(Ok(Message::Text(text))) = self.socket.next().await else { continue };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"].as_u64() == Some(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
        panic!("no answer to {method}");
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true})).await;
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Waits (bounded: 20 s) until `expression` is true in the page.
    async fn until(&mut self, expression: &str) {
        for _ in 0..200 {
            if self.eval(expression).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = self.eval("document.body.innerText").await;
        panic!("never true: {expression}\n--- the page says:\n{}", body.as_str().unwrap_or_default());
    }

    async fn text(&mut self, selector: &str) -> String {
        let expression = format!("(document.querySelector({selector:?}) || {{}}).textContent || ''");
        self.eval(&expression).await.as_str().unwrap_or_default().to_owned()
    }
}

/// A broker whose login needs a one-time code from a person.
struct NeedsAPerson;

impl Broker for NeedsAPerson {
    fn name(&self) -> &str {
        "otp"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        let code = request.second_factor.map(|c| c.expose().to_owned());
        Box::pin(async move {
            match code.as_deref() {
                Some("246810") => {
                    Ok(Grant::new(Secret::new("OTP-TOKEN-1"), now).expires_in(Duration::from_secs(86_400)))
                }
                _ => Err(BrokerError::http(400, "the login needs the code from the authenticator app")
                    .with_code("needs_operator")),
            }
        })
    }
    fn logout<'a>(&'a self, _now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async { Ok(()) })
    }
    fn classify(&self, error: &BrokerError) -> ErrorClass {
        warden_adapters::broker::classify_default(error)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_signs_in_and_follows_live_changes() {
    let Some(path) = chromium() else {
        let required = std::env::var("WARDEN_BROWSER_TEST").is_ok_and(|v| v == "required");
        assert!(!required, "WARDEN_BROWSER_TEST=required but no Chromium (apt-get install -y chromium)");
        eprintln!("serve_browser: no Chromium at /usr/bin/chromium (or WARDEN_CHROMIUM); skipped");
        return;
    };
    let upstream = Upstream::start(|_| Answer::json(200, json!({}))).await;
    let mut kite = SessionSetup::new("kite-main");
    kite.broker =
        Arc::new(ScriptedBroker::new("kite-main").login_fallback(Reply::grant(Duration::from_secs(6 * 3600))));
    let failing = SessionSetup {
        broker: Arc::new(ScriptedBroker::new("ibkr-paper").login_fallback(Reply::error(503, "service unavailable"))),
        ..SessionSetup::new("ibkr-paper")
    };
    let mut otp = SessionSetup::new("kotak-neo");
    otp.custom_broker = Some(Arc::new(NeedsAPerson));
    let served = serve(&upstream, vec![kite, failing, otp], ServeConfig::default()).await;
    let kite = served.handles[0].clone();
    let otp = served.handles[2].clone();
    assert!(eventually(500, || kite.status().state == StateKind::Valid).await);
    assert!(eventually(500, || otp.status().state == StateKind::Invalid).await);

    let browser = launch(&path);
    let mut page = Page::open(&browser).await;
    page.call("Page.enable", json!({})).await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1400, "height": 820, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    page.call("Page.navigate", json!({"url": format!("{}/", served.base)})).await;
    page.until("!!document.getElementById('signin-panel') && !document.getElementById('signin-panel').hidden").await;
    assert!(page.eval("document.getElementById('sessions-panel').hidden").await == Value::Bool(true));

    let sign_in = format!(
        "document.getElementById('token').value = {:?}; document.getElementById('signin-form').requestSubmit(); true",
        common::TOKEN
    );
    page.eval(&sign_in).await;
    page.until("document.querySelector('tr[data-session=\"kite-main\"] .state')?.textContent === 'Valid'").await;
    page.until("document.getElementById('conn').getAttribute('data-conn') === 'live'").await;
    assert_eq!(page.text("tr[data-session=\"kite-main\"] td.generation").await, "1");
    let expiry = page.text("tr[data-session=\"kite-main\"] td.expiry").await;
    assert!(expiry.starts_with("5h 5") || expiry.starts_with("6h"), "about six hours left: {expiry}");
    let failure = page.text("tr[data-session=\"ibkr-paper\"] td.failure").await;
    assert!(failure.contains("service unavailable"), "{failure}");
    assert_eq!(page.text("tr[data-session=\"kotak-neo\"] .state").await, "Invalid");
    assert!(page.text("tr[data-session=\"kotak-neo\"] td.state-cell").await.contains("authenticator app"));
    let segments = page.eval("document.querySelectorAll('tr[data-session=\"kite-main\"] .timeline .seg').length").await;
    assert!(segments.as_u64().unwrap() >= 1);
    let html = page.eval("document.documentElement.outerHTML").await.as_str().unwrap().to_owned();
    assert!(!html.contains(common::TOKEN) && !html.contains("kite-main-tok-"), "no token in the page");
    assert_eq!(page.eval("document.getElementById('token').value").await, "", "the token field is cleared");
    let cookies = page.eval("document.cookie").await;
    assert_eq!(cookies, "", "the session cookie is HttpOnly: scripts cannot read it");

    // A live change: a reset from outside; the page follows the event stream.
    let reset = served.post("/v1/sessions/kite-main/reset").send().await.unwrap();
    assert_eq!(reset.status(), 202);
    page.until("document.querySelector('tr[data-session=\"kite-main\"] td.generation')?.textContent === '2'").await;
    page.until("document.querySelectorAll('#events li[data-type=\"state_changed\"]').length >= 2").await;
    page.until("document.querySelectorAll('tr[data-session=\"kite-main\"] .timeline .seg').length >= 3").await;
    let event = page.text("#events li[data-type=\"grant_installed\"]").await;
    assert!(event.contains("kite-main") && event.contains("installed grant g2"), "{event}");

    if let Ok(file) = std::env::var("WARDEN_SCREENSHOT") {
        let shot = page.call("Page.captureScreenshot", json!({"format": "png"})).await;
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(&file, png).unwrap();
    }

    // The broker's login redirect lands on /callback/{session}?code=…; the operator confirms on the page.
    page.call("Page.navigate", json!({"url": format!("{}/callback/kotak-neo?code=246810", served.base)})).await;
    page.until("!!document.getElementById('callback-panel') && !document.getElementById('callback-panel').hidden")
        .await;
    assert_eq!(page.text("#callback-session").await, "kotak-neo");
    page.eval("document.getElementById('callback-confirm').click(); true").await;
    page.until("document.getElementById('callback-result').textContent.startsWith('Handed')").await;
    assert_eq!(page.eval("location.pathname + location.search").await, "/", "the code left the address bar");
    assert!(eventually(500, || otp.status().state == StateKind::Valid).await, "the code logged the session in");
    page.until("document.querySelector('tr[data-session=\"kotak-neo\"] .state')?.textContent === 'Valid'").await;
}
