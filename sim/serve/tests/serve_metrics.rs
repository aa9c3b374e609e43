//! `/metrics` parses as Prometheus text and says what the status API says.

mod common;

use std::collections::HashMap;

use common::{Answer, SessionSetup, Upstream, eventually, serve};
use prometheus_parse::{Sample, Scrape, Value};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_engine::StateKind;
use warden_serve::ServeConfig;

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("not a single value: {other:?}"),
    }
}

/// The one sample of `metric` whose labels include all of `labels`.
fn find<'s>(scrape: &'s Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'s Sample> {
    let mut found =
        scrape.samples.iter().filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    let sample = found.next();
    assert!(found.next().is_none(), "{metric} {labels:?} is not unique");
    sample
}

/// Every sample line is `name{labels} value` or `name value`, after its family's `# TYPE`.
fn check_exposition(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            typed.insert(parts.next().unwrap().to_owned());
            assert!(matches!(parts.next(), Some("gauge" | "counter" | "histogram" | "summary")), "{line}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect(line);
        let name = &line[..name_end];
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "{line}");
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(typed.contains(name) || typed.contains(family), "sample before its # TYPE: {line}");
        let number = line.rsplit(' ').next().unwrap();
        assert!(number.parse::<f64>().is_ok() || number == "+Inf", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_match_the_status_api() {
    let upstream = Upstream::start(|seen| match seen.path.as_str() {
        "/api/refused" => Answer::json(403, serde_json::json!({"error": "no"})),
        _ => Answer::json(200, serde_json::json!({"ok": true})),
    })
    .await;
    let failing = SessionSetup {
        broker: std::sync::Arc::new(ScriptedBroker::new("f1").login_fallback(Reply::error(503, "maintenance"))),
        ..SessionSetup::new("f1")
    };
    let served = serve(&upstream, vec![SessionSetup::new("s1"), failing], ServeConfig::default()).await;
    for _ in 0..7 {
        assert_eq!(served.get("/proxy/s1/quotes").send().await.unwrap().status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(served.get("/proxy/s1/refused").send().await.unwrap().status(), 403);
    }
    for name in ["made-up-1", "made-up-2", "made-up-3"] {
        assert_eq!(served.get(&format!("/proxy/{name}/quotes")).send().await.unwrap().status(), 404);
    }
    let app = served.service.app().clone();
    let f1 = served.handles[1].clone();
    assert!(eventually(250, || !app.metrics.counters(f1.id()).failures().is_empty()).await);
    let s1 = served.handles[0].clone();
    assert!(eventually(250, || s1.status().state == StateKind::Valid).await);
    app.metrics.upkeep();

    let text = served.get("/metrics").send().await.unwrap().text().await.unwrap();
    check_exposition(&text);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    let status = served.json("/v1/sessions").await;
    for view in status["sessions"].as_array().unwrap() {
        let id = view["id"].as_str().unwrap();
        let session = [("session", id)];
        let gauge =
            |metric: &str| find(&scrape, metric, &session).map(value).unwrap_or_else(|| panic!("{metric} {id}"));
        assert_eq!(gauge("warden_session_generation"), view["generation"].as_f64().unwrap(), "{id}");
        assert_eq!(gauge("warden_session_logins_total"), view["stats"]["logins"].as_f64().unwrap(), "{id}");
        assert_eq!(gauge("warden_session_refreshes_total"), view["stats"]["refreshes"].as_f64().unwrap());
        assert_eq!(gauge("warden_session_keepalives_total"), view["stats"]["keepalives"].as_f64().unwrap());
        assert_eq!(gauge("warden_session_waiters"), view["proxy"]["waiting"].as_f64().unwrap());
        assert_eq!(gauge("warden_session_ready"), if view["ready"]["ready"] == true { 1.0 } else { 0.0 });
        let state = view["state"].as_str().unwrap();
        for kind in StateKind::ALL {
            let on = find(&scrape, "warden_session_state", &[("session", id), ("state", kind.name())]).map(value);
            assert_eq!(on, Some(if kind.name() == state { 1.0 } else { 0.0 }), "{id} {kind}");
        }
        for (key, count) in view["failures"].as_object().unwrap() {
            let (call, class) = key.split_once(':').unwrap();
            let labels = [("session", id), ("call", call), ("class", class)];
            let sample = find(&scrape, "warden_session_failures_total", &labels).expect("failures by class");
            assert!(value(sample) >= count.as_f64().unwrap(), "{id} {key}");
        }
        match view["token"]["expires_in_ms"].as_f64() {
            Some(ms) => {
                let seconds = gauge("warden_session_expires_in_seconds");
                assert!((seconds - ms / 1e3).abs() < 5.0, "{id}: {seconds} s vs {ms} ms");
            }
            None => assert!(find(&scrape, "warden_session_expires_in_seconds", &session).is_none(), "{id}"),
        }
    }
    let requests: HashMap<String, f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "warden_proxy_requests_total" && s.labels.get("session") == Some("s1"))
        .map(|s| (s.labels.get("status").unwrap().to_owned(), value(s)))
        .collect();
    assert_eq!(requests, HashMap::from([("200".to_owned(), 7.0), ("403".to_owned(), 3.0)]));
    assert!(!text.contains("made-up"), "a session that is not served never becomes a label");
    let unknown = find(&scrape, "warden_proxy_requests_total", &[("session", "_unknown"), ("status", "404")]);
    assert_eq!(unknown.map(value), Some(3.0), "calls to sessions that are not served count under _unknown");
    let histogram = find(&scrape, "warden_proxy_request_duration_seconds", &[("session", "s1")]).expect("histogram");
    let Value::Histogram(buckets) = &histogram.value else { panic!("{histogram:?}") };
    let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
    assert_eq!(total, 10.0, "every proxied call is in the latency histogram");
}
