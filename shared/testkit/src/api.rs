//! Checks a running service's OpenAPI document: that it is a well-formed
//! OpenAPI 3.1 document, that it lists exactly the operations the test
//! expects, and that the live router agrees with it — every documented
//! operation is routed, and every other method on a documented path is a
//! 405 whose `Allow` header names exactly the documented methods.
//!
//! Routes can only be added with utoipa-axum's `routes!` (see
//! [`Runtime::with_api`](checkout_runtime::Runtime::with_api)), which documents them
//! as it routes them; this check is what catches a document and a router
//! that drifted apart all the same.

mod admin;

pub use admin::{admin_operations, check_admin, check_admin_list, check_admin_off};

use serde_json::Value;
use std::collections::BTreeSet;

/// The operations every service has besides its own.
pub const SHARED_OPERATIONS: &[&str] = &[
    "GET /health/live",
    "GET /health/ready",
    "GET /openapi.json",
    "GET /docs",
    "GET /faults",
    "PUT /faults",
];

/// The operations every service has that need the admin token.
pub const SHARED_ADMIN_OPERATIONS: &[&str] = &["GET /faults", "PUT /faults"];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One documented operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Upper-case HTTP method.
    pub method: String,
    /// The path template, e.g. `/orders/{id}`.
    pub path: String,
    /// Names of its query parameters.
    pub query: Vec<String>,
    /// Whether it takes a request body.
    pub has_body: bool,
}

impl Operation {
    /// `GET /orders/{id}`.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path with every `{parameter}` replaced by `value`.
    pub fn path_with(&self, value: &str) -> String {
        self.path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') && segment.ends_with('}') {
                    value
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Fetches `/openapi.json` from `base` (e.g. `http://127.0.0.1:4242`).
pub async fn fetch_document(client: &reqwest::Client, base: &str) -> Value {
    let response = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200, "GET /openapi.json");
    response.json().await.expect("the document is JSON")
}

/// The operations of `document`, checking its structure on the way.
pub fn operations(document: &Value) -> Vec<Operation> {
    assert_eq!(document["openapi"], "3.1.0", "an OpenAPI 3.1 document");
    assert!(document["info"]["title"].is_string(), "info.title");
    assert!(document["info"]["version"].is_string(), "info.version");
    let paths = document["paths"].as_object().expect("paths is an object");
    let mut operations = Vec::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}: paths start with /");
        let item = item.as_object().expect("a path item is an object");
        for (method, operation) in item.iter().filter(|(k, _)| METHODS.contains(&k.as_str())) {
            let operation = checked_operation(path, method, operation);
            if let Some(id) = operation_id(item, method) {
                assert!(
                    operation_ids.insert(id.to_owned()),
                    "{}: operationId {id} repeats",
                    operation.name()
                );
            }
            operations.push(operation);
        }
    }
    check_references(document, document);
    operations
}

/// The `operationId` of `item`'s `method`, if it has one.
fn operation_id<'a>(item: &'a serde_json::Map<String, Value>, method: &str) -> Option<&'a str> {
    item.get(method)?["operationId"].as_str()
}

/// One operation of the document, its responses and parameters checked.
fn checked_operation(path: &str, method: &str, operation: &Value) -> Operation {
    let name = format!("{} {path}", method.to_uppercase());
    let responses = operation["responses"]
        .as_object()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| panic!("{name}: no responses"));
    for (status, response) in responses {
        let valid_status = status == "default"
            || (status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()));
        assert!(valid_status, "{name}: response key {status}");
        let described = response["description"].is_string() || response["$ref"].is_string();
        assert!(described, "{name} {status}: a response needs a description");
    }
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for template in path.split('/').filter(|s| s.starts_with('{')) {
        let param = template.trim_matches(|c| c == '{' || c == '}');
        let declared = parameters
            .iter()
            .any(|p| p["name"] == param && p["in"] == "path" && p["required"] == true);
        assert!(
            declared,
            "{name}: path parameter {param} is not declared as required"
        );
    }
    for parameter in &parameters {
        let location = parameter["in"].as_str().unwrap_or_default();
        assert!(
            ["path", "query", "header", "cookie"].contains(&location),
            "{name}: parameter in {location:?}"
        );
    }
    Operation {
        method: method.to_uppercase(),
        path: path.to_owned(),
        query: parameters
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect(),
        has_body: operation.get("requestBody").is_some(),
    }
}

/// Every `$ref` points at something inside the document.
fn check_references(document: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let pointer = reference
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("{reference}: only local references"));
                assert!(
                    document.pointer(pointer).is_some(),
                    "{reference} resolves to nothing"
                );
            }
            map.values().for_each(|v| check_references(document, v));
        }
        Value::Array(items) => items.iter().for_each(|v| check_references(document, v)),
        _ => {}
    }
}

/// A service's whole HTTP surface at `base`: its document lists exactly
/// `expected` (see [`check_openapi`]), and random input to every operation,
/// with the admin `authorization` and `samples` of valid bodies to mutate,
/// gets no 5xx (see [`crate::fuzz::fuzz`]).
pub async fn check_surface(
    base: &str,
    authorization: &str,
    expected: &[&str],
    samples: Vec<Value>,
) {
    check_openapi(base, expected).await;
    let report = crate::fuzz::fuzz(base, Some(authorization), samples).await;
    assert_eq!(report.server_errors, 0, "{report:?}");
}

/// Checks the service at `base`: its document is valid, documents exactly
/// `expected` plus [`SHARED_OPERATIONS`] (as `"METHOD /path"`), and the live
/// router agrees with it. Returns the operations.
pub async fn check_openapi(base: &str, expected: &[&str]) -> Vec<Operation> {
    let client = reqwest::Client::new();
    let document = fetch_document(&client, base).await;
    let operations = operations(&document);
    let documented: BTreeSet<String> = operations.iter().map(Operation::name).collect();
    let wanted: BTreeSet<String> = expected
        .iter()
        .chain(SHARED_OPERATIONS)
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(documented, wanted, "the documented operations");

    check_routed(&client, base, &operations).await;
    check_not_allowed(&client, base, &operations).await;
    operations
}

/// Every documented operation is routed (neither a 405 nor the no-such-route 404).
async fn check_routed(client: &reqwest::Client, base: &str, operations: &[Operation]) {
    for operation in operations {
        let url = format!(
            "{base}{}",
            operation.path_with("0194f0c2-0000-7000-8000-000000000000")
        );
        let method = reqwest::Method::from_bytes(operation.method.as_bytes()).expect("a method");
        let response = client.request(method, &url).send().await.expect("sent");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status != 405 && body["type"] != "/problems/no-such-route",
            "{}: documented but not routed ({status} {body})",
            operation.name()
        );
    }
}

/// Every other method on a documented path is a 405 problem whose `Allow`
/// names exactly the documented methods.
async fn check_not_allowed(client: &reqwest::Client, base: &str, operations: &[Operation]) {
    let paths: BTreeSet<&str> = operations.iter().map(|o| o.path.as_str()).collect();
    for path in paths {
        let allowed: BTreeSet<String> = operations
            .iter()
            .filter(|o| o.path == path)
            .map(|o| o.method.clone())
            .collect();
        let url = format!("{base}{}", path.replace(['{', '}'], ""));
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if allowed.contains(method) {
                continue;
            }
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
            let response = client
                .request(method.clone(), &url)
                .send()
                .await
                .expect("sent");
            assert_eq!(
                response.status(),
                405,
                "{method} {path}: routed but not documented"
            );
            assert_problem_content_type(&response, &format!("{method} {path}"));
            let allow: BTreeSet<String> = response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty() && m != "HEAD")
                .collect();
            assert_eq!(
                allow, allowed,
                "{method} {path}: Allow lists the documented methods"
            );
        }
    }
}

/// Asserts `response` is `application/problem+json`.
pub fn assert_problem_content_type(response: &reqwest::Response, what: &str) {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    assert_eq!(
        content_type,
        Some(checkout_runtime::http::PROBLEM_JSON),
        "{what}"
    );
}
