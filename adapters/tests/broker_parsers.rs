//! Property tests of every adapter's response parsing: random bytes, truncated JSON and wrong types
//! (10,000 cases each) never panic and give a clear error — one that names the field at fault and never
//! echoes a value from the body.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use warden_adapters::broker::http::{Endpoint, RawResponse, is_success};
use warden_adapters::broker::json::{self, WireError};
use warden_adapters::broker::{ibkr, kite, kotak, oauth2, saxo};
use warden_engine::{BrokerError, UnixMs};

const LIMIT: usize = 10 * 1024 * 1024;
const NOW: UnixMs = UnixMs::from_millis(1_773_050_400_000);

/// A parser of a JSON answer, reduced to "did it work, and if not what did it say".
type Parser = fn(&Value) -> Result<(), WireError>;
/// An error reader of an answer.
type Reader = fn(&Endpoint, &RawResponse, UnixMs) -> Option<BrokerError>;

struct Adapter {
    name: &'static str,
    parsers: &'static [(Parser, &'static str)],
    reader: Reader,
}

fn oauth2_token(v: &Value) -> Result<(), WireError> {
    oauth2::parse_token_response(v).map(drop)
}
fn ibkr_lst(v: &Value) -> Result<(), WireError> {
    ibkr::parse_lst_answer(v).map(drop)
}
fn ibkr_tickle(v: &Value) -> Result<(), WireError> {
    ibkr::parse_tickle(v).map(drop)
}
fn ibkr_status(v: &Value) -> Result<(), WireError> {
    ibkr::parse_auth_status(v).map(drop)
}
fn kotak_view(v: &Value) -> Result<(), WireError> {
    kotak::parse_view_session(v).map(drop)
}
fn kotak_trade(v: &Value) -> Result<(), WireError> {
    kotak::parse_trade_session(v).map(drop)
}
fn kite_session(v: &Value) -> Result<(), WireError> {
    kite::parse_session(v).map(drop)
}

/// Each adapter's parsers with a valid sample answer.
const ADAPTERS: &[Adapter] = &[
    Adapter {
        name: "saxo",
        parsers: &[(
            oauth2_token,
            r#"{"access_token":"SAMPLE-AT","token_type":"Bearer","expires_in":1200,"refresh_token":"SAMPLE-RT","refresh_token_expires_in":3600}"#,
        )],
        reader: saxo::read_error,
    },
    Adapter {
        name: "oauth2",
        parsers: &[(
            oauth2_token,
            r#"{"access_token":"SAMPLE-AT","token_type":"bearer","expires_in":"3600","scope":"a b"}"#,
        )],
        reader: oauth2::token_error,
    },
    Adapter {
        name: "ibkr",
        parsers: &[
            (
                ibkr_lst,
                r#"{"diffie_hellman_response":"0a1b2c","live_session_token_signature":"ff00aa","live_session_token_expiration":1700000000000}"#,
            ),
            (
                ibkr_tickle,
                r#"{"session":"SAMPLE-COOKIE","ssoExpires":445000,"collission":false,"iserver":{"authStatus":{"authenticated":true,"competing":false,"connected":true,"message":""}}}"#,
            ),
            (ibkr_status, r#"{"authenticated":true,"competing":false,"connected":true,"message":""}"#),
        ],
        reader: ibkr::read_error,
    },
    Adapter {
        name: "kotak",
        parsers: &[
            (kotak_view, r#"{"data":{"token":"SAMPLE-VIEW","sid":"SAMPLE-SID","rid":"r"}}"#),
            (
                kotak_trade,
                r#"{"data":{"token":"SAMPLE-TRADE","sid":"SAMPLE-SID","baseUrl":"https://e21.example/","hsServerId":"7"}}"#,
            ),
        ],
        reader: kotak::read_error,
    },
    Adapter {
        name: "kite",
        parsers: &[(kite_session, r#"{"status":"success","data":{"access_token":"SAMPLE-KITE","user_id":"AB1234"}}"#)],
        reader: kite::read_error,
    },
];

fn endpoint(name: &'static str) -> Endpoint {
    let url = reqwest::Url::parse("https://broker.example/api/call").unwrap();
    Endpoint::new(name, reqwest::Method::POST, &url, &[])
}

/// Runs every parser and the error reader of `adapter` on `body` with `status`: none may panic, every
/// error must say something, and an error status must be read as an error naming the endpoint.
fn exercise(adapter: &Adapter, status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    match json::parse(body, LIMIT) {
        Ok(value) => {
            for (parser, _) in adapter.parsers {
                if let Err(e) = parser(&value) {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    let raw = RawResponse::new(status, body.to_vec());
    let read = (adapter.reader)(&endpoint(adapter.name), &raw, NOW);
    if !is_success(status) {
        let error =
            read.ok_or_else(|| TestCaseError::fail(format!("{}: HTTP {status} read as a success", adapter.name)))?;
        prop_assert_eq!(error.status, Some(status));
        prop_assert!(
            error.message.starts_with(&format!("{} POST /api/call: HTTP {status}", adapter.name)),
            "{}",
            error.message
        );
    }
    Ok(())
}

/// Every path in a JSON value (objects' keys, arrays' indices), the root excluded.
fn paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(k.clone());
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(i.to_string());
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'v>(value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, key| match v {
        Value::Object(map) => map.get_mut(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

/// Random JSON whose strings all start with `LEAK-`: an error message must never show one.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "[a-z0-9]{0,12}".prop_map(|s| Value::String(format!("LEAK-{s}"))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    // Every case runs against every adapter (and every sample answer), so each adapter's parsing sees
    // 10,000 cases of each kind.

    #[test]
    fn random_bytes_never_panic(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..512)) {
        for adapter in ADAPTERS {
            exercise(adapter, status, &body)?;
        }
    }

    #[test]
    fn random_json_never_panics(status in 100u16..600, value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        for adapter in ADAPTERS {
            exercise(adapter, status, &body)?;
            for (parser, _) in adapter.parsers {
                if let Err(e) = parser(&value) {
                    prop_assert!(!e.to_string().contains("LEAK"), "{e}");
                }
            }
        }
    }

    #[test]
    fn truncated_json_is_a_clear_error(cut in any::<Index>(), status in 100u16..600) {
        for adapter in ADAPTERS {
            for (parser, text) in adapter.parsers {
                prop_assert!(parser(&json::parse(text.as_bytes(), LIMIT).unwrap()).is_ok(), "{} sample is valid", adapter.name);
                let truncated = &text.as_bytes()[..cut.index(text.len())];
                let message = json::parse(truncated, LIMIT).unwrap_err().to_string();
                prop_assert!(message.contains("not valid JSON") || message.contains("empty"), "{message}");
                prop_assert!(!message.contains("SAMPLE"), "{message}");
                exercise(adapter, status, truncated)?;
            }
        }
    }

    #[test]
    fn wrong_types_name_the_field(at in any::<Index>(), replacement in json_value()) {
        for adapter in ADAPTERS {
            for (parser, text) in adapter.parsers {
                let mut value: Value = serde_json::from_str(text).unwrap();
                let mut all = Vec::new();
                paths(&value, &mut Vec::new(), &mut all);
                let path = &all[at.index(all.len())];
                let slot = at_mut(&mut value, path).unwrap();
                if json::type_name(slot) == json::type_name(&replacement) {
                    continue;
                }
                *slot = replacement.clone();
                if let Err(e) = parser(&value) {
                    let message = e.to_string();
                    prop_assert!(message.contains(&format!("`{}`", path.join("."))),
                        "{}: changing `{}` gave: {message}", adapter.name, path.join("."));
                    prop_assert!(!message.contains("LEAK") && !message.contains("SAMPLE"), "{message}");
                }
            }
        }
    }
}

#[test]
fn oversized_bodies_are_refused_before_parsing() {
    let body = vec![b'{'; LIMIT + 1];
    assert!(matches!(json::parse(&body, LIMIT), Err(WireError::TooLarge { .. })));
    let body = vec![b' '; LIMIT];
    assert_eq!(json::parse(&body, LIMIT), Err(WireError::Empty), "at the limit it is read (and found empty)");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let error = json::parse(deep.as_bytes(), LIMIT).unwrap_err();
    assert!(error.to_string().contains("recursion limit"), "{error}");
}
