//! The admin side of a service's HTTP surface: which operations its
//! document marks as needing the bearer token, and that the live service
//! refuses them without it (or refuses them all when it has no token).

use super::{
    Operation, SHARED_ADMIN_OPERATIONS, assert_problem_content_type, fetch_document, operations,
};
use serde_json::Value;
use std::collections::BTreeSet;

/// The operations `document` marks with the admin bearer scheme, checking
/// on the way that the scheme is declared as HTTP bearer and that every
/// security requirement names a declared scheme.
pub fn admin_operations(document: &Value) -> BTreeSet<String> {
    let schemes = &document["components"]["securitySchemes"];
    let scheme = &schemes[checkout_runtime::admin::SECURITY_SCHEME];
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
            .any(|r| r.get(checkout_runtime::admin::SECURITY_SCHEME).is_some());
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
/// the `expected` operations (plus [`SHARED_ADMIN_OPERATIONS`]) are
/// documented as needing it, and the live
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

/// Checks an admin list of one order's records, `GET {path}?order_id=`
/// (`/payments`, `/emails`), on the service at `base`: [`check_admin`]
/// with it as the service's one admin operation, then with the token, an
/// order never seen lists `200 []` — an unknown order is an empty answer,
/// not a 404 that would tell a caller which orders exist.
pub async fn check_admin_list(base: &str, authorization: &str, path: &str) {
    check_admin(base, authorization, &[&format!("GET {path}")]).await;
    let url = format!("{base}{path}?order_id={}", uuid::Uuid::now_v7());
    let admitted = reqwest::Client::new()
        .get(&url)
        .header("authorization", authorization)
        .send()
        .await
        .expect("sent");
    assert_eq!(admitted.status(), 200, "GET {path} with the token");
    let listed: Vec<Value> = admitted.json().await.expect("a JSON list");
    assert!(
        listed.is_empty(),
        "GET {path} of an unseen order: {listed:?}"
    );
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
