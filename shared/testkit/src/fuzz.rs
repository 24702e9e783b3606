//! A property test of a running service's HTTP surface: malformed,
//! oversized and random requests against every operation its OpenAPI
//! document lists (and some it does not), asserting that every answer is
//! a 2xx, 3xx or a 4xx `application/problem+json` — never a 5xx, never a
//! dropped connection (a panicking handler drops it).
//!
//! The cases are generated and shrunk by proptest; the requests go over
//! real HTTP to the real service. Most carry the service's admin token
//! (when the test passes it), so the cases reach past the admin check
//! into what the admin endpoints validate; the rest carry none or a
//! wrong one, and every 401 must come with a `WWW-Authenticate` challenge. Valid sample bodies are mutated too, so
//! the cases reach past the JSON parser into validation and the database.

use crate::api::{Operation, fetch_document, operations};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a fuzz run saw.
#[derive(Debug, Default, Clone)]
pub struct FuzzReport {
    /// Requests sent.
    pub cases: u64,
    /// Answers with a 5xx status (the assertion is that there are none).
    pub server_errors: u64,
    /// How many answers had each status.
    pub statuses: BTreeMap<u16, u64>,
}

impl std::fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cases, {} 5xx; statuses {:?}",
            self.cases, self.server_errors, self.statuses
        )
    }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    idempotency_key: Option<Vec<u8>>,
    authorization: Option<String>,
    body: Option<Vec<u8>>,
}

/// Field names the document's schemas use, so random JSON hits them.
fn field_names(document: &Value) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    collect_properties(document, &mut names);
    names.into_iter().collect()
}

fn collect_properties(value: &Value, names: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                names.extend(properties.keys().cloned());
            }
            map.values().for_each(|v| collect_properties(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_properties(v, names)),
        _ => {}
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ -~]{0,24}",
        "\\PC{0,24}",
        "[A-Z0-9-]{1,8}",
        Just("KB-001".to_owned()),
        Just("tok_decline".to_owned()),
        Just("a\u{0}b".to_owned()),
        Just("x".repeat(300)),
        Just("0194f0c2-0000-7000-8000-000000000000".to_owned()),
        Just("PENDING".to_owned()),
        Just("USD".to_owned()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..1_100).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        Just(json!(-0.5)),
    ]
}

/// Arbitrary JSON whose object keys are mostly the API's own field names.
fn json_value(names: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        text().prop_map(Value::from),
    ];
    let key = prop_oneof![3 => proptest::sample::select(names), 1 => text()];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid sample with one thing changed: a field dropped, replaced by
/// random JSON, or an unknown one added.
fn mutated(samples: Vec<Value>, names: Vec<String>) -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(samples),
        json_value(names),
        0usize..3,
        any::<proptest::sample::Index>(),
    )
        .prop_map(|(mut sample, replacement, how, index)| {
            if let Value::Object(map) = &mut sample {
                let keys: Vec<String> = map.keys().cloned().collect();
                if !keys.is_empty() {
                    let key = index.get(&keys).clone();
                    match how {
                        0 => {
                            map.remove(&key);
                        }
                        1 => {
                            map.insert(key, replacement);
                        }
                        _ => {
                            map.insert("unexpected".to_owned(), replacement);
                        }
                    }
                }
            }
            sample
        })
}

fn body(samples: Vec<Value>, names: Vec<String>) -> impl Strategy<Value = Option<Vec<u8>>> {
    let samples = if samples.is_empty() {
        vec![json!({})]
    } else {
        samples
    };
    prop_oneof![
        1 => Just(None),
        2 => proptest::sample::select(samples.clone()).prop_map(|v| Some(v.to_string().into_bytes())),
        4 => mutated(samples, names.clone()).prop_map(|v| Some(v.to_string().into_bytes())),
        3 => json_value(names).prop_map(|v| Some(v.to_string().into_bytes())),
        1 => proptest::collection::vec(any::<u8>(), 0..256).prop_map(Some),
        1 => Just(Some(b"{\"customer_id\": \"\xff\xfe\"}".to_vec())),
        1 => Just(Some(b"{\"a\":".to_vec())),
        // Above the 64 KiB limit.
        1 => (65_537usize..140_000).prop_map(|n| Some(format!("[\"{}\"]", "x".repeat(n)).into_bytes())),
    ]
}

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0194f0c2-0000-7000-8000-000000000000".to_owned()),
        "[A-Z0-9-]{1,70}",
        "[a-zA-Z0-9._~-]{0,40}",
        Just("%FF%FE".to_owned()),
        Just("%00".to_owned()),
        Just("..".to_owned()),
        Just("x".repeat(3000)),
        "\\PC{1,12}".prop_map(|s| urlencode(&s)),
    ]
}

fn query(names: Vec<String>) -> impl Strategy<Value = String> {
    let key = if names.is_empty() {
        "[a-z_]{1,10}".boxed()
    } else {
        prop_oneof![3 => proptest::sample::select(names), 1 => "[a-z_]{1,10}"].boxed()
    };
    let value = prop_oneof![
        text().prop_map(|s| urlencode(&s)),
        number().prop_map(|v| v.to_string()),
        Just("%ZZ".to_owned()),
        Just("%FF".to_owned()),
        "[0-9a-f]{32}",
    ];
    proptest::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn case(
    operations: Vec<Operation>,
    samples: Vec<Value>,
    names: Vec<String>,
    authorization: Option<String>,
) -> impl Strategy<Value = Case> {
    let authorization = match authorization {
        Some(right) => prop_oneof![
            4 => Just(Some(right)),
            1 => Just(None),
            1 => "[ -~]{0,40}".prop_map(|token| Some(format!("Bearer {token}"))),
        ]
        .boxed(),
        None => Just(None).boxed(),
    };
    let method = prop_oneof![
        6 => Just(None),
        1 => proptest::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
            .prop_map(Some),
    ];
    let content_type = prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => Just(None),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        1 => Just(Some("application/merge-patch+json".to_owned())),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(Some("application/x-www-form-urlencoded".to_owned())),
        1 => "[ -~]{0,20}".prop_map(Some),
    ];
    let key = prop_oneof![
        3 => Just(None),
        1 => "[!-~]{1,20}".prop_map(|s| Some(s.into_bytes())),
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Some),
    ];
    let query_names: Vec<String> = operations
        .iter()
        .flat_map(|o| o.query.clone())
        .chain(["limit", "cursor", "status", "order_id"].map(str::to_owned))
        .collect();
    (
        proptest::sample::select(operations),
        method,
        path_segment(),
        0usize..8,
        query(query_names),
        content_type,
        key,
        authorization,
        body(samples, names),
    )
        .prop_map(
            |(operation, method, segment, shape, query, content_type, key, authorization, body)| {
                Case {
                    method: method.map_or(operation.method.clone(), str::to_owned),
                    // Mostly the operation's path; sometimes one that is not routed.
                    path: match shape {
                        0 => format!("/{segment}"),
                        1 => format!("{}/{segment}", operation.path_with("x")),
                        _ => operation.path_with(&segment),
                    },
                    query,
                    content_type,
                    idempotency_key: key,
                    authorization,
                    body,
                }
            },
        )
}

/// Cases per run: `FUZZ_CASES`, or 300 (a few seconds per service).
fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

/// Sends random requests (`FUZZ_CASES`, default 300) at the service on
/// `base`, derived from its `/openapi.json`, with `samples` as valid bodies
/// to mutate and `authorization` (`Bearer <ADMIN_TOKEN>`) on most of them.
/// Panics, with proptest's shrunk case, on a 5xx, a 4xx that is not a
/// problem, a 401 without a challenge, or a dropped connection; otherwise
/// prints and returns what it saw.
pub async fn fuzz(base: &str, authorization: Option<&str>, samples: Vec<Value>) -> FuzzReport {
    let cases = cases();
    let client = reqwest::Client::new();
    let document = fetch_document(&client, base).await;
    let operations = operations(&document);
    let names = field_names(&document);
    let report = Arc::new(Mutex::new(FuzzReport::default()));
    let handle = tokio::runtime::Handle::current();
    let target = base.to_owned();
    let authorization = authorization.map(str::to_owned);
    let seen = report.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // Built here: proptest's boxed strategies are not Send.
        let strategy = case(operations, samples, names, authorization);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&strategy, |case| {
                let status = handle.block_on(send(&client, &target, &case))?;
                if let Ok(mut report) = seen.lock() {
                    report.cases += 1;
                    *report.statuses.entry(status).or_default() += 1;
                    if status >= 500 {
                        report.server_errors += 1;
                    }
                }
                Ok(())
            })
            // Only the message travels back.
            .map_err(|failure| failure.to_string())
    })
    .await
    .expect("the fuzz thread");
    let report = report.lock().map(|r| r.clone()).unwrap_or_default();
    println!("fuzz {base}: {report}");
    if let Err(failure) = outcome {
        panic!("fuzz {base}: {failure}\n{report}");
    }
    report
}

async fn send(client: &reqwest::Client, base: &str, case: &Case) -> Result<u16, TestCaseError> {
    let method = reqwest::Method::from_bytes(case.method.as_bytes())
        .map_err(|e| TestCaseError::reject(e.to_string()))?;
    let url = if case.query.is_empty() {
        format!("{base}{}", case.path)
    } else {
        format!("{base}{}?{}", case.path, case.query)
    };
    let mut request = client.request(method, &url);
    if let Some(content_type) = &case.content_type {
        let value = reqwest::header::HeaderValue::from_str(content_type)
            .map_err(|e| TestCaseError::reject(e.to_string()))?;
        request = request.header(reqwest::header::CONTENT_TYPE, value);
    }
    if let Some(key) = &case.idempotency_key {
        // Bytes a header cannot carry never reach the server; skip those.
        if let Ok(value) = reqwest::header::HeaderValue::from_bytes(key) {
            request = request.header("idempotency-key", value);
        }
    }
    if let Some(authorization) = &case.authorization {
        // Bytes a header cannot carry never reach the server; skip those.
        if let Ok(value) = reqwest::header::HeaderValue::from_str(authorization) {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    let what = format!("{} {url}", case.method);
    let response = request
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{what}: no answer (a panic?): {e}")))?;
    let status = response.status().as_u16();
    if status >= 500 {
        let body = response.text().await.unwrap_or_default();
        return Err(TestCaseError::fail(format!("{what}: {status} {body}")));
    }
    if status == 401 && !response.headers().contains_key("www-authenticate") {
        return Err(TestCaseError::fail(format!(
            "{what}: 401 without WWW-Authenticate"
        )));
    }
    if status >= 400 {
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let problem = content_type.as_deref() == Some(checkout_runtime::http::PROBLEM_JSON)
            && body["status"] == status
            && body["title"].is_string()
            && body["type"].is_string();
        if !problem {
            return Err(TestCaseError::fail(format!(
                "{what}: {status} is not a problem: {content_type:?} {body}"
            )));
        }
    }
    Ok(status)
}
