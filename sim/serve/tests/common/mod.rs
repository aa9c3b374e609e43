//! Shared helpers of the service's tests: a scripted upstream (a broker's API) on 127.0.0.1, a service
//! over `ScriptedBroker` sessions bound to 127.0.0.1:0, an HTTP client, an SSE reader.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, Response, StatusCode};
use reqwest::Url;
use tokio::sync::oneshot;
use warden_actors::testing::ScriptedBroker;
use warden_actors::{SessionHandle, SessionSpec, Warden};
use warden_adapters::broker::{BrokerApi, HttpClient, HttpSettings, PlainApi};
use warden_engine::{Credentials, Policy, Secret, SessionId};
use warden_serve::{ServeConfig, ServedSession, Service};

/// The bearer token every test service uses.
pub const TOKEN: &str = "test-bearer-token-0123456789-abcdefghij";

/// One request the upstream saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An upstream's answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A status, headers and body.
    Reply(u16, Vec<(String, String)>, Vec<u8>),
    /// Wait until the test releases it, then answer 200 `{"released":true}`.
    Hold(Arc<tokio::sync::Semaphore>),
}

impl Answer {
    pub fn json(status: u16, body: serde_json::Value) -> Answer {
        Answer::Reply(status, vec![("content-type".into(), "application/json".into())], body.to_string().into_bytes())
    }
}

type Script = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A scripted upstream on 127.0.0.1.
pub struct Upstream {
    pub base: Url,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Upstream {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let script = script.clone();
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().map(str::to_owned),
                    headers: parts.headers,
                    body: body.to_vec(),
                };
                log.lock().unwrap().push(seen.clone());
                match script(&seen) {
                    Answer::Reply(status, headers, body) => {
                        let mut response = Response::new(Body::from(body));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        for (k, v) in headers {
                            response.headers_mut().insert(
                                axum::http::HeaderName::try_from(k).unwrap(),
                                axum::http::HeaderValue::try_from(v).unwrap(),
                            );
                        }
                        response
                    }
                    Answer::Hold(gate) => {
                        let _permit = gate.acquire().await;
                        let mut response = Response::new(Body::from("{\"released\":true}"));
                        response.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        response
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service()).await.ok();
        });
        Upstream { base: Url::parse(&format!("http://{addr}/api/")).unwrap(), addr, seen, task }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// An upstream that reads each request and closes the connection without answering (the broker may
/// have acted; no answer came).
pub async fn dropping_upstream() -> (Url, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = Vec::new();
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                read.extend_from_slice(&buf[..n]);
                if read.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            drop(stream);
        }
    });
    (Url::parse(&format!("http://{addr}/api/")).unwrap(), task)
}

/// An HTTP client for the adapters (short timeouts).
pub fn http() -> HttpClient {
    HttpClient::new(HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        ..HttpSettings::default()
    })
    .expect("client")
}

/// A policy for tests: no login rate limit (tests log in often), short request timeout.
pub fn policy() -> Policy {
    let mut policy = Policy::default();
    policy.login_rate = None;
    policy.request_timeout = Duration::from_secs(5);
    policy
}

/// One session for a test service.
pub struct SessionSetup {
    pub id: &'static str,
    pub broker: Arc<ScriptedBroker>,
    pub policy: Policy,
    pub credentials: Credentials,
    pub api: Option<Arc<dyn BrokerApi>>,
    /// Another broker than `broker` (which then only names the session's grants).
    pub custom_broker: Option<Arc<dyn warden_engine::Broker>>,
}

impl SessionSetup {
    pub fn new(id: &'static str) -> SessionSetup {
        SessionSetup {
            id,
            broker: Arc::new(ScriptedBroker::new(id)),
            policy: policy(),
            credentials: Credentials::new().with("user", "trader").with("password", format!("{id}-PASSWORD-xyz")),
            api: None,
            custom_broker: None,
        }
    }
}

/// A running service and what a test needs of it.
pub struct Served {
    pub base: String,
    pub addr: SocketAddr,
    pub service: Service,
    pub warden: Warden,
    pub handles: Vec<SessionHandle>,
    pub brokers: Vec<Arc<ScriptedBroker>>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    pub stopped: Option<tokio::task::JoinHandle<Result<(), warden_serve::ServeError>>>,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the bearer token.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(TOKEN)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(TOKEN)
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).send().await.expect("send");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        serde_json::from_slice(&response.bytes().await.unwrap()).expect("json")
    }

    /// Stops the service (the shutdown future completes) and waits for it to drain.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.stopped.take() {
            task.await.expect("join").expect("served");
        }
    }

    /// Signals the shutdown without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A service over `sessions` (each a `ScriptedBroker` whose API is a `PlainApi` on `upstream`), bound to
/// 127.0.0.1:0, with `config` (its listen address is ignored).
pub async fn serve(upstream: &Upstream, sessions: Vec<SessionSetup>, config: ServeConfig) -> Served {
    let warden = Warden::builder().memory_store().build().await.expect("warden");
    serve_on(warden, upstream, sessions, config).await
}

pub async fn serve_on(warden: Warden, upstream: &Upstream, sessions: Vec<SessionSetup>, config: ServeConfig) -> Served {
    // The builder first: it subscribes to the warden's events, so the sessions' first ones are kept.
    let mut builder = Service::builder(warden.clone(), config, Secret::new(TOKEN));
    let mut handles = Vec::new();
    let mut brokers = Vec::new();
    for setup in sessions {
        let broker: Arc<dyn warden_engine::Broker> = setup.custom_broker.clone().unwrap_or(setup.broker.clone());
        let spec = SessionSpec::new(SessionId::new(setup.id).unwrap(), broker)
            .with_credentials(setup.credentials)
            .with_policy(setup.policy);
        let handle = warden.open(spec).await.expect("open");
        let api: Arc<dyn BrokerApi> =
            setup.api.unwrap_or_else(|| Arc::new(PlainApi::new(setup.broker.clone(), upstream.base.clone(), http())));
        builder = builder.session(ServedSession::new(handle.clone(), api));
        handles.push(handle);
        brokers.push(setup.broker);
    }
    let service = builder.build().await.expect("service");
    let server = service.bind("127.0.0.1:0".parse().unwrap(), None).await.expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Served {
        base: format!("http://{addr}"),
        addr,
        service,
        warden,
        handles,
        brokers,
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        stop: Some(stop),
        stopped: Some(task),
    }
}

/// Waits (bounded: `tries` × 20 ms) until `check` holds.
pub async fn eventually(tries: usize, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// A Server-Sent Events reader over a streaming response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

/// One SSE event: its id and its data.
#[derive(Clone, Debug)]
pub struct Sse {
    pub id: Option<u64>,
    pub data: serde_json::Value,
}

impl SseReader {
    pub async fn open(served: &Served, last_event_id: Option<u64>) -> SseReader {
        let mut request = served.get("/v1/events");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("events");
        assert_eq!(response.status(), 200);
        SseReader { response, buffer: String::new() }
    }

    /// The next event (keep-alive comments skipped); `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(Sse { id, data: serde_json::from_str(&data).expect("event json") });
            }
            let chunk: Bytes = self.response.chunk().await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
