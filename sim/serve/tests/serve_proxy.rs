//! The proxy: calls reach the broker with the session's grant and come back as the broker sent them;
//! rejections re-authenticate transparently (one login for a herd); unknown outcomes are a distinct 502
//! and never resent; `Idempotency-Key` counts only when the adapter maps it; the request limit, size and
//! time limits hold.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Answer, SessionSetup, Upstream, dropping_upstream, http, serve};
use warden_adapters::broker::{ApiRequest, BrokerApi, PlainApi, RawAnswer};
use warden_engine::{BoxFuture, BrokerError, Grant, Rate, UnixMs};
use warden_serve::ServeConfig;

fn json_reply(status: u16, body: &str) -> Answer {
    Answer::Reply(status, vec![("content-type".into(), "application/json".into())], body.as_bytes().to_vec())
}

async fn body_json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).expect("json body")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tokio::test]
async fn calls_reach_the_broker_with_the_grant_and_come_back_as_sent() {
    let upstream = Upstream::start(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/api/quotes/NSE:INFY") => Answer::Reply(
            200,
            vec![("content-type".into(), "application/json".into()), ("x-broker".into(), "yes".into())],
            b"{\"ltp\":101.5}".to_vec(),
        ),
        ("POST", "/api/orders") => json_reply(201, "{\"order_id\":\"A1\"}"),
        ("GET", "/api/echo") => {
            let auth = seen.header("authorization").unwrap_or_default().to_owned();
            json_reply(200, &serde_json::json!({"you_sent": auth}).to_string())
        }
        _ => json_reply(404, "{\"error\":\"no route\"}"),
    })
    .await;
    let served = serve(&upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;

    let response = served
        .get("/proxy/s1/quotes/NSE:INFY?fields=ltp&x=%2F")
        .header("x-engine", "python")
        .header("cookie", "engine=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-broker").as_deref(), Some("yes"));
    assert_eq!(header(&response, "warden-origin").as_deref(), Some("broker"));
    assert_eq!(header(&response, "warden-session").as_deref(), Some("s1"));
    assert_eq!(header(&response, "warden-generation").as_deref(), Some("1"));
    assert_eq!(response.text().await.unwrap(), "{\"ltp\":101.5}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].query.as_deref(), Some("fields=ltp&x=%2F"), "the query as the caller wrote it");
    assert_eq!(seen[0].header("authorization"), Some("Bearer s1-tok-1"), "the grant, put on by the adapter");
    assert_eq!(seen[0].header("x-engine"), Some("python"));
    assert_eq!(seen[0].header("cookie"), None, "warden's own credentials are not forwarded");

    let response = served
        .post("/proxy/s1/orders")
        .header("content-type", "application/json")
        .body("{\"qty\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(body_json(response).await["order_id"], "A1");
    let order = upstream.seen().pop().unwrap();
    assert_eq!((order.body.as_slice(), order.header("content-type")), (&b"{\"qty\":1}"[..], Some("application/json")));

    let response = served.get("/proxy/s1/echo").send().await.unwrap();
    let text = response.text().await.unwrap();
    assert!(!text.contains("s1-tok-1") && text.contains("Bearer ***"), "an echoed token is scrubbed: {text}");
}

#[tokio::test]
async fn a_rejected_token_is_replaced_once_for_a_whole_herd_and_the_calls_run_again() {
    let upstream = Upstream::start(|seen| {
        if seen.header("authorization") == Some("Bearer s1-tok-1") {
            json_reply(401, "{\"error\":\"invalid_token\"}")
        } else {
            json_reply(200, "{\"ok\":true}")
        }
    })
    .await;
    let served = serve(&upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;
    let calls = (0..50).map(|i| {
        let request =
            if i % 5 == 0 { served.post("/proxy/s1/orders").body("{}") } else { served.get("/proxy/s1/quotes") };
        request.send()
    });
    let responses = futures_util::future::join_all(calls).await;
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), 200, "re-authenticated and run again, orders included (rule 7)");
        assert_eq!(header(&response, "warden-generation").as_deref(), Some("2"));
    }
    assert_eq!(served.brokers[0].logins(), 2, "one re-login for the whole herd");
    let seen = upstream.seen();
    let orders = seen.iter().filter(|s| s.method == "POST").count();
    let accepted_orders =
        seen.iter().filter(|s| s.method == "POST" && s.header("authorization") == Some("Bearer s1-tok-2")).count();
    assert_eq!(accepted_orders, 10, "every order reached the broker once with the new grant");
    assert!(orders <= 20, "an order ran at most twice: once rejected, once accepted ({orders})");
}

#[tokio::test]
async fn an_unknown_outcome_is_a_distinct_502_and_is_never_resent() {
    let upstream = Upstream::start(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        (_, "/api/orders") => json_reply(502, "{\"gateway\":\"bad\"}"),
        ("GET", "/api/quotes") => json_reply(502, "{\"gateway\":\"bad\"}"),
        ("POST", "/api/refused") => json_reply(403, "{\"error\":\"segment not enabled\"}"),
        _ => json_reply(404, "{}"),
    })
    .await;
    let (dropping, _dropper) = dropping_upstream().await;
    let mut silent = SessionSetup::new("silent");
    silent.api = Some(Arc::new(PlainApi::new(silent.broker.clone(), dropping, http())));
    let served = serve(&upstream, vec![SessionSetup::new("s1"), silent], ServeConfig::default()).await;

    let response = served.post("/proxy/s1/orders").body("{\"qty\":1}").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "warden-origin").as_deref(), Some("warden"));
    assert_eq!(header(&response, "warden-retry-safe").as_deref(), Some("no"));
    let body = body_json(response).await;
    assert_eq!(body["error"], "outcome_unknown", "{body}");
    assert_eq!(upstream.seen().iter().filter(|s| s.path == "/api/orders").count(), 1, "sent once, never again");

    let response = served.get("/proxy/s1/quotes").send().await.unwrap();
    assert_eq!(response.status(), 502, "an idempotent call gets the broker's own answer");
    assert_eq!(header(&response, "warden-origin").as_deref(), Some("broker"));
    assert_eq!(header(&response, "warden-error-class").as_deref(), Some("transient"));
    assert_eq!(response.text().await.unwrap(), "{\"gateway\":\"bad\"}");

    let response = served.post("/proxy/s1/refused").body("{}").send().await.unwrap();
    assert_eq!(response.status(), 403, "a broker's refusal is passed through as sent");
    assert_eq!(header(&response, "warden-error-class").as_deref(), Some("permanent"));
    assert_eq!(response.text().await.unwrap(), "{\"error\":\"segment not enabled\"}");
    assert_eq!(served.brokers[0].logins(), 1, "a refused call costs no login");

    let response = served.post("/proxy/silent/orders").body("{}").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(body_json(response).await["error"], "outcome_unknown", "no answer to an order");
    let response = served.get("/proxy/silent/quotes").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "warden-retry-safe").as_deref(), Some("yes"));
    assert_eq!(body_json(response).await["error"], "no_answer");
}

/// A `PlainApi` whose broker documents a client order id: the key goes into `x-client-order-id`.
struct KeyedApi(PlainApi);

impl BrokerApi for KeyedApi {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn default_base_url(&self) -> Option<reqwest::Url> {
        self.0.default_base_url()
    }
    fn apply_idempotency_key(&self, request: &mut ApiRequest, key: &str) -> bool {
        request.headers.push(("x-client-order-id".into(), key.into()));
        true
    }
    fn send_raw<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<RawAnswer, BrokerError>> {
        self.0.send_raw(now, grant, request)
    }
}

#[tokio::test]
async fn an_idempotency_key_counts_only_when_the_adapter_maps_it() {
    let upstream = Upstream::start(|_| json_reply(502, "{\"gateway\":\"bad\"}")).await;
    let mut keyed = SessionSetup::new("keyed");
    keyed.api = Some(Arc::new(KeyedApi(PlainApi::new(keyed.broker.clone(), upstream.base.clone(), http()))));
    let served = serve(&upstream, vec![SessionSetup::new("plain"), keyed], ServeConfig::default()).await;

    let response = served.post("/proxy/keyed/orders").header("Idempotency-Key", "order-0001").send().await.unwrap();
    assert_eq!(header(&response, "warden-idempotency").as_deref(), Some("mapped"));
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "warden-origin").as_deref(), Some("broker"), "a de-duplicated call may be resent");
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.header("x-client-order-id"), Some("order-0001"));
    assert_eq!(seen.header("idempotency-key"), None, "the header itself is not forwarded");

    let response = served.post("/proxy/plain/orders").header("Idempotency-Key", "order-0002").send().await.unwrap();
    assert_eq!(header(&response, "warden-idempotency").as_deref(), Some("ignored"));
    assert_eq!(body_json(response).await["error"], "outcome_unknown", "the key changed nothing");

    let response = served.post("/proxy/plain/orders").header("Idempotency-Key", "has space").send().await.unwrap();
    assert_eq!(response.status(), 400);
}

/// The status of a GET of `path` written on the wire as it is.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        common::TOKEN
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn limits_size_time_and_the_accounts_request_rate() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let upstream = Upstream::start(move |seen| match seen.path.as_str() {
        "/api/slow" => Answer::Hold(held.clone()),
        _ => json_reply(200, "{}"),
    })
    .await;
    let mut limited = SessionSetup::new("limited");
    limited.policy.request_rate = Some(Rate::new(1, Duration::from_secs(60)));
    limited.policy.request_timeout = Duration::from_millis(300);
    let config =
        ServeConfig { max_request_bytes: 1024, proxy_timeout: Duration::from_millis(500), ..Default::default() };
    let served = serve(&upstream, vec![SessionSetup::new("s1"), limited], config).await;

    let response = served.post("/proxy/s1/orders").body(vec![b'x'; 2048]).send().await.unwrap();
    assert_eq!(response.status(), 413, "a body over max_request_bytes");
    assert!(upstream.seen().is_empty());
    assert_eq!(served.get("/proxy/nobody/x").send().await.unwrap().status(), 404);
    // HTTP clients normalise `..` away (encoded or not), so these are written on the wire by hand.
    for path in ["/proxy/s1/a/../../admin", "/proxy/s1/a/%2E%2e/admin"] {
        assert_eq!(raw_get(served.addr, path).await, 400, "{path}");
    }
    assert!(upstream.seen().is_empty(), "nothing with a dot segment was forwarded");

    let response = served.post("/proxy/s1/slow").body("{}").send().await.unwrap();
    assert_eq!(response.status(), 502, "an order that outlives proxy_timeout has an unknown outcome");
    assert_eq!(body_json(response).await["error"], "outcome_unknown");
    let response = served.get("/proxy/s1/slow").send().await.unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(body_json(response).await["error"], "timeout");
    gate.add_permits(10);

    assert_eq!(served.get("/proxy/limited/quotes").send().await.unwrap().status(), 200);
    let response = served.get("/proxy/limited/quotes").send().await.unwrap();
    assert_eq!(response.status(), 429, "the account's limit does not free up within the request timeout");
    assert_eq!(body_json(response).await["error"], "rate_limited");
}

#[tokio::test]
async fn a_session_without_a_token_says_why() {
    let upstream = Upstream::start(|_| json_reply(200, "{}")).await;
    let served = serve(&upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;
    served.handles[0].logout().await.unwrap();
    let response = served.get("/proxy/s1/quotes").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "warden-no-token").as_deref(), Some("stopped"));
    let body = body_json(response).await;
    assert_eq!(body["error"], "no_token");
    assert!(body["detail"].as_str().unwrap().contains("logged out"), "{body}");
    assert!(upstream.seen().is_empty());
}
