//! Checks a running service's OpenAPI document: that it is a well-formed
//! OpenAPI 3.1 document, that it lists exactly the operations the test
//! expects, and that the live router agrees with it — every documented
//! operation is routed, and every other method on a documented path is a
//! 405 whose `Allow` header names exactly the documented methods.
//!
//! Routes can only be added with utoipa-axum's `routes!` (see
//! [`Runtime::with_api`](crate::Runtime::with_api)), which documents them
//! as it routes them; this check is what catches a document and a router
//! that drifted apart all the same.

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
            if let Some(id) = operation["operationId"].as_str() {
                assert!(
                    operation_ids.insert(id.to_owned()),
                    "{name}: operationId {id} repeats"
                );
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
            operations.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                query: parameters
                    .iter()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect(),
                has_body: operation.get("requestBody").is_some(),
            });
        }
    }
    check_references(document, document);
    operations
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

    for operation in &operations {
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
    operations
}

/// Asserts `response` is `application/problem+json`.
pub fn assert_problem_content_type(response: &reqwest::Response, what: &str) {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    assert_eq!(content_type, Some(crate::http::PROBLEM_JSON), "{what}");
}

/// The operations `document` marks with the admin bearer scheme, checking
/// on the way that the scheme is declared as HTTP bearer and that every
/// security requirement names a declared scheme.
pub fn admin_operations(document: &Value) -> BTreeSet<String> {
    let schemes = &document["components"]["securitySchemes"];
    let scheme = &schemes[crate::admin::SECURITY_SCHEME];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    let mut secured = BTreeSet::new();
    for operation in operations(document) {
        let item = &document["paths"][&operation.path][operation.method.to_lowercase()];
        let requirements = item["security"].as_array().cloned().unwrap_or_default();
        for requirement in &requirements {
            let names = requirement.as_object().expect("a security requirement");
            for name in names.keys() {
                assert!(
                    schemes.get(name).is_some(),
                    "{}: security scheme {name} is not declared",
                    operation.name()
                );
            }
        }
        let admin = requirements
            .iter()
            .any(|r| r.get(crate::admin::SECURITY_SCHEME).is_some());
        if admin {
            for status in ["401", "403"] {
                assert!(
                    item["responses"].get(status).is_some(),
                    "{}: a secured operation documents its {status}",
                    operation.name()
                );
            }
            secured.insert(operation.name());
        }
    }
    secured
}

/// One request to `operation` on `base` (path parameters filled with a
/// UUID), with `authorization` as the `Authorization` header when given.
async fn call(
    client: &reqwest::Client,
    base: &str,
    operation: &Operation,
    authorization: Option<&str>,
) -> reqwest::Response {
    let url = format!(
        "{base}{}",
        operation.path_with("0194f0c2-0000-7000-8000-000000000000")
    );
    let method = reqwest::Method::from_bytes(operation.method.as_bytes()).expect("a method");
    let mut request = client.request(method, &url);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.expect("sent")
}

/// Checks who may call what on the service at `base`, which runs with an
/// `ADMIN_TOKEN` that `authorization` (`Bearer <token>`) carries: exactly
/// the `expected` operations (plus [`SHARED_ADMIN_OPERATIONS`]) are documented as needing it, and the live
/// service agrees — each of them answers 401 with `WWW-Authenticate:
/// Bearer` to a request without the token, and to a wrong token (the
/// right length with one character changed, a prefix, a longer one, another
/// scheme), and lets the right token past (the answer is then neither 401
/// nor 403); every other operation never asks for a token.
pub async fn check_admin(base: &str, authorization: &str, expected: &[&str]) {
    let client = reqwest::Client::new();
    let document = fetch_document(&client, base).await;
    let secured = admin_operations(&document);
    let wanted: BTreeSet<String> = expected
        .iter()
        .chain(SHARED_ADMIN_OPERATIONS)
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(secured, wanted, "the operations that need the admin token");

    let token = authorization
        .strip_prefix("Bearer ")
        .expect("authorization is `Bearer <token>`");
    let mut flipped = token.to_owned();
    let last = if flipped.pop() == Some('x') { 'y' } else { 'x' };
    flipped.push(last);
    let wrong = [
        format!("Bearer {flipped}"),
        format!("Bearer {}", &token[..token.len() - 1]),
        format!("Bearer {token}{token}"),
        format!("Basic {token}"),
        "Bearer".to_owned(),
    ];
    for operation in operations(&document) {
        let name = operation.name();
        let anonymous = call(&client, base, &operation, None).await;
        if !secured.contains(&name) {
            let status = anonymous.status().as_u16();
            assert!(
                status != 401 && status != 403,
                "{name} is public but answered {status}"
            );
            continue;
        }
        assert_unauthorized(anonymous, &format!("{name} without a token")).await;
        for attempt in &wrong {
            let response = call(&client, base, &operation, Some(attempt)).await;
            assert_unauthorized(response, &format!("{name} with {attempt:?}")).await;
        }
        let admitted = call(&client, base, &operation, Some(authorization)).await;
        let status = admitted.status().as_u16();
        assert!(
            status != 401 && status != 403 && status < 500,
            "{name} with the right token answered {status}"
        );
    }
}

/// Asserts `response` is a 401 problem with a `Bearer` challenge.
async fn assert_unauthorized(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 401, "{what}");
    assert_problem_content_type(&response, what);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
    let problem: Value = response.json().await.expect("a problem");
    assert_eq!(problem["status"], 401, "{what}: {problem}");
}

/// Checks the service at `base`, started without `ADMIN_TOKEN`: every
/// operation its document marks as needing the token answers 403 — with
/// or without a bearer header — with a problem that says how to switch
/// the endpoints on (it names `ADMIN_TOKEN`). Returns how many there were
/// besides [`SHARED_ADMIN_OPERATIONS`] (which are checked too).
pub async fn check_admin_off(base: &str) -> usize {
    let client = reqwest::Client::new();
    let document = fetch_document(&client, base).await;
    let secured = admin_operations(&document);
    for operation in operations(&document) {
        let name = operation.name();
        if !secured.contains(&name) {
            continue;
        }
        for authorization in [None, Some("Bearer 0123456789abcdef0123")] {
            let response = call(&client, base, &operation, authorization).await;
            let what = format!("{name} ({authorization:?}) with the admin endpoints off");
            assert_eq!(response.status(), 403, "{what}");
            assert_problem_content_type(&response, &what);
            let problem: Value = response.json().await.expect("a problem");
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("ADMIN_TOKEN") && detail.contains("Authorization: Bearer"),
                "{what}: the problem says how to enable them: {problem}"
            );
        }
    }
    for shared in SHARED_ADMIN_OPERATIONS {
        assert!(secured.contains(*shared), "{shared} needs the admin token");
    }
    secured.len() - SHARED_ADMIN_OPERATIONS.len()
}
