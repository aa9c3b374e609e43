//! The `warden` binary: `check` says whether `[serve]` is fine; `serve` makes its token file (0600),
//! answers, reloads on SIGHUP and drains and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_warden");

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill");
    assert!(status.success());
}

/// The next line containing `needle`, within `lines` lines or 20 s of reading.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> Option<String> {
    for _ in 0..2_000 {
        match lines.recv_timeout(Duration::from_millis(10)) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
    None
}

#[test]
fn check_says_whether_serve_is_fine() {
    let folder = tempfile::tempdir().unwrap();
    let good = folder.path().join("good.toml");
    std::fs::write(&good, "[store]\npath = \"x\"\n[serve]\nlisten = \"127.0.0.1:7979\"\n").unwrap();
    let output = Command::new(BINARY).args(["check", "--config"]).arg(&good).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("[serve] is fine: listens on http://127.0.0.1:7979"), "{text}");
    assert!(!folder.path().join("warden-serve.token").exists(), "check makes nothing");

    let public = folder.path().join("public.toml");
    std::fs::write(&public, "[serve]\nlisten = \"0.0.0.0:7878\"\n").unwrap();
    let output = Command::new(BINARY).args(["check", "--config"]).arg(&public).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a loopback address"), "{output:?}");

    let typo = folder.path().join("typo.toml");
    std::fs::write(&typo, "[serve]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
    let output = Command::new(BINARY).args(["check", "--config"]).arg(&typo).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown field `listen_addr`"), "{output:?}");
}

#[test]
fn serve_answers_reloads_on_sighup_and_drains_on_sigterm() {
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("warden.toml");
    std::fs::write(&config, "[serve]\nlisten = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n").unwrap();
    let mut child = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("WARDEN_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (send, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
    }
    drop(send);
    let mut seen = Vec::new();
    let listening = wait_for(&lines, "warden serve is listening", &mut seen);
    let listening = listening.unwrap_or_else(|| panic!("no listening line: {seen:#?}"));
    let address = listening.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let token_file = folder.path().join("warden-serve.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is made private");
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let health = client.get(format!("http://{address}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let sessions = client.get(format!("http://{address}/v1/sessions")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(sessions.status(), 200);
        let denied = client.get(format!("http://{address}/v1/sessions")).send().await.unwrap();
        assert_eq!(denied.status(), 401);
    });

    signal(child.id(), "HUP");
    assert!(wait_for(&lines, "SIGHUP", &mut seen).is_some(), "SIGHUP is handled: {seen:#?}");
    signal(child.id(), "TERM");
    assert!(wait_for(&lines, "stopped; sessions were not logged out", &mut seen).is_some(), "{seen:#?}");
    let mut status = None;
    for _ in 0..500 {
        if let Some(done) = child.try_wait().unwrap() {
            status = Some(done);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("did not exit after SIGTERM")
    });
    assert!(status.success(), "{status:?}");
    for line in &seen {
        assert!(!line.contains(&token), "the token is never logged: {line}");
    }
}
