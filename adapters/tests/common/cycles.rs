//! The scripted-server cycles of every adapter (login, calls, errors, refresh or keep-alive, logout), each
//! returning the secrets it used: run as round trips by `broker_http.rs` and under a trace-level log capture
//! by `broker_logs.rs`.

#![allow(dead_code)] // each test binary uses a different part

use crate::common::mock_http::{MockServer, Reply, Seen, field, oauth_header_params, parse_pairs, percent_decode};
use base64::Engine as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_adapters::broker::ibkr::{self, oauth};
use warden_adapters::broker::{
    ApiRequest, BrokerApi, ClientAuth, HttpClient, HttpSettings, Ibkr, IbkrSettings, Kite, KiteSettings, KotakNeo,
    KotakSettings, OAuth2ClientCredentials, OAuth2Settings, Saxo, SaxoSettings, kite, totp,
};
use warden_engine::{Broker, Credentials, Delivery, ErrorClass, KeepaliveStatus, LoginRequest, Secret, UnixMs};

/// 2026-03-09T10:00:00Z.
pub const NOW: UnixMs = UnixMs::from_millis(1_773_050_400_000);

pub fn http() -> HttpClient {
    HttpClient::new(HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        ..HttpSettings::default()
    })
    .expect("client")
}

pub fn login<'a>(credentials: &'a Credentials, second_factor: Option<&'a Secret>) -> LoginRequest<'a> {
    LoginRequest { credentials, second_factor, take_over: false }
}

pub fn assert_no_secret(text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "`{secret}` leaked into: {text}");
    }
}

// ---------------------------------------------------------------------------------------------------
// Saxo

pub async fn saxo_cycle() -> Vec<String> {
    let server = MockServer::start(|seen: &Seen| match seen.path.as_str() {
        "/token" => {
            let form = seen.form();
            match (field(&form, "grant_type"), field(&form, "code"), field(&form, "refresh_token")) {
                (Some("authorization_code"), Some("CODE-saxo-1"), _) => Reply::json(
                    201,
                    serde_json::json!({"access_token":"SAXO-AT-1","token_type":"Bearer","expires_in":1200,
                        "refresh_token":"SAXO-RT-1","refresh_token_expires_in":3600,"base_uri":null}),
                ),
                (Some("refresh_token"), _, Some("SAXO-RT-1")) => Reply::json(
                    201,
                    serde_json::json!({"access_token":"SAXO-AT-2","token_type":"Bearer","expires_in":1200,
                        "refresh_token":"SAXO-RT-2","refresh_token_expires_in":3600}),
                ),
                _ => Reply::json(400, serde_json::json!({"error":"invalid_grant","error_description":"bad code"})),
            }
        }
        "/openapi/port/v1/balances/me" if seen.header("authorization") == Some("Bearer SAXO-AT-2") => {
            Reply::json(200, serde_json::json!({"CashBalance": 1000.0}))
                .header("X-RateLimit-Session-Limit", "120")
                .header("X-RateLimit-Session-Remaining", "119")
                .header("X-RateLimit-Session-Reset", "60")
        }
        _ => Reply::raw(401, ""),
    })
    .await;
    let mut settings = SaxoSettings::live("http://localhost/mytestapp");
    settings.auth_url = server.base.clone();
    let saxo = Saxo::new(settings, http()).expect("saxo");
    let creds = Credentials::new().with("app_key", "SAXO-APPKEY").with("app_secret", "SAXO-APPSECRET-9");

    // No code and no stored refresh token: a person must act, and nothing is sent.
    let e = saxo.login(NOW, login(&creds, None)).await.unwrap_err();
    assert_eq!(saxo.classify(&e), ErrorClass::NeedsHuman, "{}", e.message);
    assert!(server.seen().is_empty());

    // The operator's code as the second factor.
    let code = Secret::new("CODE-saxo-1");
    let grant = saxo.login(NOW, login(&creds, Some(&code))).await.expect("login");
    assert_eq!(grant.access_token.expose(), "SAXO-AT-1");
    assert_eq!(grant.issued_at, NOW);
    assert_eq!(grant.expires_at, Some(NOW.saturating_add(Duration::from_secs(1200))));
    assert_eq!(grant.refresh_expires_at, Some(NOW.saturating_add(Duration::from_secs(3600))));
    let token_call = server.request(0);
    assert_eq!(token_call.method, "POST");
    let basic = base64::engine::general_purpose::STANDARD.encode("SAXO-APPKEY:SAXO-APPSECRET-9");
    assert_eq!(token_call.header("authorization"), Some(format!("Basic {basic}").as_str()));
    assert_eq!(token_call.header("content-type"), Some("application/x-www-form-urlencoded"));
    let form = token_call.form();
    assert_eq!(field(&form, "redirect_uri"), Some("http://localhost/mytestapp"));
    assert_eq!(field(&form, "client_secret"), None, "basic auth keeps the secret out of the form");

    // A refused code needs a new one from a person.
    let used = Secret::new("CODE-used");
    let e = saxo.login(NOW, login(&creds, Some(&used))).await.unwrap_err();
    assert_eq!(saxo.classify(&e), ErrorClass::NeedsHuman, "{}", e.message);
    assert_eq!(e.status, Some(400));

    // Refresh.
    let later = NOW.saturating_add(Duration::from_secs(1170));
    let fresh = saxo.refresh(later, &grant).await.expect("refresh");
    assert_eq!(fresh.access_token.expose(), "SAXO-AT-2");
    assert_eq!(fresh.refresh_token.as_ref().map(Secret::expose), Some("SAXO-RT-2"));
    assert_eq!(fresh.issued_at, later);
    let form = server.request(2).form();
    assert_eq!(field(&form, "grant_type"), Some("refresh_token"));
    assert_eq!(field(&form, "refresh_token"), Some("SAXO-RT-1"));

    // An authorised call, and the allowance it reported.
    let url = format!("{}/openapi/port/v1/balances/me", server.base);
    let answer = saxo.send(later, &fresh, ApiRequest::get(url.clone())).await.expect("balances");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.allowance.tightest().and_then(|w| w.remaining), Some(119));
    let observed = saxo.http().allowances().latest("saxo", "port", Some(&fresh)).expect("filed under port");
    assert_eq!(observed.at, later);

    // The old token is refused: an expiry.
    let e = saxo.send(later, &grant, ApiRequest::get(url)).await.unwrap_err();
    assert_eq!((e.status, saxo.classify(&e)), (Some(401), ErrorClass::AuthExpired));
    ["SAXO-APPKEY", "SAXO-APPSECRET-9", "CODE-saxo-1", "SAXO-AT-1", "SAXO-AT-2", "SAXO-RT-1", "SAXO-RT-2"]
        .map(String::from)
        .to_vec()
}

// ---------------------------------------------------------------------------------------------------
// IBKR

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ibkr").join(name)
}

/// The server side of IBKR's OAuth: checks the RSA signature of the live-session-token request,
/// answers the Diffie-Hellman challenge, and checks the HMAC signature of every later request.
pub struct IbkrServer {
    pub lst: Option<Secret>,
    pub tickles: u32,
    /// Another session holds the account: `ssodh/init` authenticates only with `compete: true`.
    pub held_elsewhere: bool,
}

pub const IBKR_PREPEND: &str = "5f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
pub const IBKR_ACCESS_TOKEN: &str = "IBKR-ACCESS-TOKEN-1";
/// The brokerage session's `session` value (the WebSocket cookie) the script's `/tickle` answers.
pub const IBKR_WS_SESSION: &str = "ibkr-ws-session-7f3a";

pub fn ibkr_script(state: Arc<Mutex<IbkrServer>>) -> impl Fn(&Seen) -> Reply + Send + Sync {
    let signature_pem = std::fs::read_to_string(fixture("private_signature.pem")).unwrap();
    let public = oauth::parse_private_key(&signature_pem, "signature_key").unwrap().to_public_key();
    let dh = oauth::DhParams::from_pem(&std::fs::read_to_string(fixture("dhparam.pem")).unwrap()).unwrap();
    move |seen: &Seen| {
        let header = seen.header("authorization").unwrap_or_default();
        let params = oauth_header_params(header);
        let value = |k: &str| field(&params, k).map(str::to_owned).unwrap_or_default();
        let url = format!("http://{}{}", seen.header("host").unwrap_or_default(), seen.path);
        let mut signed: std::collections::BTreeMap<String, String> = params
            .iter()
            .filter(|(k, _)| k != "realm" && k != "oauth_signature")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in parse_pairs(seen.query.as_deref().unwrap_or_default()) {
            signed.insert(k, v);
        }
        if value("realm") != "test_realm"
            || value("oauth_consumer_key") != "TESTCONS"
            || value("oauth_token") != IBKR_ACCESS_TOKEN
        {
            return Reply::json(401, serde_json::json!({"error":"no session"}));
        }
        let mut state = state.lock().unwrap();
        if seen.path.ends_with("/oauth/live_session_token") {
            let base = oauth::base_string("POST", &url, &signed, Some(&Secret::new(IBKR_PREPEND)));
            let signature = base64::engine::general_purpose::STANDARD.decode(percent_decode(&value("oauth_signature")));
            let valid = value("oauth_signature_method") == "RSA-SHA256"
                && signature.is_ok_and(|s| public.pkcs1v15_verify::<rsa::sha2::Sha256>(base.as_bytes(), &s).is_ok());
            if !valid {
                return Reply::json(401, serde_json::json!({"error":"invalid signature"}));
            }
            let challenge = oauth::parse_hex(&value("diffie_hellman_challenge"), "challenge").unwrap();
            let b = oauth::parse_hex("77c0ffee77c0ffee77c0ffee77c0ffee", "b").unwrap();
            let response = oauth::dh_challenge(&dh, &b);
            let shared = oauth::dh_shared_secret(&dh, &challenge, &b);
            let lst = oauth::live_session_token(&shared, &Secret::new(IBKR_PREPEND)).unwrap();
            let key = base64::engine::general_purpose::STANDARD.decode(lst.expose()).unwrap();
            let mut mac = <hmac::Hmac<sha1::Sha1> as hmac::KeyInit>::new_from_slice(&key).unwrap();
            hmac::Mac::update(&mut mac, b"TESTCONS");
            let lst_signature = hex::encode(hmac::Mac::finalize(mac).into_bytes());
            state.lst = Some(lst);
            return Reply::json(
                200,
                serde_json::json!({"diffie_hellman_response": response.to_str_radix(16),
                    "live_session_token_signature": lst_signature,
                    "live_session_token_expiration": NOW.as_millis() + 86_400_000}),
            );
        }
        let Some(lst) = state.lst.clone() else { return Reply::json(401, serde_json::json!({"error":"no session"})) };
        let base = oauth::base_string(&seen.method, &url, &signed, None);
        let expected = oauth::hmac_sha256_signature(&lst, &base).unwrap();
        if value("oauth_signature_method") != "HMAC-SHA256" || value("oauth_signature") != expected {
            return Reply::json(401, serde_json::json!({"error":"no session"}));
        }
        match seen.path.trim_start_matches("/v1/api") {
            "/iserver/auth/ssodh/init" => {
                let takes_over = seen.json()["compete"] == true;
                let authenticated = !state.held_elsewhere || takes_over;
                Reply::json(
                    200,
                    serde_json::json!({"authenticated":authenticated,"competing":!authenticated,"connected":true,"message":""}),
                )
            }
            "/tickle" => {
                state.tickles += 1;
                // The first is the login's (it reads `session`), then the keep-alives'.
                let (authenticated, competing) = match state.tickles {
                    1 | 2 => (true, false),
                    3 => (false, false),
                    _ => (true, true),
                };
                Reply::json(
                    200,
                    serde_json::json!({"session":IBKR_WS_SESSION,"ssoExpires":445000,"collission":false,
                        "iserver":{"authStatus":{"authenticated":authenticated,"competing":competing,"connected":true}}}),
                )
            }
            "/iserver/marketdata/snapshot" => Reply::json(200, serde_json::json!([{"conid":265598,"31":"190.5"}])),
            "/logout" => Reply::json(200, serde_json::json!({"status":true})),
            _ => Reply::json(404, serde_json::json!({"error":"not found"})),
        }
    }
}

pub async fn ibkr_cycle() -> Vec<String> {
    let state = Arc::new(Mutex::new(IbkrServer { lst: None, tickles: 0, held_elsewhere: false }));
    let server = MockServer::start(ibkr_script(state.clone())).await;
    let settings = IbkrSettings {
        base_url: format!("{}/v1/api", server.base),
        realm: "test_realm".into(),
        ..IbkrSettings::default()
    };
    let broker = Ibkr::new(settings, http(), Arc::new(|| NOW)).expect("ibkr");
    let secret_b64 = std::fs::read_to_string(fixture("access_token_secret.b64")).unwrap();
    let creds = ibkr_credentials();

    let grant = broker.login(NOW, login(&creds, None)).await.expect("login");
    let lst = state.lock().unwrap().lst.clone().expect("the server made a token");
    assert_eq!(grant.access_token, lst, "both sides computed the same live session token");
    assert_eq!(grant.expires_at, Some(UnixMs::from_millis(NOW.as_millis() + 86_400_000)));
    let init = server.request(1);
    assert_eq!(init.path, "/v1/api/iserver/auth/ssodh/init");
    assert_eq!(init.json(), serde_json::json!({"publish":true,"compete":false}));
    // The login's tickle: its `session` (the WebSocket's `api` cookie) is kept in the grant, as a secret.
    assert_eq!((server.request(2).method.as_str(), server.request(2).path.as_str()), ("POST", "/v1/api/tickle"));
    assert_eq!(grant.extras.get("session").map(Secret::expose), Some(IBKR_WS_SESSION));
    assert!(!format!("{grant:?}").contains(IBKR_WS_SESSION), "the cookie stays out of Debug");

    assert_eq!(broker.keepalive(NOW, &grant).await.expect("tickle"), KeepaliveStatus::Alive);
    assert_eq!(broker.keepalive(NOW, &grant).await.expect("tickle"), KeepaliveStatus::Unauthenticated);
    assert_eq!(broker.keepalive(NOW, &grant).await.expect("tickle"), KeepaliveStatus::Competing);
    assert_eq!(server.request(3).path, "/v1/api/tickle");
    assert_eq!(server.request(3).method, "POST");

    // A signed request with a query string (the server checks the signature over it).
    let url = format!("{}/v1/api/iserver/marketdata/snapshot?conids=265598,8314&fields=31", server.base);
    let answer = broker.send(NOW, &grant, ApiRequest::get(url.clone())).await.expect("snapshot");
    assert_eq!(answer.status, 200);

    // A token the server does not know: an expiry, and the message holds no token.
    let mut stale = grant.clone();
    stale.access_token = Secret::new("c3RhbGUtbHN0LXZhbHVlLTE=");
    let e = broker.send(NOW, &stale, ApiRequest::get(url)).await.unwrap_err();
    assert_eq!((e.status, broker.classify(&e)), (Some(401), ErrorClass::AuthExpired));

    broker.logout(NOW, &grant).await.expect("logout");
    assert_eq!(server.seen().last().map(|s| s.path.clone()), Some("/v1/api/logout".into()));

    let pem_line = |name: &str| std::fs::read_to_string(fixture(name)).unwrap().lines().nth(1).unwrap().to_owned();
    vec![
        lst.expose().to_owned(),
        IBKR_ACCESS_TOKEN.to_owned(),
        secret_b64.trim().to_owned(),
        IBKR_PREPEND.to_owned(),
        pem_line("private_signature.pem"),
        pem_line("private_encryption.pem"),
        "c3RhbGUtbHN0LXZhbHVlLTE=".to_owned(),
        IBKR_WS_SESSION.to_owned(),
    ]
}

pub fn ibkr_credentials() -> Credentials {
    let secret_b64 = std::fs::read_to_string(fixture("access_token_secret.b64")).unwrap();
    ibkr::credentials_from_files(
        "TESTCONS",
        IBKR_ACCESS_TOKEN,
        secret_b64.trim(),
        &fixture("private_signature.pem"),
        &fixture("private_encryption.pem"),
        &fixture("dhparam.pem"),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------------
// Kotak Neo

pub const KOTAK_TOTP_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

pub fn kotak_trade_token() -> String {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!(r#"{{"sub":"AB123","exp":{}}}"#, NOW.as_millis() / 1000 + 7200));
    format!("eyJhbGciOiJIUzI1NiJ9.{payload}.KOTAK-TRADE-SIGNATURE")
}

pub async fn kotak_cycle() -> Vec<String> {
    let expected_totp = totp::totp(&totp::base32_decode(KOTAK_TOTP_SECRET).unwrap(), NOW, 30, 6);
    let trade_token = kotak_trade_token();
    let base = Arc::new(Mutex::new(String::new()));
    let script_base = base.clone();
    let script_token = trade_token.clone();
    let server = MockServer::start(move |seen: &Seen| match seen.path.as_str() {
        "/login/1.0/tradeApiLogin" => {
            let body = seen.json();
            let ok = seen.header("authorization") == Some("KOTAK-CONSUMER-KEY-1")
                && seen.header("neo-fin-key") == Some("neotradeapi")
                && body["totp"] == expected_totp.as_str()
                && body["mobileNumber"] == "+919999999999"
                && body["ucc"] == "AB123";
            if ok {
                Reply::json(
                    201,
                    serde_json::json!({"data":{"token":"KOTAK-VIEW-TOKEN","sid":"KOTAK-VIEW-SID","rid":"r"}}),
                )
            } else {
                Reply::json(401, serde_json::json!({"code":"900901","message":"Invalid Credentials"}))
            }
        }
        "/login/1.0/tradeApiValidate" => {
            let ok = seen.header("sid") == Some("KOTAK-VIEW-SID")
                && seen.header("auth") == Some("KOTAK-VIEW-TOKEN")
                && seen.json()["mpin"] == "654321";
            if ok {
                let base_url = format!("{}/", script_base.lock().unwrap());
                Reply::json(
                    201,
                    serde_json::json!({"data":{"token":script_token,"sid":"KOTAK-TRADE-SID","baseUrl":base_url,
                            "hsServerId":"server7","dataCenter":"E21"}}),
                )
            } else {
                Reply::json(401, serde_json::json!({"code":"900901","message":"Invalid Credentials"}))
            }
        }
        "/quick/user/limits"
            if seen.header("auth") == Some(script_token.as_str())
                && seen.header("sid") == Some("KOTAK-TRADE-SID")
                && seen.query.as_deref() == Some("sId=server7") =>
        {
            Reply::json(200, serde_json::json!({"stat":"Ok","stCode":200,"Net":"1000"}))
        }
        "/quick/user/positions" => {
            Reply::json(200, serde_json::json!({"stCode":100022,"errMsg":"invalid session token"}))
        }
        _ => Reply::json(403, serde_json::json!({"message":"Invalid session, please re-login to continue"})),
    })
    .await;
    *base.lock().unwrap() = server.base.clone();
    let settings = KotakSettings { login_url: server.base.clone(), ..KotakSettings::default() };
    let kotak = KotakNeo::new(settings, http()).expect("kotak");
    let creds = Credentials::new()
        .with("consumer_key", "KOTAK-CONSUMER-KEY-1")
        .with("mobile_number", "+919999999999")
        .with("ucc", "AB123")
        .with("mpin", "654321")
        .with("totp_secret", KOTAK_TOTP_SECRET);

    let grant = kotak.login(NOW, login(&creds, None)).await.expect("login");
    assert_eq!(grant.access_token.expose(), trade_token);
    assert_eq!(grant.expires_at, Some(UnixMs::from_millis((NOW.as_millis() / 1000 + 7200) * 1000)), "from the JWT");
    assert_eq!(server.seen().len(), 2);

    let url = KotakNeo::api_url(&grant, "quick/user/limits").unwrap();
    let answer = kotak.send(NOW, &grant, ApiRequest::get(url)).await.expect("limits");
    assert_eq!(answer.json().unwrap()["Net"], "1000");
    // One endpoint says the session is dead inside an HTTP 200 while another works.
    let url = KotakNeo::api_url(&grant, "quick/user/positions").unwrap();
    let e = kotak.send(NOW, &grant, ApiRequest::get(url)).await.unwrap_err();
    assert_eq!((e.status, e.code.as_deref(), kotak.classify(&e)), (Some(200), Some("100022"), ErrorClass::AuthExpired));
    let url = KotakNeo::api_url(&grant, "quick/user/holdings").unwrap();
    let e = kotak.send(NOW, &grant, ApiRequest::get(url)).await.unwrap_err();
    assert_eq!((e.status, kotak.classify(&e)), (Some(403), ErrorClass::AuthExpired));

    // A wrong MPIN: the gateway's 900901.
    let wrong = creds.clone().with("mpin", "000000");
    let e = kotak.login(NOW, login(&wrong, None)).await.unwrap_err();
    assert_eq!((e.code.as_deref(), kotak.classify(&e)), (Some("900901"), ErrorClass::AuthExpired));
    // No TOTP secret and no operator TOTP: a person must act.
    let no_totp =
        Credentials::new().with("consumer_key", "K").with("mobile_number", "+91").with("ucc", "U").with("mpin", "1");
    let e = kotak.login(NOW, login(&no_totp, None)).await.unwrap_err();
    assert_eq!(kotak.classify(&e), ErrorClass::NeedsHuman);
    kotak.logout(NOW, &grant).await.expect("local logout");
    vec![
        "KOTAK-CONSUMER-KEY-1".into(),
        KOTAK_TOTP_SECRET.into(),
        "KOTAK-VIEW-TOKEN".into(),
        "KOTAK-VIEW-SID".into(),
        trade_token,
        "KOTAK-TRADE-SID".into(),
        "654321".into(),
    ]
}

// ---------------------------------------------------------------------------------------------------
// Kite

pub async fn kite_cycle() -> Vec<String> {
    let server = MockServer::start(|seen: &Seen| {
        if seen.header("x-kite-version") != Some("3") {
            return Reply::json(400, serde_json::json!({"status":"error","error_type":"InputException","message":"version"}));
        }
        match (seen.method.as_str(), seen.path.as_str()) {
            ("POST", "/session/token") => {
                let form = seen.form();
                let expected = kite::checksum("kiteapikey1", "KITE-REQUEST-TOKEN-1", "KITE-API-SECRET-1");
                if field(&form, "request_token") == Some("KITE-REQUEST-TOKEN-1")
                    && field(&form, "checksum") == Some(expected.as_str())
                    && field(&form, "api_key") == Some("kiteapikey1")
                {
                    Reply::json(
                        200,
                        serde_json::json!({"status":"success","data":{"access_token":"KITE-ACCESS-TOKEN-1",
                            "user_id":"AB1234","login_time":"2026-03-09 15:30:00"}}),
                    )
                } else {
                    Reply::json(
                        403,
                        serde_json::json!({"status":"error","error_type":"TokenException","message":"Token is invalid or has expired."}),
                    )
                }
            }
            (_, "/user/profile") if seen.header("authorization") == Some("token kiteapikey1:KITE-ACCESS-TOKEN-1") => {
                Reply::json(200, serde_json::json!({"status":"success","data":{"user_id":"AB1234"}}))
            }
            ("DELETE", "/session/token") => Reply::json(200, serde_json::json!({"status":"success","data":true})),
            // A debugging endpoint that echoes the authorisation back.
            (_, "/echo") => {
                let auth = seen.header("authorization").unwrap_or_default().to_owned();
                Reply::json(200, serde_json::json!({"authorization": auth})).header("x-echo", &auth)
            }
            _ => Reply::json(
                403,
                serde_json::json!({"status":"error","error_type":"TokenException","message":"Incorrect `api_key` or `access_token`."}),
            ),
        }
    })
    .await;
    let kite = Kite::new(KiteSettings { base_url: server.base.clone() }, http()).expect("kite");
    let creds = Credentials::new().with("api_key", "kiteapikey1").with("api_secret", "KITE-API-SECRET-1");

    let e = kite.login(NOW, login(&creds, None)).await.unwrap_err();
    assert_eq!(kite.classify(&e), ErrorClass::NeedsHuman, "no request token: the operator's turn");
    let request_token = Secret::new("KITE-REQUEST-TOKEN-1");
    let grant = kite.login(NOW, login(&creds, Some(&request_token))).await.expect("login");
    assert_eq!(grant.access_token.expose(), "KITE-ACCESS-TOKEN-1");
    assert_eq!(grant.expires_at, Some(kite::next_expiry(NOW)));
    let used = Secret::new("KITE-USED-TOKEN");
    let e = kite.login(NOW, login(&creds, Some(&used))).await.unwrap_err();
    assert_eq!((e.status, kite.classify(&e)), (Some(403), ErrorClass::NeedsHuman), "{}", e.message);

    let answer = kite.send(NOW, &grant, ApiRequest::get(kite.api_url("user/profile"))).await.expect("profile");
    assert_eq!(answer.json().unwrap()["data"]["user_id"], "AB1234");
    let mut dead = grant.clone();
    dead.access_token = Secret::new("KITE-DEAD-TOKEN");
    let e = kite.send(NOW, &dead, ApiRequest::get(kite.api_url("user/profile"))).await.unwrap_err();
    assert_eq!(
        (e.status, e.code.as_deref(), kite.classify(&e)),
        (Some(403), Some("TokenException"), ErrorClass::AuthExpired)
    );
    // Raw mode (a transparent proxy): the answer whatever its status, with the adapter's reading of it.
    let raw = BrokerApi::send_raw(&kite, NOW, &dead, ApiRequest::get(kite.api_url("user/profile"))).await.unwrap();
    assert_eq!(raw.response.status, 403);
    assert!(String::from_utf8_lossy(&raw.response.body).contains("TokenException"));
    assert_eq!(raw.error.as_ref().map(|e| kite.classify(e)), Some(ErrorClass::AuthExpired));
    let raw = kite.send_raw(NOW, &grant, ApiRequest::get(kite.api_url("user/profile"))).await.unwrap();
    assert_eq!((raw.response.status, raw.error.is_none()), (200, true));
    let echoed = kite.send_raw(NOW, &grant, ApiRequest::get(kite.api_url("echo"))).await.unwrap();
    let body = String::from_utf8_lossy(&echoed.response.body).into_owned();
    let header = echoed.response.headers.get("x-echo").and_then(|v| v.to_str().ok()).unwrap_or_default();
    // The access token and the API key (a grant extra) are both scrubbed.
    assert!(body.contains("\"token ***:***\"") && header == "token ***:***", "{body} / {header}");
    kite.logout(NOW, &grant).await.expect("logout");
    let last = server.seen().last().cloned().unwrap();
    assert_eq!((last.method.as_str(), last.path.as_str()), ("DELETE", "/session/token"));
    vec![
        "KITE-API-SECRET-1".into(),
        "KITE-REQUEST-TOKEN-1".into(),
        "KITE-ACCESS-TOKEN-1".into(),
        "KITE-USED-TOKEN".into(),
        "KITE-DEAD-TOKEN".into(),
    ]
}

// ---------------------------------------------------------------------------------------------------
// OAuth 2.0 client credentials

pub async fn oauth2_cycle() -> Vec<String> {
    let server = MockServer::start(|seen: &Seen| match seen.path.as_str() {
        "/oauth2/token" => {
            let basic = base64::engine::general_purpose::STANDARD.encode("oauth-client-1:OAUTH-CLIENT-SECRET-1");
            let form = seen.form();
            if seen.header("authorization") == Some(format!("Basic {basic}").as_str())
                && field(&form, "grant_type") == Some("client_credentials")
                && field(&form, "scope") == Some("orders")
            {
                Reply::json(
                    200,
                    serde_json::json!({"access_token":"OAUTH-AT-1","token_type":"Bearer","expires_in":"3600"}),
                )
            } else {
                Reply::json(401, serde_json::json!({"error":"invalid_client","error_description":"unknown client"}))
            }
        }
        "/api/v1/things" if seen.header("authorization") == Some("Bearer OAUTH-AT-1") => {
            Reply::json(200, serde_json::json!({"things":[]}))
        }
        "/api/v1/busy" => Reply::json(429, serde_json::json!({"error":"slow_down"})).header("Retry-After", "7"),
        _ => Reply::raw(401, "").header("WWW-Authenticate", r#"Bearer error="invalid_token""#),
    })
    .await;
    let host = server.base.trim_start_matches("http://").to_owned();
    let settings = OAuth2Settings {
        token_url: format!("{}/oauth2/token", server.base),
        scope: Some("orders".into()),
        client_auth: ClientAuth::Basic,
        api_hosts: vec![host],
        token_lifetime: None,
    };
    let broker = OAuth2ClientCredentials::new(settings, http()).expect("oauth2");
    let creds = Credentials::new().with("client_id", "oauth-client-1").with("client_secret", "OAUTH-CLIENT-SECRET-1");
    let grant = broker.login(NOW, login(&creds, None)).await.expect("login");
    assert_eq!(grant.expires_at, Some(NOW.saturating_add(Duration::from_secs(3600))));
    let answer = broker.send(NOW, &grant, ApiRequest::get(format!("{}/api/v1/things", server.base))).await.unwrap();
    assert_eq!(answer.status, 200);
    let e = broker.send(NOW, &grant, ApiRequest::get(format!("{}/api/v1/busy", server.base))).await.unwrap_err();
    assert_eq!(broker.classify(&e), ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(7)) });
    let mut dead = grant.clone();
    dead.access_token = Secret::new("OAUTH-DEAD-1");
    let e = broker.send(NOW, &dead, ApiRequest::get(format!("{}/api/v1/things", server.base))).await.unwrap_err();
    assert_eq!((e.code.as_deref(), broker.classify(&e)), (Some("invalid_token"), ErrorClass::AuthExpired));
    let e = broker.send(NOW, &grant, ApiRequest::get("https://elsewhere.example/api")).await.unwrap_err();
    assert_eq!(e.delivery, Delivery::NotSent, "the token never goes to an unlisted host");
    let wrong = creds.clone().with("client_secret", "OAUTH-WRONG-SECRET");
    let e = broker.login(NOW, login(&wrong, None)).await.unwrap_err();
    assert_eq!(
        (e.status, broker.classify(&e)),
        (Some(401), ErrorClass::Permanent),
        "bad credentials are not an expiry"
    );
    vec!["OAUTH-CLIENT-SECRET-1".into(), "OAUTH-AT-1".into(), "OAUTH-DEAD-1".into(), "OAUTH-WRONG-SECRET".into()]
}

// ---------------------------------------------------------------------------------------------------
// Size limits and transport failures

pub const LIMIT: usize = 10 * 1024 * 1024;

pub fn bearer_broker(base: &str) -> OAuth2ClientCredentials {
    let settings = OAuth2Settings { token_url: format!("{base}/token"), ..OAuth2Settings::default() };
    OAuth2ClientCredentials::new(settings, http()).unwrap()
}
