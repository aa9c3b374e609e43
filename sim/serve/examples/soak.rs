//! The proxy's soak: a steady load through `ANY /proxy/{session}/…` against the simulator's OAuth2 mock
//! broker (`warden_sim::mock`, its request limit removed), for a while, measuring in the same run the
//! proxy's latency beside direct calls to the mock, and the process's resident memory.
//!
//! ```text
//! cargo run --release -p warden --example soak -- --seconds 600 --rate 500 [--direct-rate 100] [--check]
//! ```
//!
//! The session behind the proxy is a real one: warden's OAuth2 client-credentials adapter logs in at the
//! mock's token endpoint, and every proxied call carries the grant it put on. The direct calls go to the
//! same mock endpoint (`GET /api/v1/quote`) with the same bearer, read from the session's hot path before
//! each call (outside the timing). Every `rate / direct-rate`-th tick sends a pair instead of a single
//! proxied call: a direct call, then the same call through the proxy, one after the other in one task,
//! so both meet the same machine. Prints one JSON line: calls measured and failed, p50/p99 of proxied and
//! direct calls, the proxy's overhead as the difference of those percentiles and as p50/p99 of the pairs'
//! differences, throughput, RSS after the warm-up (the first tenth of the run, at least 10 s), at the end
//! and at its highest, and what the mock counted (logins, requests, rejected and dead-token calls). With
//! `--check` it exits 1 unless the RSS stayed within 10 % of its post-warm-up value, the overhead p99 (of
//! the pairs) is at most 1 ms, nothing failed, and the mock rejected no call.
//!
//! Everything runs in this one process (mock, service, load), on the machine's cores: on a busy machine
//! the overhead's p99 measures the scheduler as much as the proxy. Latencies go into histograms allocated
//! before the run (5 µs buckets), so the load generator's own memory does not grow with the run.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use warden_actors::{Clock, SessionSpec, Warden};
use warden_adapters::broker::{BrokerApi, HttpClient, HttpSettings};
use warden_engine::{Policy, Secret, SessionId};
use warden_serve::{ServeConfig, ServedSession, Service};
use warden_sim::mock::client::{Adapter, MockClient};
use warden_sim::mock::{MockBroker, MockConfig};
use warden_sim::model::{BrokerModel, BrokerSpec, ModelKind, RateLimit};

const TOKEN: &str = "soak-bearer-token-0123456789-abcdefghijklmnop";

#[derive(Parser)]
struct Args {
    /// How long to run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Proxied calls a second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Direct calls a second (the baseline), interleaved with the proxied ones.
    #[arg(long, default_value_t = 100)]
    direct_rate: u64,
    /// Exit 1 unless RSS stays within 10 %, the p99 overhead is at most 1 ms and nothing failed.
    #[arg(long)]
    check: bool,
}

/// What one measurement is.
#[derive(Clone, Copy)]
enum Sample {
    /// A proxied call alone: its latency.
    Proxied(f64),
    /// A direct call then the same call proxied: both latencies.
    Pair(f64, f64),
    /// A call that failed.
    Failed,
}

/// A latency histogram: 5 µs buckets from `low_ms` on, allocated once.
struct Histogram {
    low_ms: f64,
    buckets: Vec<u64>,
    count: u64,
}

const BUCKET_MS: f64 = 0.005;

impl Histogram {
    fn new(low_ms: f64, high_ms: f64) -> Histogram {
        let buckets = ((high_ms - low_ms) / BUCKET_MS).ceil() as usize + 1;
        Histogram { low_ms, buckets: vec![0; buckets], count: 0 }
    }

    fn record(&mut self, ms: f64) {
        let index = ((ms - self.low_ms) / BUCKET_MS).floor().max(0.0) as usize;
        let last = self.buckets.len() - 1;
        self.buckets[index.min(last)] += 1;
        self.count += 1;
    }

    /// The `q` quantile (nearest rank), as its bucket's upper edge.
    fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return self.low_ms + (index as f64 + 1.0) * BUCKET_MS;
            }
        }
        f64::NAN
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The OAuth2 mock with no request limit, no order limit, no error rates and no reset, on the system clock.
async fn oauth2_mock(clock: Clock) -> MockBroker {
    let mut spec = BrokerSpec::preset(ModelKind::OAuth2);
    spec.request_limit = RateLimit::default();
    spec.order_limit = RateLimit::default();
    spec.endpoints.clear();
    spec.daily_reset = None;
    spec.weekly_reset = None;
    spec.idle_timeout = None;
    let config = MockConfig::demo(BrokerModel::new(spec, 7), clock).expect("the OAuth2 model has a mock");
    MockBroker::start(config).await.expect("the mock starts")
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let passed = runtime.block_on(run(args));
    std::process::exit(if passed { 0 } else { 1 });
}

async fn run(args: Args) -> bool {
    let clock = Clock::system();
    let mock = oauth2_mock(clock.clone()).await;
    let warden = Warden::builder().memory_store().clock(clock.clone()).build().await.expect("warden");
    let service = Service::builder(warden.clone(), ServeConfig::default(), Secret::new(TOKEN));
    let http = HttpClient::new(HttpSettings::default()).expect("client");
    let client = MockClient::for_mock(&mock, http, clock.clone()).expect("the OAuth2 adapter");
    let Adapter::OAuth2(adapter) = client.adapter() else { unreachable!("an OAuth2 mock has the OAuth2 adapter") };
    let api: Arc<dyn BrokerApi> = adapter.clone();
    let mut policy = Policy::default();
    policy.request_rate = None;
    let spec = SessionSpec::new(SessionId::new("soak").expect("id"), client.broker())
        .with_credentials(client.credentials().clone())
        .with_policy(policy);
    let handle = warden.open(spec).await.expect("open");
    handle.token().await.expect("the first login");
    let base = reqwest::Url::parse(&format!("{}/", mock.base_url())).expect("url");
    let served = ServedSession::new(handle.clone(), api).with_base_url(base);
    let service = service.session(served).build().await.expect("service");
    let server = service.bind("127.0.0.1:0".parse().expect("addr"), None).await.expect("bind");
    let proxy_url = format!("http://{}/proxy/soak/api/v1/quote?symbol=ACME", server.local_addr());
    let direct_url = format!("{}/api/v1/quote?symbol=ACME", mock.base_url());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let load = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("client");
    let (record, mut records) = mpsc::unbounded_channel::<Sample>();
    let total = Duration::from_secs(args.seconds);
    let warmup = (total / 10).max(Duration::from_secs(10)).min(total / 2);
    let started = clock.monotonic_now();
    let period = Duration::from_secs_f64(1.0 / args.rate as f64);
    let pair_every = (args.rate / args.direct_rate.max(1)).max(1);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut rss_after_warmup = None;
    let mut rss_max = 0;
    let mut next_rss = started + warmup;
    // RSS every tenth of the run after the warm-up (a dozen samples, allocated up front).
    let timeline_every = (total.saturating_sub(warmup) / 10).max(Duration::from_secs(1));
    let mut timeline: Vec<(u64, u64)> = Vec::with_capacity(16);
    let mut next_timeline = started + warmup;
    let mut proxied = Histogram::new(0.0, 1_000.0);
    let mut direct = Histogram::new(0.0, 1_000.0);
    let mut paired = Histogram::new(-500.0, 500.0);
    let mut failures = 0u64;
    let mut sent = 0u64;
    let mut keep = |sample: Sample, measured: bool| match sample {
        Sample::Failed => 1,
        _ if !measured => 0,
        Sample::Proxied(ms) => {
            proxied.record(ms);
            0
        }
        Sample::Pair(direct_ms, proxied_ms) => {
            direct.record(direct_ms);
            proxied.record(proxied_ms);
            paired.record(proxied_ms - direct_ms);
            0
        }
    };
    loop {
        ticker.tick().await;
        let now = clock.monotonic_now();
        if now.duration_since(started) >= total {
            break;
        }
        let measured = now.duration_since(started) >= warmup;
        while let Ok(sample) = records.try_recv() {
            failures += keep(sample, measured);
        }
        if now >= next_rss {
            let rss = rss_kib();
            rss_after_warmup.get_or_insert(rss);
            rss_max = rss_max.max(rss);
            next_rss = now + Duration::from_secs(1);
            if now >= next_timeline {
                timeline.push((now.duration_since(started).as_secs(), rss));
                next_timeline = now + timeline_every;
            }
        }
        sent += 1;
        let record = record.clone();
        let clock = clock.clone();
        let proxy = load.get(&proxy_url).bearer_auth(TOKEN);
        let direct_call = sent.is_multiple_of(pair_every).then(|| (load.get(&direct_url), handle.clone()));
        tokio::spawn(async move {
            let timed = |request: reqwest::RequestBuilder| {
                let clock = clock.clone();
                async move {
                    let begun = clock.monotonic_now();
                    let ok = match request.send().await {
                        Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    ok.then(|| clock.monotonic_now().duration_since(begun).as_secs_f64() * 1e3)
                }
            };
            let sample = match direct_call {
                // The session's bearer, read from the hot path before the timing starts.
                Some((direct_call, handle)) => match handle.token().await.map(|lease| lease.token().to_owned()) {
                    Ok(bearer) => match (timed(direct_call.bearer_auth(bearer)).await, timed(proxy).await) {
                        (Some(d), Some(p)) => Sample::Pair(d, p),
                        _ => Sample::Failed,
                    },
                    Err(_) => Sample::Failed,
                },
                None => timed(proxy).await.map_or(Sample::Failed, Sample::Proxied),
            };
            let _ = record.send(sample);
        });
    }
    drop(record);
    while let Some(sample) = records.recv().await {
        failures += keep(sample, true);
    }
    let rss_end = rss_kib();
    rss_max = rss_max.max(rss_end);
    let _ = stop.send(());
    let _ = serving.await;
    let broker = mock.stats().model;
    mock.stop().await;
    let measured_s = total.saturating_sub(warmup).as_secs_f64().max(1e-3);
    let (p50, p99) = (proxied.quantile(0.5), proxied.quantile(0.99));
    let (d50, d99) = (direct.quantile(0.5), direct.quantile(0.99));
    let (o50, o99) = (paired.quantile(0.5), paired.quantile(0.99));
    let rss_start = rss_after_warmup.unwrap_or(rss_end);
    let growth = (rss_max as f64 - rss_start as f64) / rss_start.max(1) as f64 * 100.0;
    let report = serde_json::json!({
        "seconds": args.seconds, "rate": args.rate, "pairs_per_second": args.rate / pair_every,
        "sent": sent, "proxied_measured": proxied.count, "pairs_measured": paired.count, "failures": failures,
        "proxied_per_second": round(proxied.count as f64 / measured_s),
        "proxy_p50_ms": round(p50), "proxy_p99_ms": round(p99),
        "direct_p50_ms": round(d50), "direct_p99_ms": round(d99),
        "p99_difference_ms": round(p99 - d99),
        "overhead_p50_ms": round(o50), "overhead_p99_ms": round(o99),
        "rss_after_warmup_kib": rss_start, "rss_end_kib": rss_end, "rss_max_kib": rss_max,
        "rss_growth_pct": round(growth),
        "rss_timeline_s_kib": timeline,
        "mock_logins": broker.logins, "mock_requests_ok": broker.requests_ok,
        "mock_rejections": broker.rejections, "mock_dead_token_uses": broker.dead_token_uses,
    });
    println!("{report}");
    if !args.check {
        return true;
    }
    let mut passed = true;
    if growth > 10.0 {
        eprintln!("soak: RSS grew {growth:.1} % after the warm-up (limit 10 %)");
        passed = false;
    }
    if o99 > 1.0 {
        eprintln!("soak: the proxy's p99 overhead is {o99:.3} ms (limit 1 ms)");
        passed = false;
    }
    if failures > 0 {
        eprintln!("soak: {failures} calls failed");
        passed = false;
    }
    if broker.rejections > 0 || broker.dead_token_uses > 0 {
        let (rejected, dead) = (broker.rejections, broker.dead_token_uses);
        eprintln!("soak: the mock rejected {rejected} calls ({dead} with a dead token)");
        passed = false;
    }
    passed
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
