//! The status API, the operator's commands, `/readyz`, the browser sign-in with its cookie and CSRF
//! token, the login callback, the page.

mod common;

use std::time::Duration;

use common::{Answer, SessionSetup, Upstream, eventually, serve};
use warden_actors::testing::Reply;
use warden_engine::{Rate, StateKind};
use warden_serve::ServeConfig;
use warden_serve::view::fingerprint;

fn json_reply(status: u16, body: &str) -> Answer {
    Answer::Reply(status, vec![("content-type".into(), "application/json".into())], body.as_bytes().to_vec())
}

async fn upstream_rejecting_the_first_token() -> Upstream {
    Upstream::start(|seen| {
        if seen.header("authorization") == Some("Bearer s1-tok-1") {
            json_reply(401, "{\"error\":\"invalid_token\"}")
        } else {
            json_reply(200, "{\"ok\":true}")
        }
    })
    .await
}

#[tokio::test]
async fn the_status_shows_state_token_failures_logins_and_lifetimes() {
    let upstream = upstream_rejecting_the_first_token().await;
    let mut s1 = SessionSetup::new("s1");
    s1.policy.login_rate = Some(Rate::new(10, Duration::from_secs(300)));
    let failing = SessionSetup::new("f1");
    let failing_broker = failing.broker.clone();
    let failing = SessionSetup {
        broker: std::sync::Arc::new(
            warden_actors::testing::ScriptedBroker::new("f1").login_fallback(Reply::error(503, "down for maintenance")),
        ),
        ..failing
    };
    drop(failing_broker);
    let served = serve(&upstream, vec![s1, failing], ServeConfig::default()).await;
    assert_eq!(served.get("/proxy/s1/quotes").send().await.unwrap().status(), 200);
    let f1 = served.handles[1].clone();
    assert!(eventually(250, || f1.status().last_failure.is_some()).await, "the failing login is seen");
    let app = served.service.app().clone();
    let counted = || !app.metrics.counters(f1.id()).failures().is_empty();
    assert!(eventually(250, counted).await, "the event pump counted the failure");

    let all = served.json("/v1/sessions").await;
    let text = all.to_string();
    assert!(!text.contains("s1-tok-") && !text.contains("PASSWORD"), "no token or credential: {text}");
    let s1 = &all["sessions"][1];
    assert_eq!((s1["id"].as_str(), s1["state"].as_str()), (Some("s1"), Some("Valid")), "{s1}");
    assert_eq!(s1["generation"], 2);
    assert_eq!(s1["usable"], true);
    assert_eq!(s1["ready"]["ready"], true);
    assert_eq!(s1["token"]["fingerprint"], fingerprint("s1-tok-2"));
    let expires_in = s1["token"]["expires_in_ms"].as_u64().unwrap();
    assert!((3_500_000..=3_600_000).contains(&expires_in), "{expires_in}");
    assert_eq!(s1["logins"]["in_window"], 2);
    assert_eq!(s1["logins"]["max"], 10);
    assert_eq!(s1["logins"]["window_ms"], 300_000);
    assert_eq!(s1["lifetimes"]["issued"]["count"], 2);
    assert_eq!(s1["lifetimes"]["issued"]["p50_ms"], 3_600_000);
    assert_eq!(s1["lifetimes"]["lived"]["count"], 1, "generation 1 lived from its issue to its rejection");
    assert_eq!(s1["stats"]["logins"], 2);
    assert_eq!(s1["stats"]["rejections_reported"], 1);

    let f1 = served.json("/v1/sessions/f1").await;
    assert_ne!(f1["state"], "Valid");
    assert_eq!(f1["last_failure"]["call"], "login");
    assert_eq!(f1["last_failure"]["class"], "transient");
    assert!(f1["last_failure"]["text"].as_str().unwrap().contains("down for maintenance"), "{f1}");
    assert!(f1["waiting_for"]["text"].as_str().is_some(), "what it waits for: {f1:#}");
    assert!(f1["failures"]["login:transient"].as_u64().unwrap() >= 1, "{f1}");
    assert_eq!(f1["ready"]["ready"], false);

    let ready = served.get("/readyz").send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: serde_json::Value = serde_json::from_slice(&ready.bytes().await.unwrap()).unwrap();
    assert_eq!(ready["not_ready"].as_array().unwrap().len(), 1);
    assert_eq!(ready["not_ready"][0]["session"], "f1");
    assert!(ready["not_ready"][0]["because"].as_str().unwrap().contains("down for maintenance"), "{ready}");
    let health = served.client.get(served.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "/healthz needs no token");

    let history = served.json("/v1/sessions/s1/history?since=0").await;
    let kinds: Vec<&str> = history["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"state_changed") && kinds.contains(&"grant_installed") && kinds.contains(&"revoked"),
        "{kinds:?}"
    );
    let later = served.json("/v1/sessions/s1/history?since=2100-01-01T00:00:00Z").await;
    assert_eq!(later["events"].as_array().unwrap().len(), 0);
    assert_eq!(served.get("/v1/sessions/s1/history?since=yesterday").send().await.unwrap().status(), 400);
    assert_eq!(served.get("/v1/sessions/nobody").send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn commands_reach_the_session() {
    let upstream = Upstream::start(|_| json_reply(200, "{}")).await;
    let served = serve(&upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;
    let handle = served.handles[0].clone();
    assert!(eventually(250, || handle.status().state == StateKind::Valid).await);
    assert_eq!(served.get("/readyz").send().await.unwrap().status(), 200);

    let reset = served.post("/v1/sessions/s1/reset").send().await.unwrap();
    assert_eq!(reset.status(), 202);
    let broker = served.brokers[0].clone();
    assert!(eventually(250, || broker.logins() == 2).await, "a reset logs in again");

    let response =
        served.post("/v1/sessions/s1/second-factor").json_body("{\"code\":\"CODE-4711\"}").send().await.unwrap();
    assert_eq!(response.status(), 202);
    let response =
        served.post("/v1/sessions/s1/request-token").json_body("{\"request_token\":\"RT-4711\"}").send().await.unwrap();
    assert_eq!(response.status(), 202);
    let response = served
        .post("/v1/sessions/s1/credentials")
        .json_body("{\"credentials\":{\"user\":\"trader\",\"password\":\"NEW-PASSWORD-4711\"}}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let response = served.post("/v1/sessions/s1/second-factor").json_body("{\"code\": 4711}").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(!text.contains("4711"), "a refused body is not echoed: {text}");

    let response = served.post("/v1/sessions/s1/logout").send().await.unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(handle.status().state, StateKind::Stopped);
    assert_eq!(broker.logouts(), 1);
    let ready = served.get("/readyz").send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: serde_json::Value = serde_json::from_slice(&ready.bytes().await.unwrap()).unwrap();
    assert_eq!(ready["not_ready"][0]["because"], "logged out");
    assert_eq!(served.post("/v1/sessions/nobody/reset").send().await.unwrap().status(), 404);
    assert_eq!(served.post("/v1/reload").send().await.unwrap().status(), 409, "no session source here");
}

/// `.json_body(text)`: a JSON body with its content type.
trait JsonBody {
    fn json_body(self, text: &str) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, text: &str) -> Self {
        self.header("content-type", "application/json").body(text.to_owned())
    }
}

#[tokio::test]
async fn the_browser_signs_in_once_and_its_changes_need_the_csrf_token() {
    let upstream = Upstream::start(|_| json_reply(200, "{}")).await;
    let served = serve(&upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;
    let client = &served.client;

    let page = client.get(served.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 401, "not signed in: the sign-in page, with a 401");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    assert!(page.text().await.unwrap().contains("id=\"signin-form\""));

    let signin = served.post("/v1/signin").send().await.unwrap();
    assert_eq!(signin.status(), 200);
    let cookie = signin.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains(common::TOKEN), "the cookie is not the token");
    let csrf = serde_json::from_slice::<serde_json::Value>(&signin.bytes().await.unwrap()).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();

    let browser =
        |method: reqwest::Method, path: &str| client.request(method, served.url(path)).header("cookie", &cookie);
    assert_eq!(browser(reqwest::Method::GET, "/").send().await.unwrap().status(), 200);
    assert_eq!(browser(reqwest::Method::GET, "/v1/sessions").send().await.unwrap().status(), 200);
    let whoami: serde_json::Value = serde_json::from_slice(
        &browser(reqwest::Method::GET, "/v1/whoami").send().await.unwrap().bytes().await.unwrap(),
    )
    .unwrap();
    assert_eq!((whoami["via"].as_str(), whoami["csrf"].as_str()), (Some("browser"), Some(csrf.as_str())));
    let refused = browser(reqwest::Method::POST, "/v1/sessions/s1/reset").send().await.unwrap();
    assert_eq!(refused.status(), 403, "a change by cookie without the CSRF token");
    let wrong = browser(reqwest::Method::POST, "/v1/sessions/s1/reset").header("x-csrf-token", "nope").send().await;
    assert_eq!(wrong.unwrap().status(), 403);
    let done = browser(reqwest::Method::POST, "/v1/sessions/s1/reset").header("x-csrf-token", &csrf).send().await;
    assert_eq!(done.unwrap().status(), 202);

    // The broker's login redirect lands on /callback/{session}; the page posts the code from there.
    assert_eq!(client.get(served.url("/callback/s1?code=abc")).send().await.unwrap().status(), 401);
    assert_eq!(browser(reqwest::Method::GET, "/callback/s1?code=abc").send().await.unwrap().status(), 200);
    let handed = browser(reqwest::Method::POST, "/callback/s1")
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body("{\"code\":\"SAXO-CODE-1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(handed.status(), 202);
    let empty = served.post("/callback/s1").header("content-type", "application/json").body("{}").send().await;
    assert_eq!(empty.unwrap().status(), 400);

    let out = browser(reqwest::Method::POST, "/v1/signout").header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(browser(reqwest::Method::GET, "/v1/sessions").send().await.unwrap().status(), 401, "signed out");
}
