//! A session that needs a person says so: an `operator_needed` event and a webhook note; the person's
//! second factor, handed in through the API, brings it back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Answer, SessionSetup, Upstream, eventually, serve};
use warden_engine::{
    BoxFuture, Broker, BrokerError, Capabilities, ErrorClass, Grant, LoginRequest, Secret, StateKind, UnixMs,
};
use warden_serve::ServeConfig;

/// A broker whose login needs a one-time code from a person.
#[derive(Default)]
struct NeedsAPerson {
    logins: AtomicU64,
}

impl Broker for NeedsAPerson {
    fn name(&self) -> &str {
        "otp"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        self.logins.fetch_add(1, Ordering::SeqCst);
        let code = request.second_factor.map(|c| c.expose().to_owned());
        Box::pin(async move {
            match code.as_deref() {
                Some("246810") => {
                    Ok(Grant::new(Secret::new("OTP-ACCESS-TOKEN-1"), now)
                        .expires_in(std::time::Duration::from_secs(3600)))
                }
                _ => {
                    Err(BrokerError::http(400, "enter the code from the authenticator app").with_code("needs_operator"))
                }
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

#[tokio::test]
async fn a_session_that_needs_a_person_says_so_and_comes_back_with_the_code() {
    let hook = Upstream::start(|_| Answer::json(200, serde_json::json!({}))).await;
    let api_upstream = Upstream::start(|_| Answer::json(200, serde_json::json!({}))).await;
    let broker = Arc::new(NeedsAPerson::default());
    let mut setup = SessionSetup::new("otp1");
    setup.api = Some(Arc::new(warden_adapters::broker::PlainApi::new(
        broker.clone(),
        api_upstream.base.clone(),
        common::http(),
    )));
    let config =
        ServeConfig { webhook: Some(format!("http://{}/hook?key=HOOK-SECRET", hook.addr)), ..Default::default() };
    setup.custom_broker = Some(broker.clone());
    let served = serve(&api_upstream, vec![setup], config).await;
    let handle = served.handles[0].clone();
    assert!(eventually(250, || handle.status().state == StateKind::Invalid).await, "{:?}", handle.status());
    assert!(eventually(250, || !hook.seen().is_empty()).await, "the webhook was told");

    let note: serde_json::Value = serde_json::from_slice(&hook.seen()[0].body).unwrap();
    assert_eq!(note["kind"], "operator_needed");
    assert_eq!(note["session"], "otp1");
    assert_eq!(note["reason"], "needs_human");
    assert!(note["action"].as_str().unwrap().contains("/v1/sessions/otp1/second-factor"), "{note}");
    assert!(note["text"].as_str().unwrap().contains("authenticator"), "{note}");
    let kept = served.service.app().events.kept();
    let event = kept.iter().find(|e| e.kind == "operator_needed").expect("an operator_needed event");
    assert_eq!(note["event_id"].as_u64(), Some(event.id));
    let view = served.json("/v1/sessions/otp1").await;
    assert_eq!(view["invalid_reason"]["kind"], "needs_human");
    assert_eq!(view["invalid_reason"]["operator_action"], true);

    let response = served
        .post("/v1/sessions/otp1/second-factor")
        .header("content-type", "application/json")
        .body("{\"code\":\"246810\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(eventually(250, || handle.status().state == StateKind::Valid).await, "{:?}", handle.status());
    assert_eq!(served.get("/proxy/otp1/positions").send().await.unwrap().status(), 200);
    assert_eq!(api_upstream.seen()[0].header("authorization"), Some("Bearer OTP-ACCESS-TOKEN-1"));
    assert_eq!(hook.seen().len(), 1, "one note");
}
