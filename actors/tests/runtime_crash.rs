//! kill -9: a child process (this test binary, run again) opens sessions on a sled store and says so
//! once every one serves a token; it is killed with SIGKILL at once. Reopened on the same store, every
//! session serves the grant it had — no login — because a grant is handed out only once it is on disk.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use warden_actors::testing::ScriptedBroker;
use warden_actors::{SessionSpec, Warden};
use warden_engine::{Generation, Mode, Policy, Preset, SessionId};

const SESSIONS: usize = 200;
const CHILD_ENV: &str = "WARDEN_CRASH_TEST_STORE";
const READY: &str = "EVERY-SESSION-SERVES";

fn policy() -> Policy {
    let mut policy = Policy::preset(Preset::Reactive);
    policy.mode = Mode::Eager;
    policy.idle_timeout = None;
    policy
}

async fn open_all(warden: &Warden, broker: &Arc<ScriptedBroker>) -> Vec<warden_actors::SessionHandle> {
    let mut handles = Vec::new();
    for i in 0..SESSIONS {
        let spec = SessionSpec::new(SessionId::new(format!("s{i}")).unwrap(), broker.clone()).with_policy(policy());
        handles.push(warden.open(spec).await.unwrap());
    }
    handles
}

/// The child's part: open, wait until every session serves, say so, wait to be killed.
fn child(path: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let warden = Warden::builder().store_path(path).build().await.unwrap();
        let broker = Arc::new(ScriptedBroker::new("crash"));
        let handles = open_all(&warden, &broker).await;
        for handle in &handles {
            assert_eq!(handle.token().await.unwrap().generation, Generation(1));
        }
        println!("{READY}");
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

#[test]
fn every_grant_handed_out_before_a_kill_9_is_reused_without_a_login() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args(["every_grant_handed_out_before_a_kill_9_is_reused_without_a_login", "--exact", "--nocapture"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = process.stdout.take().unwrap();
    let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.contains(READY));
    process.kill().unwrap(); // SIGKILL, at once
    process.wait().unwrap();
    assert!(ready, "the child never had every session serving");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let warden = Warden::builder().store_path(&path).build().await.unwrap();
        let broker = Arc::new(ScriptedBroker::new("after"));
        let handles = open_all(&warden, &broker).await;
        for handle in &handles {
            assert_eq!(handle.token().await.unwrap().generation, Generation(1), "{} lost its grant", handle.id());
        }
        assert_eq!(broker.logins(), 0, "no second login after the crash");
        warden.shutdown(false).await;
    });
}
