//! Broken scenario files: each error must name the file, the line, the key and the problem. And the
//! shipped scenarios in `sim/scenarios/` must all parse, with the shapes the runner relies on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_sim::model::ModelKind;
use warden_sim::scenario::{Scenario, ScenarioError};

const ORIGIN: &str = "sim/scenarios/broken.toml";

/// A valid scenario; each test breaks one thing in it. Line numbers are noted for the assertions.
const BASE: &str = r#"name = "base"
seed = 7
start = "2026-03-09T08:00:00+05:30[Asia/Kolkata]"
duration = "2d"

[broker]
model = "saxo"

[policy]
preset = "hybrid"

[workload]
strategies = 2
rate_per_strategy = 0.5
market_hours = { open = "09:15", close = "15:30", tz = "Asia/Kolkata" }

[[workload.mix]]
kind = "quote"
idempotent = true

[expect]
logins = { max = 3 }
"#;

fn parse_err(text: &str) -> ScenarioError {
    match Scenario::parse(text, ORIGIN) {
        Ok(s) => panic!("scenario {} parsed, but it is broken:\n{text}", s.name),
        Err(e) => e,
    }
}

/// Asserts that the error names the file, the line, the key and the problem.
fn assert_error(err: &ScenarioError, line: usize, key: &str, problem: &[&str]) {
    let text = err.to_string();
    assert!(text.starts_with(&format!("{ORIGIN} line {line}")), "wrong file or line (want {line}): {text}");
    assert_eq!(err.line(), Some(line), "{text}");
    assert!(text.contains(key), "does not name the key `{key}`: {text}");
    for p in problem {
        assert!(text.contains(p), "does not say {p:?}: {text}");
    }
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} is not in BASE");
    BASE.replacen(from, to, 1)
}

#[test]
fn the_base_scenario_is_valid() {
    let s = Scenario::parse(BASE, ORIGIN).unwrap();
    assert_eq!(s.duration, Duration::from_secs(2 * 86_400));
    assert_eq!(s.broker.kind, ModelKind::Saxo);
    let proactive = s.policy_for(warden_engine::Preset::Proactive).unwrap();
    assert_eq!(proactive.refresh_buffer, Some(Duration::from_secs(30)), "saxo's hint fills the preset");
    let limit = s.policy.request_rate.expect("hybrid keeps under saxo's request limit");
    assert_eq!((limit.max, limit.per.0), (120, Duration::from_secs(60)));
    assert_eq!(s.workload.open_windows.len(), 2);
    assert_eq!(s.expect.len(), 1);
}

#[test]
fn unknown_top_level_key() {
    let err = parse_err(&replace("seed = 7\n", "seed = 7\nsede = 8\n"));
    assert_error(&err, 3, "sede", &["unknown key `sede` at the top level", "did you mean `seed`?"]);
    assert_eq!(err.key(), Some("sede"));
}

#[test]
fn unknown_key_in_a_table() {
    let err = parse_err(&replace("preset = \"hybrid\"\n", "preset = \"hybrid\"\nrefrsh_buffer = \"30s\"\n"));
    assert_error(
        &err,
        11,
        "refrsh_buffer",
        &["unknown key `refrsh_buffer` in [policy]", "did you mean `refresh_buffer`?"],
    );
    assert!(err.to_string().contains("line 11, column 1:"), "{err}");
}

#[test]
fn unknown_key_in_an_inline_table_of_an_array_table() {
    let text = format!("{BASE}\n[[broker.outages]]\nfrom = \"+1h\"\nto = \"+2h\"\nmode = \"hang\"\n");
    let err = parse_err(&text);
    assert_error(&err, 27, "mode", &["unknown key `mode` in [broker.outages[0]]"]);
}

#[test]
fn bad_duration() {
    let err = parse_err(&replace("duration = \"2d\"", "duration = \"5 dayz\""));
    assert_error(&err, 4, "`duration`", &["\"5 dayz\" is not a duration"]);
}

#[test]
fn durations_accept_days_and_hours() {
    for (text, secs) in [("\"5 days\"", 5 * 86_400), ("\"120h\"", 120 * 3600), ("\"1d 12h\"", 36 * 3600)] {
        let s = Scenario::parse(&replace("duration = \"2d\"", &format!("duration = {text}")), ORIGIN).unwrap();
        assert_eq!(s.duration, Duration::from_secs(secs), "{text}");
    }
}

#[test]
fn bad_time_zone() {
    let err = parse_err(&replace("tz = \"Asia/Kolkata\" }", "tz = \"Asia/Kolkatta\" }"));
    assert_error(&err, 15, "workload.market_hours.tz", &["unknown time zone `Asia/Kolkatta`"]);
    let err = parse_err(&replace("[Asia/Kolkata]", "[Asia/Kolkatta]"));
    assert_error(&err, 3, "`start`", &["unknown time zone `Asia/Kolkatta`"]);
}

#[test]
fn start_without_a_zone() {
    let err = parse_err(&replace("+05:30[Asia/Kolkata]", ""));
    assert_error(&err, 3, "`start`", &["has no time zone or UTC offset"]);
    // A bare TOML datetime without an offset is refused the same way.
    let err = parse_err(&replace("\"2026-03-09T08:00:00+05:30[Asia/Kolkata]\"", "2026-03-09T08:00:00"));
    assert_error(&err, 3, "`start`", &["has no time zone or UTC offset"]);
}

#[test]
fn start_with_a_plain_offset_is_fine() {
    let s = Scenario::parse(&replace("+05:30[Asia/Kolkata]", "+05:30"), ORIGIN).unwrap();
    assert_eq!(s.start.to_string(), "2026-03-09T02:30:00Z");
    let s =
        Scenario::parse(&replace("\"2026-03-09T08:00:00+05:30[Asia/Kolkata]\"", "2026-03-09T08:00:00+05:30"), ORIGIN)
            .unwrap();
    assert_eq!(s.start.to_string(), "2026-03-09T02:30:00Z");
}

#[test]
fn wrong_type() {
    let err = parse_err(&replace("seed = 7", "seed = \"seven\""));
    assert_error(&err, 2, "`seed`", &["expected u64, found string \"seven\""]);
    let err = parse_err(&replace("strategies = 2", "strategies = 2.5"));
    assert_error(&err, 13, "`workload.strategies`", &["expected u32, found floating point `2.5`"]);
}

#[test]
fn unknown_broker_model() {
    let err = parse_err(&replace("model = \"saxo\"", "model = \"kotak\""));
    assert_error(&err, 7, "`broker.model`", &["unknown broker model `kotak`", "kotak-neo, saxo, ibkr"]);
}

#[test]
fn unknown_policy_preset() {
    let err = parse_err(&replace("preset = \"hybrid\"", "preset = \"lazy\""));
    assert_error(&err, 10, "`policy.preset`", &["unknown value `lazy`", "`reactive`", "`hybrid`"]);
}

#[test]
fn refresh_buffer_longer_than_the_token_lifetime() {
    let err = parse_err(&replace("preset = \"hybrid\"\n", "preset = \"hybrid\"\nrefresh_buffer = \"25m\"\n"));
    assert_error(
        &err,
        11,
        "policy.refresh_buffer",
        &["(25m) must be shorter than the token lifetime of the saxo model (20m)"],
    );
}

#[test]
fn a_preset_buffer_longer_than_a_short_token_points_at_the_preset() {
    // Kotak has no refresh hint, so `proactive` refreshes 5 minutes early: too long for a 4-minute token.
    let text = replace("model = \"saxo\"", "model = \"kotak-neo\"\ntoken_lifetime = \"4m\"")
        .replace("\"hybrid\"", "\"proactive\"");
    let err = parse_err(&text);
    assert_error(
        &err,
        11,
        "policy.refresh_buffer",
        &["(5m) must be shorter than the token lifetime", "the preset sets it"],
    );
    assert_eq!(err.key(), Some("policy.refresh_buffer"));
}

#[test]
fn market_close_before_open() {
    let err = parse_err(&replace("open = \"09:15\", close = \"15:30\"", "open = \"15:30\", close = \"09:15\""));
    assert_error(&err, 15, "workload.market_hours.close", &["close (09:15) is not after open (15:30)"]);
}

#[test]
fn unknown_expectation_field() {
    let err = parse_err(&replace("logins = { max = 3 }", "loginz = { max = 3 }"));
    assert_error(&err, 22, "loginz", &["unknown report field `loginz` in [expect]", "did you mean `logins`?"]);
    let err = parse_err(&replace("logins = { max = 3 }", "\"time_in_state.Vaild\" = { max = 3 }"));
    assert_error(&err, 22, "time_in_state.Vaild", &["unknown report field"]);
}

#[test]
fn expectation_of_the_wrong_kind() {
    let err = parse_err(&replace("logins = { max = 3 }", "logins = true"));
    assert_error(&err, 22, "`expect.logins`", &["is a number"]);
    let err = parse_err(&replace("logins = { max = 3 }", "never_dead_token = { max = 0 }"));
    assert_error(&err, 22, "`expect.never_dead_token`", &["is true or false"]);
    let err = parse_err(&replace("logins = { max = 3 }", "logins = { min = 5, max = 3 }"));
    assert_error(&err, 22, "`expect.logins`", &["`min` (5) is above `max` (3)"]);
    let err = parse_err(&replace("logins = { max = 3 }", "logins = { maxx = 3 }"));
    assert_error(&err, 22, "maxx", &["unknown key `maxx` in [expect.logins]", "did you mean `max`?"]);
}

#[test]
fn outage_ending_before_it_starts() {
    let err = parse_err(&format!("{BASE}\n[[broker.outages]]\nfrom = \"+3h\"\nto = \"+2h\"\n"));
    assert_error(&err, 26, "`broker.outages[0].to`", &["the period ends", "before it starts"]);
}

#[test]
fn empty_and_overlapping_outages() {
    let err = parse_err(&format!("{BASE}\n[[broker.outages]]\nfrom = \"+2h\"\nto = \"+2h\"\n"));
    assert_error(&err, 26, "`broker.outages[0].to`", &["the period is empty"]);
    let err = parse_err(&format!("{BASE}\n[[broker.outages]]\nfrom = \"02:00\"\nto = \"02:00\"\n"));
    assert_error(&err, 24, "`broker.outages[0]`", &["the period is empty"]);
    let two =
        "\n[[broker.outages]]\nfrom = \"+1h\"\nto = \"+3h\"\n\n[[broker.outages]]\nfrom = \"+2h\"\nto = \"+4h\"\n";
    let err = parse_err(&format!("{BASE}{two}"));
    assert_error(&err, 28, "`broker.outages[1]`", &["overlaps outage #1"]);
}

#[test]
fn mixed_local_and_absolute_outage_ends() {
    let err = parse_err(&format!("{BASE}\n[[broker.outages]]\nfrom = \"02:00\"\nto = \"+2h\"\n"));
    assert_error(&err, 24, "`broker.outages[0]`", &["both be local times of day, or both instants"]);
}

#[test]
fn end_before_start() {
    let err = parse_err(&replace("duration = \"2d\"", "end = \"2026-03-08T08:00:00+05:30\""));
    assert_error(&err, 4, "`end`", &["is not after `start`"]);
    let err = parse_err(&replace("duration = \"2d\"", "duration = \"2d\"\nend = \"2026-03-10T08:00:00+05:30\""));
    assert_error(&err, 5, "`end`", &["either `duration` or `end`"]);
}

#[test]
fn event_outside_the_run() {
    let err = parse_err(&replace("model = \"saxo\"", "model = \"saxo\"\nsilent_deauths = [\"+1h\", \"+3d\"]"));
    assert_error(&err, 8, "`broker.silent_deauths[1]`", &["is outside the run"]);
}

#[test]
fn missing_keys() {
    let err = parse_err(&replace("seed = 7\n", ""));
    assert_error(&err, 1, "seed", &["missing key `seed` at the top level"]);
    let err = parse_err(&replace("model = \"saxo\"\n", ""));
    assert_error(&err, 6, "model", &["missing key `model` in [broker]"]);
    let err = parse_err(&replace("rate_per_strategy = 0.5\n", ""));
    assert_error(&err, 13, "rate_per_strategy", &["missing key `rate_per_strategy` in [workload]"]);
}

#[test]
fn bad_values_inside_broker_tables() {
    let err = parse_err(&replace(
        "model = \"saxo\"",
        "model = \"saxo\"\nrequest_latency = { min = \"400ms\", max = \"80ms\" }",
    ));
    assert_error(&err, 8, "`broker.request_latency.min`", &["`min` (400ms) is longer than `max` (80ms)"]);
    let err = parse_err(&replace("model = \"saxo\"", "model = \"saxo\"\nerrors = { request = 1.5 }"));
    assert_error(&err, 8, "`broker.errors.request`", &["1.5 is not a probability"]);
    let err = parse_err(&replace("model = \"saxo\"", "model = \"kotak-neo\"\nrefresh_lifetime = \"1h\""));
    assert_error(&err, 8, "`broker.refresh_lifetime`", &["the kotak-neo model has no refresh token"]);
    let err = parse_err(&replace("model = \"saxo\"", "model = \"saxo\"\ndaily_reset = { at = \"25:00\" }"));
    assert_error(&err, 8, "`broker.daily_reset.at`", &["`25:00` is not a time of day"]);
    let err = parse_err(&replace("model = \"saxo\"", "model = \"saxo\"\nwrong_credentials = \"sometimes\""));
    assert_error(&err, 8, "`broker.wrong_credentials`", &["write \"always\""]);
}

#[test]
fn bad_values_in_policy_workload_and_faults() {
    let err =
        parse_err(&replace("preset = \"hybrid\"", "preset = \"hybrid\"\nbackoff = { min = \"10m\", max = \"1m\" }"));
    assert_error(&err, 11, "`backoff.min`", &["in [policy]", "`backoff.min` (10m) must not exceed `backoff.max` (1m)"]);
    assert_eq!(err.key(), Some("policy.backoff.min"));
    let err = parse_err(&replace("preset = \"hybrid\"", "preset = \"hybrid\"\nrefresh_buffer = \"soon\""));
    assert_error(&err, 11, "`policy.refresh_buffer`", &["`soon` is not a duration"]);
    let err = parse_err(&replace("strategies = 2", "strategies = 2\ntrading_days = [\"Mon\", \"Fry\"]"));
    assert_error(&err, 14, "workload.trading_days", &["`Fry` is not a day of the week"]);
    let err = parse_err(&replace("strategies = 2", "strategies = 2\nhosts = [\"a.example\"]"));
    assert_error(&err, 14, "`workload.hosts`", &["only the oauth2 model has per-host tokens"]);
    let err = parse_err(&format!("{BASE}\n[faults]\npanics = [{{ from = \"+1h\", count = 3 }}]\n"));
    assert_error(&err, 25, "faults.panics[0]", &["missing key `every`"]);
    let err = parse_err(&format!("{BASE}\n[faults]\nrestarts = [\"+1h\"]\npanics = [\"sometime\"]\n"));
    assert_error(&err, 26, "`faults.panics", &["\"sometime\" is not a time"]);
    let err = parse_err(&format!("{BASE}\n[faults]\npanics = [\"+1h\", \"+3d\"]\n"));
    assert_error(&err, 25, "`faults.panics[1]`", &["is outside the run"]);
    let err = parse_err(&format!(
        "{BASE}\n[faults]\npanics = [{{ from = \"+1h\", count = 2, every = \"1s\", session = 1 }}]\n"
    ));
    assert_error(&err, 25, "`faults.panics[0].session`", &["session 1 does not exist"]);
    let err = parse_err(&format!("{BASE}\n[faults]\nrestarts = [{{ at = \"+9d\" }}]\n"));
    assert_error(&err, 25, "`faults.restarts[0].at`", &["is outside the run"]);
}

#[test]
fn syntax_errors_name_the_line() {
    let err = parse_err(&replace("[broker]", "[broker"));
    assert!(matches!(err, ScenarioError::Syntax { line: 6, .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("{ORIGIN} line 6, column 8: not valid TOML")), "{err}");
}

#[test]
fn load_names_the_path_and_reads_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, BASE.replace("model = \"saxo\"", "model = \"sax\"")).unwrap();
    let err = Scenario::load(&path).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{} line 7", path.display())), "{err}");
    assert!(err.contains("did you mean `saxo`?"), "{err}");
    let missing = Scenario::load(&dir.path().join("nope.toml")).unwrap_err();
    assert!(matches!(missing, ScenarioError::Read { .. }), "{missing:?}");
}

#[test]
fn no_input_panics() {
    // Truncations and byte flips of a valid file: every one must give Ok or an error, never a panic.
    let text = std::fs::read_to_string(scenarios_dir().join("saxo.toml")).unwrap();
    // And a file with the newer keys: endpoints, scripted requests, an operator, nested bounds.
    let newer = std::fs::read_to_string(scenarios_dir().join("kotak-partial-session.toml")).unwrap()
        + "\n[[workload.at]]\nat = \"11:41:59.900\"\nkind = \"order\"\ncount = 3\n\n[operator]\nresets = [\"+3h\"]\n";
    for cut in (0..newer.len()).step_by(5) {
        if newer.is_char_boundary(cut) {
            let _ = Scenario::parse(&newer[..cut], "cut.toml");
        }
    }
    for i in (0..newer.len()).step_by(3) {
        for replacement in [b'"', b'[', b'=', b'9', b'.', b'{'] {
            let mut mutated = newer.as_bytes().to_vec();
            mutated[i] = replacement;
            if let Ok(s) = String::from_utf8(mutated) {
                let _ = Scenario::parse(&s, "mutated.toml");
            }
        }
    }
    for cut in (0..text.len()).step_by(7) {
        if text.is_char_boundary(cut) {
            let _ = Scenario::parse(&text[..cut], "cut.toml");
        }
    }
    let bytes = text.as_bytes();
    for i in (0..bytes.len()).step_by(5) {
        for replacement in [b'"', b'[', b'=', b'9', b'\n', b'-'] {
            let mut mutated = bytes.to_vec();
            mutated[i] = replacement;
            if let Ok(s) = String::from_utf8(mutated) {
                let _ = Scenario::parse(&s, "mutated.toml");
            }
        }
    }
    for extreme in
        ["duration = \"366d 1h\"", "duration = \"0s\"", "duration = \"99999999999999d\"", "duration = \"1 month\""]
    {
        let err = parse_err(&replace("duration = \"2d\"", extreme));
        assert!(err.to_string().contains("duration"), "{err}");
    }
    let err =
        parse_err(&replace("start = \"2026-03-09T08:00:00+05:30[Asia/Kolkata]\"", "start = \"9999-12-31T23:00:00Z\""));
    assert!(err.to_string().contains("start"), "{err}");
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

#[test]
fn every_shipped_scenario_parses() {
    let files = Scenario::files_in(&scenarios_dir()).unwrap();
    assert!(files.len() >= 15, "{files:?}");
    let mut names = Vec::new();
    for file in &files {
        let s = Scenario::load(file).unwrap_or_else(|e| panic!("{e}"));
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(s.name, stem, "{}: `name` should match the file name", file.display());
        assert!(!s.description.is_empty(), "{}: no description", file.display());
        assert!(!s.expect.is_empty(), "{}: no [expect] bounds", file.display());
        names.push(stem);
    }
    for required in [
        "kotak-neo",
        "openalgo",
        "saxo",
        "ibkr",
        "oauth2",
        "zerodha",
        "login-outage-refresh-window",
        "wrong-password-overnight",
        "rate-limit-429",
        "herd-after-cutoff",
        "silent-deauth-under-load",
        "restart-mid-refresh",
        "panic-loop",
        "expired-refresh-token",
        "dst-change",
        "ibkr-idle-30d",
    ] {
        assert!(names.iter().any(|n| n == required), "missing scenario {required}");
    }
    let all = Scenario::load_dir(&scenarios_dir()).unwrap();
    assert_eq!(all.len(), files.len());
    let loaded: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    assert_eq!(loaded, names, "load_dir loads in file-name order");
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(sorted, files);
}

#[test]
fn the_speed_scenario_has_the_promised_volume() {
    let s = Scenario::load(&scenarios_dir().join("saxo.toml")).unwrap();
    assert_eq!(s.workload.open_windows.len(), 5, "5 trading days");
    let requests = s.workload.expected_requests();
    assert!((1_100_000.0..1_200_000.0).contains(&requests), "{requests}");
    let idle = Scenario::load(&scenarios_dir().join("ibkr-idle-30d.toml")).unwrap();
    assert_eq!(idle.duration, Duration::from_secs(30 * 86_400));
    assert_eq!(idle.workload.strategies, 0);
    assert_eq!(idle.policy.idle_timeout, None);
    assert_eq!(idle.policy.keepalive_interval, Some(Duration::from_secs(60)));
    // Every other scenario stays moderate, so CI replays the directory in seconds.
    for s in Scenario::load_dir(&scenarios_dir()).unwrap() {
        if s.name != "saxo" {
            assert!(s.workload.expected_requests() < 200_000.0, "{}: {}", s.name, s.workload.expected_requests());
        }
    }
}

#[test]
fn local_times_are_placed_on_the_calendar() {
    let dst = Scenario::load(&scenarios_dir().join("dst-change.toml")).unwrap();
    let reset = dst.broker.daily_reset.clone().unwrap();
    // 02:30 does not exist on 2026-03-08 in New York: the reset happens at 03:30 EDT = 07:30 UTC.
    let sunday = "2026-03-08T05:00:00Z".parse::<jiff::Timestamp>().unwrap();
    let next = warden_engine::calendar::next_local_time_after(
        warden_engine::UnixMs::from_timestamp(sunday),
        reset.at,
        &reset.tz,
    );
    assert_eq!(next.to_string(), "2026-03-08T07:30:00Z");
    assert_eq!(dst.policy.daily_cutoff.clone().unwrap().at, reset.at, "the hints carry the reset into the policy");
    let kotak = Scenario::load(&scenarios_dir().join("kotak-neo.toml")).unwrap();
    // 11:42 IST on each of the three trading days, plus the random ones inside market hours.
    let at_1142: Vec<String> =
        kotak.broker.events.iter().map(|e| e.at.to_string()).filter(|t| t.ends_with("T06:12:00Z")).collect();
    assert_eq!(at_1142, ["2026-03-09T06:12:00Z", "2026-03-10T06:12:00Z", "2026-03-11T06:12:00Z"]);
    for e in &kotak.broker.events {
        assert!(kotak.workload.is_open(e.at), "{e:?} outside market hours");
    }
    let overnight = Scenario::load(&scenarios_dir().join("wrong-password-overnight.toml")).unwrap();
    let w =
        overnight.broker.wrong_credentials.iter().map(|w| (w.from.to_string(), w.to.to_string())).collect::<Vec<_>>();
    // The night before the start ends exactly at the start (08:00 IST), so only the first night counts.
    assert_eq!(w, [("2026-03-09T12:30:00Z".to_owned(), "2026-03-10T02:30:00Z".to_owned())]);
    let panics = Scenario::load(&scenarios_dir().join("panic-loop.toml")).unwrap();
    assert_eq!(panics.faults.panics.len(), 4);
    assert_eq!(panics.faults.panics[1].at.as_millis() - panics.faults.panics[0].at.as_millis(), 20_000);
}

#[test]
fn scenarios_are_deterministic_and_give_models() {
    let a = Scenario::load(&scenarios_dir().join("silent-deauth-under-load.toml")).unwrap();
    let b = Scenario::load(&scenarios_dir().join("silent-deauth-under-load.toml")).unwrap();
    assert_eq!(a.broker.events, b.broker.events);
    assert!(a.broker.events.len() >= 2);
    let oauth = Scenario::load(&scenarios_dir().join("oauth2.toml")).unwrap();
    assert_eq!(oauth.workload.sessions, ["fs1.example.net", "fs2.example.net", "fs3.example.net"]);
    assert_eq!(oauth.model(1).label(), "fs2.example.net");
    assert_ne!(oauth.session_seed(0), oauth.session_seed(1));
    let reactive = a.policy_for(warden_engine::Preset::Reactive).unwrap();
    assert_eq!(reactive.refresh_buffer, None);
}

/// The TOML blocks of `docs/scenarios.md`: the complete example parses as is; the section examples parse
/// on top of a minimal scenario.
#[test]
fn the_documented_examples_parse() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/scenarios.md")).unwrap();
    let blocks: Vec<&str> = doc.split("```toml\n").skip(1).filter_map(|b| b.split("```").next()).collect();
    assert!(blocks.len() >= 5, "{}", blocks.len());
    let complete = Scenario::parse(blocks[0], "docs/scenarios.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(complete.name, "kotak-neo");
    let head = "name = \"doc\"\nseed = 1\nstart = \"2026-03-09T08:00:00-04:00[America/New_York]\"\nduration = \"2d\"\n";
    for block in &blocks[1..] {
        let mut text = head.to_owned();
        if !block.contains("[broker]") {
            text.push_str("[broker]\nmodel = \"ibkr\"\n");
        }
        text.push_str(block);
        Scenario::parse(&text, "docs/scenarios.md").unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}

#[test]
fn scripted_requests_at_exact_instants() {
    let text = format!(
        "{BASE}\n[[workload.at]]\nat = \"02:59:59.900\"\nkind = \"quote\"\ncount = 25\n\n[[workload.at]]\nat = \"+1h 250ms\"\nkind = \"quote\"\nsession = 0\n"
    );
    let s = Scenario::parse(&text, ORIGIN).unwrap();
    // 02:59:59.900 IST on each trading day inside the run (Tuesday and Wednesday; Monday's is before the
    // start), and the offset.
    let at: Vec<(String, u32)> = s.workload.scripted.iter().map(|b| (b.at.to_string(), b.count)).collect();
    let want = [("2026-03-09T03:30:00.25Z", 1), ("2026-03-09T21:29:59.9Z", 25), ("2026-03-10T21:29:59.9Z", 25)];
    assert_eq!(at, want.map(|(t, n)| (t.to_owned(), n)));
    assert_eq!(s.workload.scripted[0].session, Some(0));
    let strategies = 2.0 * 0.5 * s.workload.open_time().as_secs_f64();
    assert_eq!(s.workload.expected_requests(), strategies + 51.0);
}

#[test]
fn bad_scripted_requests() {
    let at = |entry: &str| format!("{BASE}\n[[workload.at]]\n{entry}\n");
    let err = parse_err(&at("at = \"+1h\"\nkind = \"qoute\""));
    assert_error(&err, 26, "`workload.at[0].kind`", &["unknown request kind `qoute`", "did you mean `quote`?"]);
    let err = parse_err(&at("at = \"+1h\"\nkind = \"quote\"\ncount = 0"));
    assert_error(&err, 27, "`workload.at[0].count`", &["0 must be between 1 and 100000"]);
    let err = parse_err(&at("at = \"+1h\"\nkind = \"quote\"\nsession = 2"));
    assert_error(&err, 27, "`workload.at[0].session`", &["session 2 does not exist"]);
    let err = parse_err(&at("at = \"02:59:59.9001\"\nkind = \"quote\""));
    assert_error(&err, 25, "`workload.at[0].at`", &["finer than a millisecond"]);
    let err = parse_err(&at("at = \"+1.5ms\"\nkind = \"quote\""));
    assert_error(&err, 25, "`workload.at[0].at`", &["finer than a millisecond"]);
    let err = parse_err(&at("at = \"+9d\"\nkind = \"quote\""));
    assert_error(&err, 25, "`workload.at[0].at`", &["is outside the run"]);
    let err = parse_err(&at("at = \"+1h\""));
    assert_error(&err, 24, "kind", &["missing key `kind` in [workload.at[0]]"]);
    let err = parse_err(&at("at = \"+1h\"\nkind = \"quote\"\ncuont = 3"));
    assert_error(&err, 27, "cuont", &["unknown key `cuont` in [workload.at[0]]", "did you mean `count`?"]);
    let no_mix = BASE
        .replace("[[workload.mix]]\nkind = \"quote\"\nidempotent = true\n", "")
        .replace("strategies = 2\nrate_per_strategy = 0.5\n", "");
    let err = parse_err(&format!("{no_mix}\n[[workload.at]]\nat = \"+1h\"\nkind = \"quote\"\n"));
    assert!(err.to_string().contains("scripted requests name kinds of the request mix"), "{err}");
    let err = parse_err(&replace("kind = \"quote\"", "kind = \"quote.v2\""));
    assert_error(&err, 18, "`workload.mix[0].kind`", &["letters, digits, `_` and `-` only"]);
}

#[test]
fn times_to_the_millisecond_everywhere() {
    let s = Scenario::parse(
        &replace("open = \"09:15\", close = \"15:30\"", "open = \"09:15:00.500\", close = \"15:30\"").replace(
            "start = \"2026-03-09T08:00:00+05:30[Asia/Kolkata]\"",
            "start = \"2026-03-09T08:00:00.250+05:30[Asia/Kolkata]\"",
        ),
        ORIGIN,
    )
    .unwrap();
    assert_eq!(s.start.to_string(), "2026-03-09T02:30:00.25Z");
    assert_eq!(s.workload.open_windows[0].from.to_string(), "2026-03-09T03:45:00.5Z");
    let err = parse_err(&replace("open = \"09:15\"", "open = \"09:15:00.0001\""));
    assert_error(&err, 15, "`workload.market_hours.open`", &["finer than a millisecond"]);
    let err = parse_err(&replace("duration = \"2d\"", "duration = \"2d 1us\""));
    assert_error(&err, 4, "`duration`", &["finer than a millisecond"]);
}

#[test]
fn repeated_faults_within_a_window() {
    let s = Scenario::parse(
        &format!(
            "{BASE}\n[faults]\nrestarts = [{{ from = \"10:00\", to = \"11:00\", every = \"10m\", downtime = \"5s\" }}]\npanics = [{{ from = \"+1h\", to = \"+1h 30s\", every = \"10s\" }}]\n"
        ),
        ORIGIN,
    )
    .unwrap();
    // 10:00 to 11:00 IST on each of the two days the run covers: 10:00, 10:10 … 10:50.
    assert_eq!(s.faults.restarts.len(), 12);
    assert_eq!(s.faults.restarts[1].at.as_millis() - s.faults.restarts[0].at.as_millis(), 600_000);
    assert_eq!(s.faults.restarts[0].downtime, Duration::from_secs(5));
    assert_eq!(s.faults.panics.len(), 3, "+1h, +1h 10s, +1h 20s (to is exclusive)");
    let faults = |entry: &str| format!("{BASE}\n[faults]\n{entry}\n");
    let err =
        parse_err(&faults("restarts = [{ from = \"10:00\", to = \"11:00\", every = \"5s\", downtime = \"5s\" }]"));
    assert_error(&err, 25, "`faults.restarts[0].every`", &["must be longer than the `downtime` (5s)"]);
    let err = parse_err(&faults("restarts = [{ from = \"10:00\", to = \"11:00\" }]"));
    assert_error(&err, 25, "faults.restarts[0]", &["missing key `every`"]);
    let err = parse_err(&faults("restarts = [{ from = \"10:00\", every = \"10m\" }]"));
    assert_error(&err, 25, "faults.restarts[0]", &["missing key `to`"]);
    let err = parse_err(&faults("restarts = [{ at = \"+1h\", from = \"+2h\" }]"));
    assert_error(&err, 25, "`faults.restarts[0].from`", &["either `at`", "not both"]);
    let err = parse_err(&faults("restarts = [{ at = \"+1h\", every = \"10m\" }]"));
    assert_error(&err, 25, "`faults.restarts[0].every`", &["`every` goes with `from`"]);
    let err = parse_err(&faults("restarts = [{ downtime = \"5s\" }]"));
    assert_error(&err, 25, "faults.restarts[0]", &["missing key `at`"]);
    let err = parse_err(&faults("restarts = [{ from = \"10:00\", to = \"+1h\", every = \"10m\" }]"));
    assert_error(&err, 25, "`faults.restarts[0]`", &["both be local times of day, or both instants"]);
    let err = parse_err(&faults("panics = [{ from = \"+1h\", every = \"10s\" }]"));
    assert_error(&err, 25, "faults.panics[0]", &["missing key `count`", "or give `to`"]);
    let err = parse_err(&faults("panics = [{ from = \"+1h\", to = \"+2h\" }]"));
    assert_error(&err, 25, "faults.panics[0]", &["missing key `every`"]);
    let err = parse_err(&faults("restarts = [{ from = \"+1h\", to = \"+2h\", every = \"1ms\" }]"));
    assert_error(&err, 25, "`faults.restarts[0]`", &["more than 10000 restarts"]);
}

#[test]
fn nested_report_fields_in_expect() {
    let expect = |bounds: &str| replace("logins = { max = 3 }", bounds);
    let s = Scenario::parse(
        &expect(
            "logins = { max = 3 }\nfailed_by.timeout = { max = 0 }\n\"invalid_by.needs_human\" = { max = 0 }\n\
             by_kind.quote.failed = { max = 0 }\nevents.cutoff = { per_day = 1 }\nevents.login = { max = 4, per_day = { max = 2 } }\n\
             \"events.cutoff.first_ms\" = { max = 86400000 }\nlogin_attempts = { max = 5 }",
        ),
        ORIGIN,
    )
    .unwrap();
    let names: Vec<(String, String)> = s.expect.iter().map(|e| (e.name.clone(), e.bound.to_string())).collect();
    for (name, bound) in [
        ("failed_by.timeout", "<= 0"),
        ("invalid_by.needs_human", "<= 0"),
        ("by_kind.quote.failed", "<= 0"),
        ("events.cutoff", "per day = 1"),
        ("events.login", "<= 4"),
        ("events.login", "per day <= 2"),
        ("events.cutoff.first_ms", "<= 86400000"),
    ] {
        assert!(names.contains(&(name.to_owned(), bound.to_owned())), "{name} {bound} not in {names:?}");
    }
    let err = parse_err(&expect("failed_by.timout = { max = 0 }"));
    assert_error(
        &err,
        22,
        "failed_by.timout",
        &["unknown report field `failed_by.timout`", "did you mean `failed_by.timeout`?"],
    );
    let err = parse_err(&expect("by_kind.qoute.ok = { max = 0 }"));
    assert_error(&err, 22, "by_kind.qoute", &["unknown report field", "did you mean `by_kind.quote.ok`?"]);
    let err = parse_err(&expect("events.cutof = { per_day = 1 }"));
    assert_error(&err, 22, "events.cutof", &["did you mean `events.cutoff`?"]);
    let err = parse_err(&expect("logins = { per_day = 1 }"));
    assert_error(&err, 22, "`expect.logins.per_day`", &["only an event category"]);
    let err = parse_err(&expect("events.cutoff = { per_day = { maxx = 1 } }"));
    assert_error(&err, 22, "maxx", &["unknown key `maxx`", "did you mean `max`?"]);
    let err = parse_err(&expect("events.cutoff = { per_dya = 1 }"));
    assert_error(&err, 22, "per_dya", &["unknown key `per_dya`", "did you mean `per_day`?"]);
    let err = parse_err(&expect("failed_by.timeout = 0"));
    assert_error(&err, 22, "`expect.failed_by.timeout`", &["a bare number (0) is not a bound"]);
    let err = parse_err(&expect("failed_by.timeout = \"none\""));
    assert_error(&err, 22, "`expect.failed_by.timeout`", &["found a string"]);
    let err = parse_err(&expect("events.cutoff.first = { max = 1 }"));
    assert_error(&err, 22, "events.cutoff.first", &["unknown report field"]);
    let err = parse_err(&expect("never_dead_token = { per_day = 1 }"));
    assert_error(&err, 22, "`expect.never_dead_token`", &["is true or false"]);
    // A run that covers no whole day has no day for a per-day bound to judge.
    let short = replace("duration = \"2d\"", "duration = \"20h\"")
        .replace("logins = { max = 3 }", "events.cutoff = { per_day = 1 }");
    let err = parse_err(&short);
    assert_error(&err, 22, "`expect.events.cutoff.per_day`", &["covers no whole day"]);
}

#[test]
fn broker_behaviours_users_meet() {
    let broker = |keys: &str| replace("model = \"saxo\"", &format!("model = \"saxo\"\n{keys}"));
    // Saxo's order limit is in the preset; `[]` lifts it, a list replaces it.
    let s = Scenario::parse(BASE, ORIGIN).unwrap();
    assert_eq!(s.broker.order_limit.windows.len(), 1);
    let s = Scenario::parse(&broker("order_limits = []"), ORIGIN).unwrap();
    assert!(s.broker.order_limit.windows.is_empty());
    let s = Scenario::parse(
        &broker("[[broker.endpoints]]\nkinds = [\"quote\"]\nlimits = [{ max = 1, per = \"1s\" }]\npenalty = \"1m\""),
        ORIGIN,
    );
    let s = s.unwrap();
    assert_eq!(s.broker.endpoints[0].kinds, [warden_sim::model::KindId(0)]);
    assert_eq!(s.broker.endpoints[0].limit.as_ref().unwrap().penalty, Some(Duration::from_secs(60)));
    let err = parse_err(&broker("order_limits = [{ max = 0, per = \"1s\" }]"));
    assert_error(&err, 8, "`broker.order_limits[0].max`", &["0 must be between 1 and"]);
    let err = parse_err(&broker("order_penalty = \"0s\""));
    assert_error(&err, 8, "`broker.order_penalty`", &["must be longer than zero"]);
    let err = parse_err(&broker("rejection_form = \"100022\""));
    assert_error(&err, 8, "`broker.rejection_form`", &["the saxo model has one rejection form", "Kotak Neo's"]);
    let kotak = |keys: &str| replace("model = \"saxo\"", &format!("model = \"kotak-neo\"\n{keys}"));
    let s = Scenario::parse(&kotak("rejection_form = \"900901\""), ORIGIN).unwrap();
    assert_eq!(s.broker.rejection_form, warden_sim::model::RejectionForm::Kotak900901);
    let err = parse_err(&kotak("rejection_form = \"90091\""));
    assert_error(&err, 8, "`broker.rejection_form`", &["unknown rejection form `90091`", "did you mean `900901`?"]);
    let endpoint = |keys: &str| kotak(&format!("[[broker.endpoints]]\n{keys}"));
    let err = parse_err(&endpoint("kinds = [\"qoute\"]"));
    assert_error(&err, 9, "`broker.endpoints[0].kinds[0]`", &["unknown request kind `qoute`", "did you mean `quote`?"]);
    let err = parse_err(&endpoint("kinds = []"));
    assert_error(&err, 9, "`broker.endpoints[0].kinds`", &["names no request kind"]);
    let err = parse_err(&endpoint("kinds = [\"quote\"]\n[[broker.endpoints]]\nkinds = [\"quote\"]"));
    assert_error(&err, 11, "`broker.endpoints[1].kinds[0]`", &["already served by endpoint #1"]);
    let err = parse_err(&endpoint("kinds = [\"quote\"]\nrejection_form = \"403\""));
    assert_error(&err, 10, "`broker.endpoints[0].rejection_form`", &["unknown rejection form `403`"]);
    let err = parse_err(&endpoint("kinds = [\"quote\"]\nearly_expiries = [\"+9d\"]"));
    assert_error(&err, 10, "`broker.endpoints[0].early_expiries[0]`", &["is outside the run"]);
    let err = parse_err(&endpoint("kinds = [\"quote\"]\npenalty = \"0s\""));
    assert_error(&err, 10, "`broker.endpoints[0].penalty`", &["must be longer than zero"]);
    let err = parse_err(&endpoint("kinds = [\"quote\"]\nlimits = [{ max = 1, per = \"0s\" }]"));
    assert_error(&err, 10, "`broker.endpoints[0].limits[0].per`", &["must be longer than zero"]);
    let err = parse_err(&endpoint("kinds = [\"quote\"]\nlimit = []"));
    assert_error(&err, 10, "limit", &["unknown key `limit` in [broker.endpoints[0]]", "did you mean `limits`?"]);
    // A person's login after the daily expiry needs a daily expiry.
    let err = parse_err(&kotak("login_after_expiry = \"person\""));
    assert_error(&err, 8, "`broker.login_after_expiry`", &["needs a daily expiry", "token_expires_at"]);
    let err = parse_err(&kotak("login_after_expiry = \"human\""));
    assert_error(&err, 8, "`broker.login_after_expiry`", &["unknown value `human`", "`automatic`", "`person`"]);
    let s = Scenario::parse(&kotak("token_expires_at = \"00:00\"\nlogin_after_expiry = \"person\""), ORIGIN).unwrap();
    assert_eq!(s.broker.login_after_expiry, warden_sim::model::LoginAfterExpiry::Person);
    let err = parse_err(&replace("model = \"saxo\"", "model = \"zerodha\"\nlogin_code_lifetime = \"0s\""));
    assert_error(&err, 8, "`broker.login_code_lifetime`", &["must be longer than zero"]);
    let s = Scenario::parse(&replace("model = \"saxo\"", "model = \"angel-one\""), ORIGIN).unwrap();
    assert_eq!(s.policy.daily_cutoff.unwrap().at.to_string(), "00:00", "the midnight expiry is the cut-off");
}

#[test]
fn operator_actions() {
    let text =
        format!("{BASE}\n[operator]\nlogin_codes = [\"09:05\", {{ at = \"+1h\", session = 0 }}]\nresets = [\"+2h\"]\n");
    let s = Scenario::parse(&text, ORIGIN).unwrap();
    // 09:05 IST on Monday and Tuesday (trading days), and the offset.
    assert_eq!(s.operator.login_codes.len(), 3);
    assert_eq!(s.operator.login_codes[0].session, Some(0));
    assert_eq!(s.operator.resets.len(), 1);
    let operator = |keys: &str| format!("{BASE}\n[operator]\n{keys}\n");
    let err = parse_err(&operator("login_codes = [{ at = \"+1h\", session = 3 }]"));
    assert_error(&err, 25, "`operator.login_codes[0].session`", &["session 3 does not exist"]);
    let err = parse_err(&operator("login_codes = [\"whenever\"]"));
    assert_error(&err, 25, "operator.login_codes", &["\"whenever\" is not a time"]);
    let err = parse_err(&operator("resets = [\"+9d\"]"));
    assert_error(&err, 25, "`operator.resets[0]`", &["is outside the run"]);
    let err = parse_err(&operator("login_code = [\"+1h\"]"));
    assert_error(&err, 25, "login_code", &["unknown key `login_code` in [operator]", "did you mean `login_codes`?"]);
}

#[test]
fn infeasible_scenarios_load_with_a_warning() {
    assert!(Scenario::parse(BASE, ORIGIN).unwrap().warnings.is_empty());
    // 2 strategies at 1.5 req/s = 3 req/s against Saxo's 120 per minute (2 req/s).
    let s = Scenario::parse(&replace("rate_per_strategy = 0.5", "rate_per_strategy = 1.5"), ORIGIN).unwrap();
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    let w = &s.warnings[0];
    assert_eq!((w.line, w.key.as_str()), (14, "workload.rate_per_strategy"));
    let text = w.to_string();
    assert!(text.starts_with(&format!("{ORIGIN} line 14")), "{text}");
    assert!(
        text.contains(
            "the offered load (3 req/s per session) exceeds the saxo model's request limit (120 per 1m = 2 req/s)"
        ),
        "{text}"
    );
    // Orders: half of 1 req/s against Saxo's 1 order/s is fine; all of 3 req/s is not.
    let orders = replace("idempotent = true", "idempotent = false")
        .replace("rate_per_strategy = 0.5", "rate_per_strategy = 0.75");
    let s = Scenario::parse(&orders, ORIGIN).unwrap();
    assert!(s.warnings.iter().any(|w| w.problem.contains("order limit (1 per 1s = 1 req/s)")), "{:?}", s.warnings);
    // A 24-hour token with a daily cut-off across New York's fall-back day (25 hours).
    let fall = r#"name = "fall"
seed = 1
start = "2026-10-31T12:00:00-04:00[America/New_York]"
duration = "3d"
[broker]
model = "kotak-neo"
token_lifetime = "24h"
[policy]
daily_cutoff = { at = "03:00", tz = "America/New_York" }
"#;
    let s = Scenario::parse(fall, ORIGIN).unwrap();
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    let w = &s.warnings[0];
    assert_eq!((w.line, w.key.as_str()), (7, "broker.token_lifetime"));
    assert!(w.problem.contains("cannot cover 2026-11-01, which has 25h in America/New_York"), "{}", w.problem);
    assert!(w.problem.contains("expires 1h before the next"), "{}", w.problem);
    // A daily expiry at a local time follows the clock: no warning.
    let daily = fall.replace("token_lifetime = \"24h\"", "token_expires_at = \"03:00\"");
    assert!(Scenario::parse(&daily, ORIGIN).unwrap().warnings.is_empty());
}
