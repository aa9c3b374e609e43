//! An algo engine embedding warden: two broker sessions, orders through `execute`, caches cleared on
//! events.
//!
//! `cargo run -p warden-actors --example embed`
//!
//! The brokers are scripted fakes and the clock is tokio's paused clock, so two simulated hours take a
//! moment. What to look at:
//! - strategies never handle tokens themselves: they call `execute`, which hands them a lease;
//! - a Kotak-style intraday rejection (`900901`) is reported with its generation, the session logs in
//!   again once, and the order runs again with the new token (the broker provably did not execute it);
//! - an order whose answer is lost is reported as `OutcomeUnknown`, not retried;
//! - the engine's feed cache is cleared whenever a grant is revoked or replaced.
//!
//! With `--kite-mock URL --request-token TOKEN` it runs instead in real time against a Kite mock broker
//! (`warden-sim mock-broker --broker zerodha`, demo account): warden's real `Kite` adapter logs in with
//! the request token, places a quote and an order through `execute`, and logs out (see
//! `docs/adapters.md`, "Mock brokers").

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{ExecuteError, SessionHandle, SessionSpec, Warden, WardenEventKind};
use warden_engine::{
    BrokerError, Capabilities, Credentials, EventKind, Idempotency, Policy, Preset, Secret, SessionId,
};

/// The order endpoint of a fake broker: remembers dead tokens and executed orders.
#[derive(Default)]
struct OrderDesk {
    dead_tokens: Mutex<HashSet<String>>,
    executed: Mutex<Vec<(String, u64)>>,
}

impl OrderDesk {
    fn place(&self, token: &str, order_id: u64, lose_answer: bool) -> Result<String, BrokerError> {
        if self.dead_tokens.lock().map(|d| d.contains(token)).unwrap_or(false) {
            return Err(BrokerError::http(401, "Invalid Credentials").with_code("900901"));
        }
        self.executed.lock().map(|mut e| e.push((token.to_owned(), order_id))).ok();
        if lose_answer {
            return Err(BrokerError::no_answer("connection reset after the order was sent"));
        }
        Ok(format!("order {order_id} accepted"))
    }
}

async fn place(session: &SessionHandle, desk: &OrderDesk, order_id: u64, lose_answer: bool) {
    let result = session
        .execute(Idempotency::NonIdempotent, |lease| {
            let outcome = desk.place(lease.token(), order_id, lose_answer);
            async move { outcome }
        })
        .await;
    match result {
        Ok(ack) => println!("  {}: {ack}", session.id()),
        Err(ExecuteError::OutcomeUnknown(error)) => {
            println!("  {}: order {order_id} outcome unknown ({error}); check its status, do not resend", session.id())
        }
        Err(error) => println!("  {}: order {order_id} failed: {error}", session.id()),
    }
}

/// The value after `flag` on the command line.
fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1).cloned())
}

/// warden with the real Kite adapter against a Kite mock broker, in real time.
fn kite_mock(base_url: String, request_token: String) {
    use warden_adapters::broker::{ApiRequest, HttpClient, HttpSettings, Kite, KiteSettings};
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let http = HttpClient::new(HttpSettings::default()).expect("http client");
        let kite = Arc::new(Kite::new(KiteSettings { base_url }, http).expect("a base URL"));
        let warden = Warden::builder().build().await.expect("warden");
        let clock = warden.clock();
        // The mock's demo account (warden-sim mock-broker prints it).
        let credentials = Credentials::new()
            .with("api_key", "mockkiteapikey")
            .with("api_secret", Secret::new("mock-kite-api-secret"))
            .with("request_token", Secret::new(request_token));
        let id = SessionId::new("kite-mock").expect("id");
        let session =
            warden.open(SessionSpec::new(id, kite.clone()).with_credentials(credentials)).await.expect("open");
        let quote = session
            .execute(Idempotency::Idempotent, |lease| {
                let request = ApiRequest::get(format!("{}?i=NSE:INFY", kite.api_url("quote")));
                let (kite, now) = (kite.clone(), clock.now());
                async move { kite.send(now, &lease.grant, request).await }
            })
            .await;
        match quote {
            Ok(answer) => println!("quote: {}", String::from_utf8_lossy(&answer.body)),
            Err(error) => println!("quote failed: {error}"),
        }
        let form = [
            ("exchange", "NSE"),
            ("tradingsymbol", "INFY"),
            ("transaction_type", "BUY"),
            ("quantity", "1"),
            ("product", "CNC"),
            ("order_type", "MARKET"),
            ("tag", "embed-1"),
        ];
        let form: Vec<(String, String)> = form.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let order = session
            .execute(Idempotency::NonIdempotent, |lease| {
                let request = ApiRequest::post(kite.api_url("orders/regular")).form(form.clone());
                let (kite, now) = (kite.clone(), clock.now());
                async move { kite.send(now, &lease.grant, request).await }
            })
            .await;
        match order {
            Ok(answer) => println!("order: {}", String::from_utf8_lossy(&answer.body)),
            Err(error) => println!("order failed: {error}"),
        }
        println!("status: {:?}", session.status().state);
        session.logout().await.expect("logout");
        tokio::time::sleep(Duration::from_millis(200)).await; // the logout call reaches the broker
        warden.shutdown(false).await;
    });
}

fn main() {
    if let Some(base_url) = arg("--kite-mock") {
        let Some(request_token) = arg("--request-token") else {
            eprintln!("--kite-mock needs --request-token (GET <mock>/connect/login?v=3&api_key=mockkiteapikey)");
            std::process::exit(2);
        };
        kite_mock(base_url, request_token);
        return;
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("runtime");
    runtime.block_on(async {
        let warden = Warden::builder().build().await.expect("warden");

        // The engine's caches derived from grants (feed tokens, symbol maps): cleared on events.
        let feed_cache: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let mut events = warden.events();
        let cache = feed_cache.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                match &event.kind {
                    WardenEventKind::Session(EventKind::Revoked { generation, reason }) => {
                        cache.lock().map(|mut c| c.remove(event.session.as_str())).ok();
                        println!("[event] {} revoked {generation} ({reason:?}): feed cache cleared", event.session);
                    }
                    WardenEventKind::Session(EventKind::GrantInstalled { generation, kind, .. }) => {
                        cache
                            .lock()
                            .map(|mut c| c.insert(event.session.to_string(), format!("feed-{generation}")))
                            .ok();
                        println!("[event] {} new grant {generation} by {kind:?}", event.session);
                    }
                    _ => {}
                }
            }
        });

        let saxo = Arc::new(
            ScriptedBroker::new("saxo")
                .with_capabilities(Capabilities { refresh: true, keepalive: false })
                .with_latency(Duration::from_millis(150))
                .login_fallback(Reply::grant_with_refresh(Duration::from_secs(20 * 60), Duration::from_secs(3600)))
                .refresh_fallback(Reply::grant_with_refresh(Duration::from_secs(20 * 60), Duration::from_secs(3600))),
        );
        let kotak = Arc::new(
            ScriptedBroker::new("kotak")
                .with_latency(Duration::from_millis(400))
                .login_fallback(Reply::grant(Duration::from_secs(3600))),
        );
        let mut saxo_policy = Policy::preset(Preset::Hybrid);
        saxo_policy.refresh_buffer = Some(Duration::from_secs(30));
        let credentials = Credentials::new().with("user", "algo").with("password", Secret::new("not-logged"));
        let saxo_session = warden
            .open(
                SessionSpec::new(SessionId::new("saxo-main").expect("id"), saxo.clone())
                    .with_policy(saxo_policy)
                    .with_credentials(credentials.clone()),
            )
            .await
            .expect("open saxo");
        let kotak_session = warden
            .open(
                SessionSpec::new(SessionId::new("kotak-main").expect("id"), kotak.clone())
                    .with_credentials(credentials),
            )
            .await
            .expect("open kotak");

        let desk = OrderDesk::default();
        println!("09:00 orders on both sessions");
        place(&saxo_session, &desk, 1, false).await;
        place(&kotak_session, &desk, 2, false).await;

        println!("11:42 Kotak invalidates the JWT intraday (900901)");
        tokio::time::sleep(Duration::from_secs(2 * 3600 + 42 * 60)).await;
        let current = kotak_session.token().await.expect("token").token().to_owned();
        desk.dead_tokens.lock().map(|mut d| d.insert(current)).ok();
        place(&kotak_session, &desk, 3, false).await;

        println!("11:43 an order whose answer is lost");
        place(&saxo_session, &desk, 4, true).await;

        let executed = desk.executed.lock().map(|e| e.len()).unwrap_or(0);
        println!(
            "summary: saxo logins {} refreshes {}; kotak logins {}; orders executed {executed} (4 placed, none twice)",
            saxo.logins(),
            saxo.refreshes(),
            kotak.logins()
        );
        println!("feed cache: {:?}", feed_cache.lock().map(|c| c.clone()).unwrap_or_default());
        warden.shutdown(true).await;
    });
}
