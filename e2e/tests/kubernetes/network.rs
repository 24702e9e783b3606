//! NetworkPolicy semantics, enough to evaluate the manifests' policies: a
//! connection from one pod to a port of another is allowed when every side
//! that policies select allows it (ingress on the destination, egress on
//! the source), and a side that no policy of that type selects is open.
//! Selectors are `matchLabels` only (anything else fails the test, so the
//! evaluation never silently ignores a rule), with the namespaces' name
//! labels as Kubernetes sets them.

use crate::manifests::Manifests;
use serde_json::Value;
use std::collections::BTreeMap;

/// The namespace of the checkout.
pub(crate) const NAMESPACE: &str = "checkout";

/// A pod, as the policies see it.
#[derive(Debug, Clone)]
pub(crate) struct Pod {
    /// What the assertions call it.
    pub(crate) name: String,
    /// Its namespace.
    pub(crate) namespace: String,
    /// Its labels.
    pub(crate) labels: BTreeMap<String, String>,
}

impl Pod {
    /// A pod in `namespace` with `labels`.
    pub(crate) fn new(name: &str, namespace: &str, labels: &[(&str, &str)]) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

/// Whether `from` may open a TCP connection to port `port` of `to`.
pub(crate) fn allowed(manifests: &Manifests, from: &Pod, to: &Pod, port: u16) -> bool {
    let policies: Vec<&Value> = manifests
        .of_kind("NetworkPolicy")
        .map(|o| &o.value)
        .collect();
    let side = |pod: &Pod, direction: &str, peer: &Pod| {
        let selecting: Vec<&Value> = policies
            .iter()
            .copied()
            .filter(|p| pod.namespace == NAMESPACE && selects(&p["spec"]["podSelector"], pod))
            .filter(|p| types(p).contains(&direction.to_owned()))
            .collect();
        let (rules, peers) = if direction == "Ingress" {
            ("ingress", "from")
        } else {
            ("egress", "to")
        };
        selecting.is_empty()
            || selecting.iter().any(|policy| {
                policy["spec"][rules]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| rule_allows(rule, peers, peer, port))
            })
    };
    side(to, "Ingress", from) && side(from, "Egress", to)
}

/// A policy's `policyTypes`, defaulted as the API server does.
fn types(policy: &Value) -> Vec<String> {
    match policy["spec"]["policyTypes"].as_array() {
        Some(types) => types
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        None if policy["spec"]["egress"].is_array() => vec!["Ingress".into(), "Egress".into()],
        None => vec!["Ingress".into()],
    }
}

fn rule_allows(rule: &Value, peers: &str, peer: &Pod, port: u16) -> bool {
    let peer_ok = match rule[peers].as_array() {
        None => true,
        Some(list) => list.iter().any(|p| peer_matches(p, peer)),
    };
    let port_ok = match rule["ports"].as_array() {
        None => true,
        Some(ports) => ports.iter().any(|p| {
            assert!(
                p["protocol"].as_str().unwrap_or("TCP") != "SCTP",
                "SCTP is not evaluated"
            );
            let protocol_tcp = p["protocol"].as_str().unwrap_or("TCP") == "TCP";
            let number = p["port"]
                .as_u64()
                .unwrap_or_else(|| panic!("named or missing ports are not evaluated here: {p}"));
            let end = p["endPort"].as_u64().unwrap_or(number);
            protocol_tcp && (number..=end).contains(&u64::from(port))
        }),
    };
    peer_ok && port_ok
}

fn peer_matches(peer: &Value, pod: &Pod) -> bool {
    assert!(peer["ipBlock"].is_null(), "ipBlock peers are not evaluated");
    let namespace_ok = match &peer["namespaceSelector"] {
        Value::Null => pod.namespace == NAMESPACE,
        selector => {
            let labels: BTreeMap<String, String> = [(
                "kubernetes.io/metadata.name".to_owned(),
                pod.namespace.clone(),
            )]
            .into();
            matches(selector, &labels)
        }
    };
    let pod_ok = match &peer["podSelector"] {
        Value::Null => true,
        selector => matches(selector, &pod.labels),
    };
    namespace_ok && pod_ok
}

fn selects(selector: &Value, pod: &Pod) -> bool {
    matches(selector, &pod.labels)
}

fn matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector["matchExpressions"].is_null(),
        "matchExpressions are not evaluated here: {selector}"
    );
    selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| labels.get(key).map(String::as_str) == value.as_str())
}
