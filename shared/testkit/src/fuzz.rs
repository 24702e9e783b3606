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

mod strategies;

use crate::api::{fetch_document, operations};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use strategies::{case, field_names};

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

/// Sends `case` and checks the answer: no 5xx, no dropped connection, a
/// challenge with every 401, a problem with every other 4xx.
async fn send(client: &reqwest::Client, base: &str, case: &Case) -> Result<u16, TestCaseError> {
    let (request, url) = request(client, base, case)?;
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

/// The request of `case`, and its URL. Header values a header cannot
/// carry never reach the server; those headers are left out.
fn request(
    client: &reqwest::Client,
    base: &str,
    case: &Case,
) -> Result<(reqwest::RequestBuilder, String), TestCaseError> {
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
    if let Some(key) = &case.idempotency_key
        && let Ok(value) = reqwest::header::HeaderValue::from_bytes(key)
    {
        request = request.header("idempotency-key", value);
    }
    if let Some(authorization) = &case.authorization
        && let Ok(value) = reqwest::header::HeaderValue::from_str(authorization)
    {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    Ok((request, url))
}
