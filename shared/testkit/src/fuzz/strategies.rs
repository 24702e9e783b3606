//! The strategies a fuzz case is drawn from: operations and paths near
//! them, methods, headers, query strings, and bodies — random JSON using
//! the document's field names, or valid samples mutated.

use super::Case;
use crate::api::Operation;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Field names the document's schemas use, so random JSON hits them.
pub(super) fn field_names(document: &Value) -> Vec<String> {
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

/// One request against one of `operations` (or near it), with the
/// document's field `names` in random bodies.
pub(super) fn case(
    operations: Vec<Operation>,
    samples: Vec<Value>,
    names: Vec<String>,
    authorization: Option<String>,
) -> impl Strategy<Value = Case> {
    let query_names: Vec<String> = operations
        .iter()
        .flat_map(|o| o.query.clone())
        .chain(["limit", "cursor", "status", "order_id"].map(str::to_owned))
        .collect();
    (
        proptest::sample::select(operations),
        method(),
        path_segment(),
        0usize..8,
        query(query_names),
        content_type(),
        idempotency_key(),
        authorization_header(authorization),
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

/// Mostly the right `Bearer` token (when there is one), sometimes none or
/// a wrong one.
fn authorization_header(right: Option<String>) -> BoxedStrategy<Option<String>> {
    match right {
        Some(right) => prop_oneof![
            4 => Just(Some(right)),
            1 => Just(None),
            1 => "[ -~]{0,40}".prop_map(|token| Some(format!("Bearer {token}"))),
        ]
        .boxed(),
        None => Just(None).boxed(),
    }
}

/// Mostly the operation's own method (`None`), sometimes another.
fn method() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        6 => Just(None),
        1 => proptest::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
            .prop_map(Some),
    ]
}

/// Mostly JSON, sometimes JSON spelled otherwise, another type or garbage.
fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => Just(None),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        1 => Just(Some("application/merge-patch+json".to_owned())),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(Some("application/x-www-form-urlencoded".to_owned())),
        1 => "[ -~]{0,20}".prop_map(Some),
    ]
}

/// An `Idempotency-Key`: none, printable, or any bytes.
fn idempotency_key() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        3 => Just(None),
        1 => "[!-~]{1,20}".prop_map(|s| Some(s.into_bytes())),
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Some),
    ]
}
