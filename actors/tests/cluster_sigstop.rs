//! A member in another process is paused with SIGSTOP while a login is due (a token request sits in its
//! input), past its lease TTL; a member in this process takes the session over; the paused one is resumed
//! and must make no login and record no attempt: its attempt record is refused under its old fence, and
//! its handle answers `NotOwner`. Real time (two processes cannot share paused time); PostgreSQL from
//! `WARDEN_PG_URL` (skipped without it unless `WARDEN_PG_TEST=required`); Unix only (`kill -STOP`).
//!
//! The child is this test binary run again with `--ignored --exact sigstop_child_member` and
//! `WARDEN_SIGSTOP_CHILD` set: it reads commands on stdin (`token`, `quit`) and answers on stdout.

#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{Clock, SessionSpec, Warden};
use warden_engine::{MemberName, Preset, SessionId};

const SESSION: &str = "acct-stop";
const CHILD_TTL: Duration = Duration::from_secs(2);
/// The longest wait for one line from the child.
const LINE_WAIT: Duration = Duration::from_secs(20);

async fn real_member(url: &str, schema: &str, name: &str) -> Warden {
    Warden::builder()
        .store(store(url, schema).await)
        .member(MemberName::new(name).expect("member name"))
        .lease_ttl(CHILD_TTL)
        .clock(Clock::system())
        .default_policy(quiet_policy(Preset::Reactive))
        .build()
        .await
        .expect("build a member")
}

fn spec(broker: &Arc<ScriptedBroker>) -> SessionSpec {
    SessionSpec::new(SessionId::new(SESSION).expect("id"), broker.clone())
}

/// The child: a member that opens the session and answers commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by cluster_sigstop's parent test in a child process"]
async fn sigstop_child_member() {
    let (Ok(url), Ok(schema)) = (std::env::var("WARDEN_PG_URL"), std::env::var("WARDEN_SIGSTOP_CHILD")) else {
        return;
    };
    let warden = real_member(&url, &schema, "stopped-a").await;
    let broker = Arc::new(ScriptedBroker::new("child").login_fallback(Reply::grant(Duration::from_secs(3600))));
    let handle = warden.open(spec(&broker)).await.expect("the child opens the session");
    println!("READY");
    let (lines, commands) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    loop {
        match commands.recv_timeout(Duration::from_millis(50)) {
            Ok(line) if line == "token" => {
                let answer = handle.token().await.map(|_| ());
                println!("TOKEN {answer:?} LOGINS {}", broker.logins());
            }
            Ok(line) if line == "quit" => break,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    std::process::exit(0);
}

/// Reads the child's stdout on a thread; lines come through a channel.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line holding `prefix` (libtest may print its own words before it), within [`LINE_WAIT`].
fn next_line(lines: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        match lines.recv_timeout(LINE_WAIT) {
            Ok(line) if line.contains(prefix) => return line,
            Ok(_) => {}
            Err(error) => panic!("no `{prefix}` line from the child: {error}"),
        }
    }
}

/// The child process, killed (even while stopped) if the test ends early.
struct ChildMember(Child);

impl Drop for ChildMember {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, which: &str) {
    let status = Command::new("kill").arg(which).arg(child.id().to_string()).status().expect("kill");
    assert!(status.success(), "kill {which}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_paused_with_sigstop_makes_no_login_after_the_takeover() {
    let Some((url, schema)) = pg("sigstop") else { return };
    let exe = std::env::current_exe().expect("this test binary");
    let child = Command::new(exe)
        .args(["--ignored", "--exact", "sigstop_child_member", "--nocapture", "--test-threads=1"])
        .env("WARDEN_PG_URL", &url)
        .env("WARDEN_SIGSTOP_CHILD", &schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child member");
    let mut child = ChildMember(child);
    let lines = lines_of(&mut child.0);
    let lines = tokio::task::spawn_blocking(move || {
        next_line(&lines, "READY");
        lines
    })
    .await
    .expect("ready");

    // Paused, with a token request (a login: the session has no grant) waiting in its input.
    signal(&child.0, "-STOP");
    let paused = Clock::system().now();
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    writeln!(stdin, "token").expect("write");
    stdin.flush().expect("flush");

    // Past its TTL this process takes the session over and logs in itself.
    let b = real_member(&url, &schema, "taker-b").await;
    let broker = Arc::new(ScriptedBroker::new("parent").login_fallback(Reply::grant(Duration::from_secs(3600))));
    let mut on_b = None;
    for _ in 0..40 {
        tokio::time::sleep(CHILD_TTL / 4).await;
        if let Ok(handle) = b.open(spec(&broker)).await {
            on_b = Some(handle);
            break;
        }
    }
    let on_b = on_b.expect("b took the session over after the child's TTL");
    eprintln!(
        "b took over {} ms after the child was stopped (TTL {} ms)",
        Clock::system().now().as_millis() - paused.as_millis(),
        CHILD_TTL.as_millis()
    );
    on_b.token().await.expect("b's login");
    assert_eq!(broker.logins(), 1);

    // Resumed, the child answers its waiting request: refused, with no login at its broker.
    signal(&child.0, "-CONT");
    let (answer, lines) =
        tokio::task::spawn_blocking(move || (next_line(&lines, "TOKEN"), lines)).await.expect("answer");
    eprintln!("the resumed child answered: {answer}");
    assert!(answer.contains("NotOwner") && answer.ends_with("LOGINS 0"), "the child: {answer}");

    // The login history shows b's attempt only: the child recorded none.
    let store = b.store();
    let id = SessionId::new(SESSION).expect("id");
    let attempts =
        tokio::task::spawn_blocking(move || store.login_attempts(&id, 64)).await.expect("ran").expect("read");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    // B's session is untouched.
    assert!(on_b.token().await.is_ok());
    assert_eq!(broker.logins(), 1);

    writeln!(stdin, "quit").ok();
    drop(stdin);
    drop(lines);
    let _ = tokio::task::spawn_blocking(move || child.0.wait()).await;
    b.shutdown(false).await;
}
