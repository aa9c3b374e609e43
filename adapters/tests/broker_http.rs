//! Every adapter against a small scripted server on 127.0.0.1 speaking its broker's wire format: the
//! requests the adapter sends (headers, bodies, signatures), the grants it builds, the classes of the
//! broker's errors; size limits and transport failures. The cycles live in `common/cycles.rs`; the
//! trace-level log capture of them is `broker_logs.rs`.

mod common;
#[path = "common/cycles.rs"]
mod cycles;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::mock_http::{MockServer, Reply, Seen};
use cycles::*;
use warden_adapters::broker::{
    ApiRequest, HttpClient, HttpSettings, Ibkr, IbkrSettings, OAuth2ClientCredentials, OAuth2Settings, codes,
};
use warden_engine::{Broker, Credentials, Delivery, ErrorClass, Grant, LoginRequest};

#[tokio::test]
async fn saxo_round_trip() {
    saxo_cycle().await;
}

#[tokio::test]
async fn ibkr_round_trip() {
    ibkr_cycle().await;
}

#[tokio::test]
async fn ibkr_competing_session_yields_unless_taking_over() {
    let state = Arc::new(Mutex::new(IbkrServer { lst: None, tickles: 0, held_elsewhere: true }));
    let server = MockServer::start(ibkr_script(state)).await;
    let settings = IbkrSettings {
        base_url: format!("{}/v1/api", server.base),
        realm: "test_realm".into(),
        ..IbkrSettings::default()
    };
    let broker = Ibkr::new(settings, http(), Arc::new(|| NOW)).unwrap();
    let creds = ibkr_credentials();
    let e = broker.login(NOW, login(&creds, None)).await.unwrap_err();
    assert_eq!(broker.classify(&e), ErrorClass::Competing, "{}", e.message);
    let take_over = LoginRequest { credentials: &creds, second_factor: None, take_over: true };
    broker.login(NOW, take_over).await.expect("a take-over login");
    let init = server.seen().into_iter().rfind(|s| s.path.ends_with("/ssodh/init")).unwrap();
    assert_eq!(init.json(), serde_json::json!({"publish":true,"compete":true}));
}

#[tokio::test]
async fn ibkr_refuses_keys_that_do_not_match() {
    let server = MockServer::start(|seen: &Seen| {
        if seen.path.ends_with("/live_session_token") {
            Reply::json(200, serde_json::json!({"diffie_hellman_response":"02","live_session_token_signature":"00"}))
        } else {
            Reply::json(200, serde_json::json!({"authenticated":true}))
        }
    })
    .await;
    let settings = IbkrSettings { base_url: server.base.clone(), ..IbkrSettings::default() };
    let broker = Ibkr::new(settings, http(), Arc::new(|| NOW)).unwrap();
    let creds = ibkr_credentials();
    // The server's signature does not match the token we compute: the keys are not the registered ones.
    let e = broker.login(NOW, login(&creds, None)).await.unwrap_err();
    assert_eq!(broker.classify(&e), ErrorClass::Permanent, "{}", e.message);
    assert!(e.message.contains("does not match"), "{}", e.message);
    // A key that is not PEM is refused before anything is sent.
    let broken = creds.clone().with("signature_key", "not a key");
    let before = server.seen().len();
    let e = broker.login(NOW, login(&broken, None)).await.unwrap_err();
    assert_eq!((broker.classify(&e), e.code.as_deref()), (ErrorClass::Permanent, Some(codes::BAD_CREDENTIAL)));
    assert_eq!(server.seen().len(), before);
    let missing = Credentials::new().with("consumer_key", "TESTCONS");
    let e = broker.login(NOW, login(&missing, None)).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some(codes::MISSING_CREDENTIAL));
}

#[tokio::test]
async fn kotak_round_trip() {
    kotak_cycle().await;
}

#[tokio::test]
async fn kite_round_trip() {
    kite_cycle().await;
}

#[tokio::test]
async fn oauth2_round_trip() {
    oauth2_cycle().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_parsing() {
    let server = MockServer::start(|seen: &Seen| match seen.path.as_str() {
        "/exact" => Reply::raw(200, vec![b' '; LIMIT]),
        "/over" => Reply::raw(200, vec![b'{'; LIMIT + 1]),
        _ => Reply::raw(400, vec![b'x'; 3 * LIMIT]),
    })
    .await;
    let broker = bearer_broker(&server.base);
    let grant = Grant::new("t", NOW);
    let exact =
        broker.send(NOW, &grant, ApiRequest::get(format!("{}/exact", server.base))).await.expect("at the limit");
    assert_eq!(exact.body.len(), LIMIT);
    for (path, status, delivery) in [("/over", 200, Delivery::Unknown), ("/huge-error", 400, Delivery::Answered)] {
        let e = broker.send(NOW, &grant, ApiRequest::get(format!("{}{path}", server.base))).await.unwrap_err();
        assert_eq!(e.code.as_deref(), Some(codes::TOO_LARGE), "{}", e.message);
        assert_eq!((e.status, e.delivery), (Some(status), delivery));
        assert!(e.message.contains(&format!("larger than the {LIMIT}-byte limit")), "{}", e.message);
        assert!(e.message.starts_with(&format!("oauth2 GET {path}")), "{}", e.message);
    }
}

/// A raw server that answers every connection with a chunked body of `chunks` × 1 MiB and no length.
async fn chunked_server(chunks: usize) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
            let chunk = vec![b'['; 1 << 20];
            for _ in 0..chunks {
                let _ = socket.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
                if socket.write_all(&chunk).await.is_err() {
                    break;
                }
                let _ = socket.write_all(b"\r\n").await;
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        }
    });
    (base, task)
}

#[tokio::test]
async fn bodies_without_a_length_stop_at_the_limit() {
    let (base, task) = chunked_server(12).await;
    let broker = bearer_broker(&base);
    let e = broker.send(NOW, &Grant::new("t", NOW), ApiRequest::get(format!("{base}/stream"))).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some(codes::TOO_LARGE), "{}", e.message);
    assert_eq!(e.delivery, Delivery::Unknown);
    task.abort();
}

#[tokio::test]
async fn transport_failures_say_how_far_the_request_got() {
    // Nothing listens: never sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let broker = bearer_broker(&closed);
    let e = broker.send(NOW, &Grant::new("t", NOW), ApiRequest::post(format!("{closed}/orders"))).await.unwrap_err();
    assert_eq!(e.delivery, Delivery::NotSent, "{}", e.message);
    assert!(e.message.starts_with("oauth2 POST /orders: could not connect"), "{}", e.message);

    // A server that accepts and never answers: no answer, outcome unknown.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let quick =
        HttpClient::new(HttpSettings { request_timeout: Duration::from_millis(300), ..HttpSettings::default() })
            .unwrap();
    let settings = OAuth2Settings { token_url: format!("{base}/token"), ..OAuth2Settings::default() };
    let broker = OAuth2ClientCredentials::new(settings, quick).unwrap();
    let e = broker
        .send(NOW, &Grant::new("t", NOW), ApiRequest::post(format!("{base}/orders?token=QUERY-SECRET")))
        .await
        .unwrap_err();
    assert_eq!(e.delivery, Delivery::Unknown, "{}", e.message);
    assert_eq!(e.message, "oauth2 POST /orders: no answer within the request timeout (300ms)");
    assert_eq!(broker.classify(&e), ErrorClass::Transient);
    hold.abort();
}
