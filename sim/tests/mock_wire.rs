//! The mock brokers at the wire: bad input gets a 4xx (never a panic, never a 5xx) and bodies are
//! size-limited; the model's rate limits come back as 429 with `Retry-After` (and Saxo's rate-limit
//! headers, IBKR's penalty box); IBKR's signatures are verified for real and computed over the URL the
//! mock serves (or the origin it signs as), never the `Host` header; competing logins; Kotak's refusal
//! forms; duplicates by client order id or content; `gen-creds` material that works end to end.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{client as client_of, http, mock as mock_of, spec};
use warden_adapters::broker::ibkr::{self, oauth};
use warden_adapters::broker::{ApiRequest, KotakNeo};
use warden_engine::{Credentials, ErrorClass, Grant, KeepaliveStatus, LoginRequest, Secret};
use warden_sim::mock::client::MockClient;
use warden_sim::mock::{Account, MockBroker, MockConfig, SERVED};
use warden_sim::model::{BrokerEvent, BrokerModel, EventKind, Limit, ModelKind, RateLimit, RejectionForm};

fn login(credentials: &Credentials) -> LoginRequest<'_> {
    LoginRequest { credentials, second_factor: None, take_over: false }
}

/// Every route of every mock, with every method.
const PATHS: &[&str] = &[
    "/connect/login",
    "/session/token",
    "/quote",
    "/orders/regular",
    "/orders/regular/1",
    "/ws",
    "/login/1.0/tradeApiLogin",
    "/login/1.0/tradeApiValidate",
    "/quick/order/rule/ms/place",
    "/quick/user/limits",
    "/script-details/1.0/quotes/neosymbol/x",
    "/realtime",
    "/authorize",
    "/token",
    "/oauth2/token",
    "/openapi/trade/v2/orders",
    "/openapi/trade/v1/infoprices/subscriptions",
    "/openapi/streamingws/connect",
    "/openapi/streamingws/authorize",
    "/v1/api/oauth/live_session_token",
    "/v1/api/iserver/auth/ssodh/init",
    "/v1/api/tickle",
    "/v1/api/iserver/account/U1/orders",
    "/v1/api/ws",
    "/api/v1/orders",
    "/__mock/nothing",
    "/%FF%FE",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_never_a_panic() {
    let raw = reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(0).build().unwrap();
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        b"jData={not json".to_vec(),
        br#"{"orders":[{}]}"#.to_vec(),
        br#"{"mobileNumber":1,"ucc":[],"totp":null}"#.to_vec(),
        b"grant_type=refresh_token".to_vec(),
        b"api_key=mockkiteapikey&request_token=x&checksum=y".to_vec(),
        vec![b'a'; 70 * 1024],
    ];
    let headers: &[(&str, &str)] = &[
        ("authorization", "token ::::"),
        ("authorization", "OAuth realm"),
        ("authorization", "OAuth realm=\"limited_poa\", oauth_signature=\"%zz\""),
        ("authorization", "Basic !!!"),
        ("authorization", "Bearer "),
        ("auth", "a.b.c"),
        ("x-kite-version", "99"),
    ];
    for kind in SERVED {
        let mock = mock_of(spec(kind, Duration::from_secs(60), None)).await;
        let mut answers = 0;
        for path in PATHS {
            for method in [reqwest::Method::GET, reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE] {
                for (n, body) in bodies.iter().enumerate() {
                    let (name, value) = headers[n % headers.len()];
                    let url = format!("{}{path}?contextId=&api_key=x&i=NSE:INFY", mock.base_url());
                    let response =
                        raw.request(method.clone(), &url).header(name, value).body(body.clone()).send().await;
                    // A route that reads no body may answer before a large one is written, and close.
                    let Ok(response) = response else {
                        assert!(body.len() > 64 * 1024, "{kind} {method} {path} body #{n}: no answer");
                        continue;
                    };
                    let status = response.status().as_u16();
                    assert!((400..500).contains(&status), "{kind} {method} {path} body #{n}: HTTP {status}");
                    answers += 1;
                }
            }
        }
        let health = raw.get(format!("{}/__mock/health", mock.base_url())).send().await.unwrap();
        assert_eq!(health.status().as_u16(), 200, "{kind} still serves");
        let stats = mock.stats();
        assert!(answers > 900, "{kind}: {answers} answers");
        assert!(stats.server.bad_requests > 0 && stats.server.http_requests > 0, "{kind}: {stats:?}");
        assert_eq!(stats.model.logins, 0, "{kind}: nothing logged in: {stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_413() {
    let mock = mock_of(spec(ModelKind::OAuth2, Duration::from_secs(60), None)).await;
    let raw = reqwest::Client::new();
    let response =
        raw.post(format!("{}/oauth2/token", mock.base_url())).body(vec![b'x'; 65 * 1024]).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    // OAuth2: two requests a second.
    let mut limited = spec(ModelKind::OAuth2, Duration::from_secs(60), None);
    limited.request_limit = RateLimit { windows: vec![Limit { max: 2, per: Duration::from_secs(1) }], penalty: None };
    let mock = mock_of(limited).await;
    let client = client_of(&mock);
    let broker = client.broker();
    let grant = broker.login(mock.now(), login(client.credentials())).await.expect("login");
    let raw = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = raw
            .get(format!("{}/api/v1/quote", mock.base_url()))
            .bearer_auth(grant.access_token.expose())
            .send()
            .await
            .unwrap();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        statuses.push((response.status().as_u16(), retry_after));
    }
    assert_eq!(statuses[..2], [(200, None), (200, None)]);
    assert_eq!(statuses[2], (429, Some("1".to_owned())), "{statuses:?}");
    let e = client.send(mock.now(), &grant, client.quote(&grant).unwrap()).await.unwrap_err();
    assert!(matches!(broker.classify(&e), ErrorClass::RateLimited { retry_after: Some(_) }), "{e:?}");
    assert!(mock.stats().model.rate_limited >= 2);

    // Saxo: one order a second, with its rate-limit headers.
    let mock = mock_saxo().await;
    let client = client_of(&mock);
    let credentials = client.first_login_credentials(&mock, mock.now());
    let grant = client.broker().login(mock.now(), login(&credentials)).await.expect("login");
    let order = |id: &str| serde_json::json!({"Uic": 21, "AssetType": "FxSpot", "BuySell": "Buy", "Amount": 1, "OrderType": "Market", "ExternalReference": id});
    let url = format!("{}/openapi/trade/v2/orders", mock.base_url());
    let token = grant.access_token.expose().to_owned();
    let first = raw.post(&url).bearer_auth(&token).json(&order("a")).send().await.unwrap();
    let second = raw.post(&url).bearer_auth(&token).json(&order("b")).send().await.unwrap();
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 429));
    let header = |name: &str| second.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("x-ratelimit-sessionorders-remaining").as_deref(), Some("0"));
    assert!(header("x-ratelimit-sessionorders-reset").is_some() && header("retry-after").is_some());

    // IBKR: ten a second, then the ten-minute penalty box.
    let mut ibkr_spec = spec(ModelKind::Ibkr, Duration::from_secs(60), None);
    ibkr_spec.request_limit = RateLimit {
        windows: vec![Limit { max: 3, per: Duration::from_secs(1) }],
        penalty: Some(Duration::from_secs(600)),
    };
    let mock = mock_of(ibkr_spec).await;
    let client = client_of(&mock);
    let grant = client.broker().login(mock.now(), login(client.credentials())).await.expect("login");
    let mut last = None;
    for _ in 0..5 {
        last = client.send(mock.now(), &grant, client.quote(&grant).unwrap()).await.err();
    }
    let e = last.expect("the fifth is refused");
    assert_eq!(e.status, Some(429));
    assert_eq!(client.broker().classify(&e), ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(600)) });
}

async fn mock_saxo() -> MockBroker {
    mock_of(spec(ModelKind::Saxo, Duration::from_secs(60), Some(Duration::from_secs(600)))).await
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapters/tests/fixtures/ibkr").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibkr_verifies_signatures_and_refuses_a_wrong_key_with_401() {
    let mock = mock_of(spec(ModelKind::Ibkr, Duration::from_secs(60), None)).await;
    let client = client_of(&mock);
    let wrong_key = std::fs::read_to_string(fixture("private_signature.pem")).unwrap();
    let wrong = client.credentials().clone().with("signature_key", wrong_key);
    let e = client.broker().login(mock.now(), login(&wrong)).await.unwrap_err();
    assert_eq!(e.status, Some(401), "{e:?}");
    assert_eq!(client.broker().classify(&e), ErrorClass::AuthExpired);
    let other_token = client.credentials().clone().with("access_token", "not-the-access-token");
    assert_eq!(client.broker().login(mock.now(), login(&other_token)).await.unwrap_err().status, Some(401));
    let stats = mock.stats();
    assert_eq!((stats.model.login_failures, stats.model.logins), (2, 0), "{stats:?}");
    assert_eq!(stats.server.auth_failures, 2);
    // The right key logs in; a request signed with another token than the live session token is refused.
    let grant = client.broker().login(mock.now(), login(client.credentials())).await.expect("login");
    let mut forged = grant.clone();
    forged.access_token = Secret::new(base64::engine::general_purpose::STANDARD.encode([7u8; 20]));
    let e = client.send(mock.now(), &forged, client.quote(&grant).unwrap()).await.unwrap_err();
    assert_eq!(e.status, Some(401));
    assert!(client.send(mock.now(), &grant, client.quote(&grant).unwrap()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibkr_signs_the_url_it_serves_never_the_host_header() {
    let model = BrokerModel::new(spec(ModelKind::Ibkr, Duration::from_secs(60), None), 7);
    let mut config = MockConfig::demo(model, warden_actors::Clock::system()).unwrap();
    config.sign_as = Some("https://api.ibkr.com".into());
    let mock = MockBroker::start(config).await.unwrap();
    // warden's adapter signs its own base URL (127.0.0.1): refused by a mock that signs as api.ibkr.com.
    let client = client_of(&mock);
    let e = client.broker().login(mock.now(), login(client.credentials())).await.unwrap_err();
    assert_eq!(e.status, Some(401), "{e:?}");
    // A request signed for https://api.ibkr.com is accepted, whatever its Host header says.
    let credentials = client.credentials();
    let text = |name: &str| credentials.get(name).unwrap().expose().to_owned();
    let key = oauth::parse_private_key(&text("signature_key"), "signature_key").unwrap();
    let encryption = oauth::parse_private_key(&text("encryption_key"), "encryption_key").unwrap();
    let prepend = oauth::decrypt_prepend(&encryption, &text("access_token_secret")).unwrap();
    let dh = oauth::DhParams::from_hex(&text("dh_prime"), 2).unwrap();
    let mut params = oauth::oauth_params(
        &text("consumer_key"),
        &text("access_token"),
        "n0nce16chars0001",
        mock.now().as_millis() / 1000,
        "RSA-SHA256",
    );
    params.insert(
        "diffie_hellman_challenge".into(),
        oauth::dh_challenge(&dh, &oauth::dh_random().unwrap()).to_str_radix(16),
    );
    let base =
        oauth::base_string("POST", "https://api.ibkr.com/v1/api/oauth/live_session_token", &params, Some(&prepend));
    params.insert("oauth_signature".into(), oauth::rsa_sha256_signature(&key, &base).unwrap());
    let header = oauth::authorization_header("limited_poa", &params);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/api/oauth/live_session_token", mock.base_url()))
        .header("authorization", header)
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(ibkr::parse_lst_answer(&answer).is_ok(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibkr_competing_login_takes_the_account() {
    let mut competing = spec(ModelKind::Ibkr, Duration::from_secs(60), None);
    let mock_now = warden_actors::Clock::system().now();
    competing.events =
        vec![BrokerEvent { at: mock_now.saturating_add(Duration::from_millis(700)), kind: EventKind::CompetingLogin }];
    let mock = mock_of(competing).await;
    let client = client_of(&mock);
    let broker = client.broker();
    let grant = broker.login(mock.now(), login(client.credentials())).await.expect("login");
    assert_eq!(broker.keepalive(mock.now(), &grant).await.unwrap(), KeepaliveStatus::Alive);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(broker.keepalive(mock.now(), &grant).await.unwrap(), KeepaliveStatus::Competing);
    let e = broker.login(mock.now(), login(client.credentials())).await.unwrap_err();
    assert_eq!(broker.classify(&e), ErrorClass::Competing, "{e:?}");
    let take_over = LoginRequest { credentials: client.credentials(), second_factor: None, take_over: true };
    broker.login(mock.now(), take_over).await.expect("a take-over login");
    assert_eq!(mock.stats().model.competing_logins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kotak_refusals_come_in_each_form_and_read_as_expiries() {
    for (form, status) in [
        (RejectionForm::Kotak900901, 401),
        (RejectionForm::KotakInvalidJwt, 401),
        (RejectionForm::Kotak100022, 403),
        (RejectionForm::KotakInvalidSession, 403),
    ] {
        let mut kotak = spec(ModelKind::KotakNeo, Duration::from_secs(60), None);
        kotak.rejection_form = form;
        let mock = mock_of(kotak).await;
        let client = client_of(&mock);
        let grant = client.broker().login(mock.now(), login(client.credentials())).await.expect("login");
        // A second login while the first session lives: counted as competing with a live session.
        client.broker().login(mock.now(), login(client.credentials())).await.expect("a second login");
        assert_eq!(mock.stats().model.logins_while_live, 1);
        mock.model().invalidate(mock.now());
        let url = KotakNeo::api_url(&grant, "quick/user/limits").unwrap();
        let e = client.send(mock.now(), &grant, ApiRequest::get(url)).await.unwrap_err();
        assert_eq!(
            (e.status, client.broker().classify(&e)),
            (Some(status), ErrorClass::AuthExpired),
            "{form:?}: {e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_by_client_order_id_or_content() {
    let mock = mock_of(spec(ModelKind::OAuth2, Duration::from_secs(60), None)).await;
    let client = client_of(&mock);
    let grant = client.broker().login(mock.now(), login(client.credentials())).await.expect("login");
    let send = |body: serde_json::Value| {
        let client = client.clone();
        let grant: Grant = grant.clone();
        let url = format!("{}/api/v1/orders", mock.base_url());
        let now = mock.now();
        async move { client.send(now, &grant, ApiRequest::post(url).json(body)).await.expect("an order") }
    };
    send(serde_json::json!({"symbol": "A", "side": "buy", "quantity": 1, "client_order_id": "c1"})).await;
    send(serde_json::json!({"symbol": "A", "side": "buy", "quantity": 2, "client_order_id": "c1"})).await;
    send(serde_json::json!({"symbol": "A", "side": "buy", "quantity": 1, "client_order_id": "c2"})).await;
    send(serde_json::json!({"symbol": "B", "side": "sell", "quantity": 5})).await;
    send(serde_json::json!({"quantity": 5, "side": "sell", "symbol": "B"})).await;
    send(serde_json::json!({"symbol": "B", "side": "sell", "quantity": 6})).await;
    let stats = mock.stats().model;
    assert_eq!((stats.orders_executed, stats.duplicate_orders), (6, 2), "c1 twice, and B×5 twice: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_creds_material_logs_in_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let written = warden_sim::mock::ibkr_creds::generate_ibkr(dir.path()).expect("generate");
    assert_eq!(written.len(), 15);
    let account = Account::load(ModelKind::Ibkr, &dir.path().join("mock")).expect("the mock's folder loads");
    let model = BrokerModel::new(spec(ModelKind::Ibkr, Duration::from_secs(60), None), 7);
    let mut config = MockConfig::demo(model, warden_actors::Clock::system()).unwrap();
    config.account = account;
    let mock = MockBroker::start(config).await.unwrap();
    let client_dir = dir.path().join("client");
    let text = |name: &str| std::fs::read_to_string(client_dir.join(name)).unwrap().trim().to_owned();
    let credentials = ibkr::credentials_from_files(
        &text("consumer_key.txt"),
        &text("access_token.txt"),
        &text("access_token_secret.b64"),
        &client_dir.join("private_signature.pem"),
        &client_dir.join("private_encryption.pem"),
        &client_dir.join("dhparam.pem"),
    )
    .expect("the client's folder loads");
    let client =
        MockClient::for_mock(&mock, http(), warden_actors::Clock::system()).unwrap().with_credentials(credentials);
    let grant =
        client.broker().login(mock.now(), login(client.credentials())).await.expect("login with generated keys");
    assert!(client.send(mock.now(), &grant, client.quote(&grant).unwrap()).await.is_ok());
    // The demo account's keys are not these.
    let demo = warden_sim::mock::client::ibkr_demo_credentials();
    assert_eq!(client.broker().login(mock.now(), login(&demo)).await.unwrap_err().status, Some(401));
}
