//! Who may call: a wrong or missing bearer gets 401 on every route but `/healthz`; a full cycle leaks no
//! credential or token into any response, header, event or log line; a public address needs TLS.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Answer, SessionSetup, Upstream, eventually, serve};
use futures_util::StreamExt;
use reqwest::Method;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use warden_engine::StateKind;
use warden_serve::{ServeConfig, TlsFiles};

const ROUTES: [(&str, &str); 25] = [
    ("GET", "/"),
    ("GET", "/callback/s1?code=abc"),
    ("POST", "/callback/s1"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/s1"),
    ("GET", "/v1/sessions/s1/history"),
    ("POST", "/v1/sessions/s1/reset"),
    ("POST", "/v1/sessions/s1/second-factor"),
    ("POST", "/v1/sessions/s1/request-token"),
    ("POST", "/v1/sessions/s1/credentials"),
    ("POST", "/v1/sessions/s1/logout"),
    ("POST", "/v1/reload"),
    ("GET", "/v1/events"),
    ("GET", "/v1/sessions/s1/stream"),
    ("POST", "/v1/signin"),
    ("POST", "/v1/signout"),
    ("GET", "/v1/whoami"),
    ("GET", "/proxy/s1/quotes"),
    ("POST", "/proxy/s1/orders"),
    ("PUT", "/proxy/s1/orders/1"),
    ("DELETE", "/proxy/s1/orders/1"),
    ("GET", "/proxy/s1"),
    ("GET", "/no/such/route"),
];

#[tokio::test]
async fn a_wrong_or_missing_bearer_gets_401_on_every_route_but_healthz() {
    let upstream = Upstream::start(|_| Answer::json(200, serde_json::json!({}))).await;
    let served = serve(&upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;
    let handle = served.handles[0].clone();
    assert!(eventually(250, || handle.status().state == StateKind::Valid).await);
    let client = &served.client;
    for (method, path) in ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for bearer in [None, Some("wrong-token"), Some(&common::TOKEN[1..]), Some("")] {
            let mut request = client.request(method.clone(), served.url(path)).body("{\"code\":\"x\"}");
            if let Some(bearer) = bearer {
                request = request.header("authorization", format!("Bearer {bearer}"));
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {bearer:?}");
        }
        let basic = client.request(method.clone(), served.url(path)).basic_auth("admin", Some(common::TOKEN));
        assert_eq!(basic.send().await.unwrap().status(), 401, "{method} {path}: only a bearer counts");
    }
    for path in ["/v1/events", "/v1/sessions/s1/stream"] {
        for bearer in [None, Some("Bearer wrong")] {
            let mut request = format!("ws://{}{path}", served.addr).into_client_request().unwrap();
            if let Some(bearer) = bearer {
                request.headers_mut().insert("authorization", bearer.parse().unwrap());
            }
            let refused = tokio_tungstenite::connect_async(request).await.unwrap_err().to_string();
            assert!(refused.contains("401"), "{path} with {bearer:?}: {refused}");
        }
    }
    assert_eq!(client.get(served.url("/healthz")).send().await.unwrap().status(), 200);
    assert!(upstream.seen().is_empty(), "nothing reached the broker");
    assert_eq!((served.brokers[0].logins(), served.brokers[0].logouts()), (1, 0), "nothing was done");
    assert_eq!(handle.status().state, StateKind::Valid);
}

/// A `MakeWriter` into a shared buffer: every log line of the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Every response's status line, headers and body, as text.
#[derive(Default)]
struct Transcript(Vec<String>);

impl Transcript {
    async fn keep(&mut self, response: reqwest::Response) -> (u16, String) {
        let status = response.status().as_u16();
        let headers: Vec<String> =
            response.headers().iter().map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes()))).collect();
        let body = response.text().await.unwrap();
        self.0.push(format!("{status}\n{}\n\n{body}", headers.join("\n")));
        (status, body)
    }
}

#[tokio::test]
async fn a_full_cycle_leaks_no_credential_or_token() {
    let logs = Captured::default();
    let filter =
        "trace,hyper=info,hyper_util=info,h2=info,reqwest=info,rustls=info,tungstenite=info,tokio_tungstenite=info";
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(logs.clone()).with_ansi(false).init();

    let upstream = Upstream::start(|seen| match seen.path.as_str() {
        _ if seen.header("authorization") == Some("Bearer s1-tok-1") => Answer::json(401, serde_json::json!({"e": 1})),
        "/api/echo" => Answer::json(200, serde_json::json!({"headers": format!("{:?}", seen.headers)})),
        "/api/refused" => Answer::json(403, serde_json::json!({"error": "segment not enabled"})),
        "/api/orders" => Answer::json(502, serde_json::json!({"gateway": "bad"})),
        _ => Answer::json(200, serde_json::json!({"ok": true})),
    })
    .await;
    let served = serve(&upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;
    let handle = served.handles[0].clone();
    let mut transcript = Transcript::default();
    let mut events = common::SseReader::open(&served, None).await;

    let (_, signin) = transcript.keep(served.post("/v1/signin").send().await.unwrap()).await;
    let csrf = serde_json::from_str::<serde_json::Value>(&signin).unwrap()["csrf"].as_str().unwrap().to_owned();
    for path in ["/proxy/s1/quotes", "/proxy/s1/echo", "/proxy/s1/refused"] {
        transcript.keep(served.get(path).send().await.unwrap()).await;
    }
    transcript.keep(served.post("/proxy/s1/orders").body("{\"qty\":1}").send().await.unwrap()).await;
    let commands = [
        ("/v1/sessions/s1/second-factor", "{\"code\":\"SECOND-FACTOR-77\"}"),
        ("/v1/sessions/s1/request-token", "{\"request_token\":\"REQUEST-TOKEN-88\"}"),
        ("/v1/sessions/s1/credentials", "{\"credentials\":{\"user\":\"trader\",\"password\":\"NEW-PASSWORD-99\"}}"),
        ("/callback/s1", "{\"code\":\"CALLBACK-CODE-66\"}"),
        ("/v1/sessions/s1/second-factor", "{\"code\": 7777777}"),
        ("/v1/sessions/s1/reset", ""),
    ];
    for (path, body) in commands {
        let request = served.post(path).header("content-type", "application/json").body(body);
        transcript.keep(request.send().await.unwrap()).await;
    }
    let broker = served.brokers[0].clone();
    assert!(eventually(250, || broker.logins() >= 3).await, "the reset logged in again");
    for path in ["/", "/v1/sessions", "/v1/sessions/s1", "/v1/sessions/s1/history", "/metrics", "/readyz", "/v1/whoami"]
    {
        transcript.keep(served.get(path).send().await.unwrap()).await;
    }
    let mut socket_request = format!("ws://{}/v1/events", served.addr).into_client_request().unwrap();
    socket_request.headers_mut().insert("authorization", format!("Bearer {}", common::TOKEN).parse().unwrap());
    socket_request.headers_mut().insert("last-event-id", "1".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(socket_request).await.unwrap();
    transcript.keep(served.post("/v1/sessions/s1/logout").send().await.unwrap()).await;
    assert_eq!(handle.status().state, StateKind::Stopped);
    let marker =
        served.service.app().events.push(None, served.warden.now(), "test_end", "end".into(), serde_json::Value::Null);
    let mut streamed = Vec::new();
    while let Some(event) = events.next().await {
        streamed.push(event.data.to_string());
        if event.id == Some(marker) {
            break;
        }
    }
    while let Some(Ok(message)) = socket.next().await {
        let text = message.into_text().unwrap().to_string();
        let done = text.contains("test_end");
        streamed.push(text);
        if done {
            break;
        }
    }
    assert!(streamed.len() > 10, "the cycle's events were streamed: {}", streamed.len());
    let kept: Vec<String> = served.service.app().events.kept().iter().map(|e| e.json.clone()).collect();
    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(log_text.contains("login started"), "the capture holds the service's logs");

    let mut secrets: Vec<String> = vec![
        common::TOKEN.into(),
        "s1-PASSWORD-xyz".into(),
        "SECOND-FACTOR-77".into(),
        "REQUEST-TOKEN-88".into(),
        "NEW-PASSWORD-99".into(),
        "CALLBACK-CODE-66".into(),
        "7777777".into(),
    ];
    secrets.extend((1..=broker.grants_issued()).map(|n| format!("s1-tok-{n}")));
    let issued = [csrf.clone()];
    for (place, texts) in [("response", &transcript.0), ("event", &streamed), ("kept event", &kept)] {
        for text in texts {
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "`{secret}` in a {place}: {text}");
            }
        }
    }
    for secret in secrets.iter().chain(issued.iter()) {
        for line in log_text.lines() {
            assert!(!line.contains(secret.as_str()), "`{secret}` in a log line: {line}");
        }
    }
}

#[tokio::test]
async fn a_public_address_needs_tls_and_tls_serves() {
    let warden = warden_actors::Warden::builder().memory_store().build().await.unwrap();
    let options = |listen: &str, config: ServeConfig| warden_serve::ServeOptions {
        config,
        listen: listen.parse().unwrap(),
        allow_plain_http: false,
        token: warden_engine::Secret::new(common::TOKEN),
        warden: warden.clone(),
        sessions: Vec::new(),
        source: None,
    };
    let refused = warden_serve::serve(options("0.0.0.0:0", ServeConfig::default()), |_| {}, async {}).await;
    let refused = refused.unwrap_err().to_string();
    assert!(refused.contains("is not a loopback address"), "{refused}");

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tls = TlsFiles { cert: fixtures.join("tls-cert.pem"), key: fixtures.join("tls-key.pem") };
    let config = ServeConfig { tls: Some(tls.clone()), ..ServeConfig::default() };
    let service = warden_serve::Service::builder(warden.clone(), config, warden_engine::Secret::new(common::TOKEN))
        .build()
        .await
        .unwrap();
    let server = service.bind("127.0.0.1:0".parse().unwrap(), Some(tls)).await.unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let cert = reqwest::Certificate::from_pem(&std::fs::read(fixtures.join("ca-cert.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder().tls_certs_only([cert]).build().unwrap();
    let health = client.get(format!("https://127.0.0.1:{}/healthz", addr.port())).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let signin = client
        .post(format!("https://127.0.0.1:{}/v1/signin", addr.port()))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap();
    let cookie = signin.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.ends_with("; Secure"), "over TLS the cookie is Secure: {cookie}");
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/healthz", addr.port())).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "no plain HTTP on a TLS listener");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
