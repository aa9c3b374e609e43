//! Reloads from a `SessionSource` (sessions added, changed, removed) and the shutdown: calls in flight
//! drain, new connections are refused, the store is flushed, nothing is logged out, sessions resume.

mod common;

use std::sync::{Arc, Mutex};

use common::{Answer, SessionSetup, Upstream, eventually, http, policy, serve_on};
use warden_actors::testing::ScriptedBroker;
use warden_actors::{SessionSpec, Warden};
use warden_adapters::broker::PlainApi;
use warden_engine::{BoxFuture, Credentials, SessionId, StateKind};
use warden_serve::{ServeConfig, SessionEntry, SessionSource, SourceError};

/// A source over a list the test edits (or makes fail).
struct ListSource {
    entries: Mutex<Result<Vec<SessionEntry>, String>>,
}

impl SessionSource for ListSource {
    fn describe(&self) -> String {
        "the test's list".into()
    }

    fn load(&self) -> BoxFuture<'_, Result<Vec<SessionEntry>, SourceError>> {
        let entries = self.entries.lock().unwrap().clone();
        Box::pin(async move { entries.map_err(|detail| SourceError { origin: "the test's list".into(), detail }) })
    }
}

fn entry(upstream: &Upstream, id: &str, revision: &str) -> SessionEntry {
    let broker = Arc::new(ScriptedBroker::new(id));
    let spec = SessionSpec::new(SessionId::new(id).unwrap(), broker.clone())
        .with_credentials(Credentials::new().with("password", "pw"))
        .with_policy(policy());
    SessionEntry {
        spec,
        api: Arc::new(PlainApi::new(broker, upstream.base.clone(), http())),
        base_url: None,
        login_url: Some(format!("https://broker.example/login?app={id}")),
        revision: revision.into(),
        stream: None,
    }
}

#[tokio::test]
async fn a_reload_opens_reopens_and_closes_sessions() {
    let upstream = Upstream::start(|_| Answer::json(200, serde_json::json!({"ok": true}))).await;
    let source =
        Arc::new(ListSource { entries: Mutex::new(Ok(vec![entry(&upstream, "a", "1"), entry(&upstream, "b", "1")])) });
    let warden = Warden::builder().memory_store().build().await.unwrap();
    let service = warden_serve::Service::builder(
        warden.clone(),
        ServeConfig::default(),
        warden_engine::Secret::new(common::TOKEN),
    )
    .source(source.clone())
    .build()
    .await
    .unwrap();
    let ids = |service: &warden_serve::Service| -> Vec<String> {
        service.app().registry.all().iter().map(|s| s.id().to_string()).collect()
    };
    assert_eq!(ids(&service), ["a", "b"]);
    let a = warden.session(&SessionId::new("a").unwrap()).unwrap();
    assert!(eventually(250, || a.status().state == StateKind::Valid).await);

    *source.entries.lock().unwrap() =
        Ok(vec![entry(&upstream, "a", "2"), entry(&upstream, "c", "1"), entry(&upstream, "a", "3")]);
    let report = service.reload().await.unwrap();
    assert_eq!((report.added.as_slice(), report.changed.as_slice()), (&["c".to_owned()][..], &["a".to_owned()][..]));
    assert_eq!(report.removed, ["b"]);
    assert_eq!(report.failed.len(), 1, "a session listed twice is refused: {report:?}");
    assert_eq!(ids(&service), ["a", "c"]);
    assert!(warden.session(&SessionId::new("b").unwrap()).is_none(), "closed on the warden too");
    let kinds: Vec<&str> = service.app().events.kept().iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&"reload"), "{kinds:?}");

    *source.entries.lock().unwrap() = Err("line 3: `broker` is missing".into());
    let error = service.reload().await.unwrap_err().to_string();
    assert!(error.contains("nothing was changed") && error.contains("line 3"), "{error}");
    assert_eq!(ids(&service), ["a", "c"]);
    *source.entries.lock().unwrap() = Ok(vec![entry(&upstream, "a", "2"), entry(&upstream, "c", "1")]);
    let report = service.reload().await.unwrap();
    assert_eq!(report.unchanged, ["a", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_drains_calls_in_flight_flushes_and_does_not_log_out() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let upstream = Upstream::start(move |seen| match seen.path.as_str() {
        "/api/orders" => Answer::Hold(held.clone()),
        _ => Answer::json(200, serde_json::json!({})),
    })
    .await;
    let folder = tempfile::tempdir().unwrap();
    let store = folder.path().join("warden.db");
    let warden = Warden::builder().store_path(&store).build().await.unwrap();
    let mut served = serve_on(warden.clone(), &upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;
    let handle = served.handles[0].clone();
    assert!(eventually(250, || handle.status().state == StateKind::Valid).await);

    let order = served.post("/proxy/s1/orders").body("{\"qty\":1}").send();
    let order = tokio::spawn(order);
    assert!(eventually(250, || upstream.seen().iter().any(|s| s.path == "/api/orders")).await, "the order is out");
    served.signal_stop();
    let addr = served.addr;
    let refused = eventually(250, || std::net::TcpStream::connect(addr).is_err()).await;
    assert!(refused, "no new connections once the shutdown began");
    assert!(!order.is_finished(), "the order is still in flight");
    gate.add_permits(1);
    let answer = order.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200, "the call in flight finished and was answered");
    served.stop().await;
    assert_eq!(served.brokers[0].logouts(), 0, "a shutdown does not log out");
    assert_eq!(served.brokers[0].logins(), 1);

    // Opened again on the same store, the session resumes with its grant: no login.
    let again = Warden::builder().store_path(&store).build().await.unwrap();
    let broker = Arc::new(ScriptedBroker::new("s1-again"));
    let spec = SessionSpec::new(SessionId::new("s1").unwrap(), broker.clone())
        .with_credentials(SessionSetup::new("s1").credentials)
        .with_policy(policy());
    let resumed = again.open(spec).await.unwrap();
    let lease = resumed.token().await.unwrap();
    assert_eq!(lease.token(), "s1-tok-1", "the stored grant");
    assert_eq!(broker.logins(), 0);
    drop(lease);
    again.shutdown(false).await;
    drop(warden);
}
