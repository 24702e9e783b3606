//! What the deployment checks (`deploy.rs` for compose, `kubernetes/` for
//! the cluster) share: the services as their code describes them, and URLs
//! taken apart.

use checkout_runtime::ServiceInfo;
use std::collections::BTreeSet;

/// The four services and what each reads beyond the runtime's variables.
pub(crate) const SERVICES: [(ServiceInfo, &[&str]); 4] = [
    (order_service::SERVICE, order_service::settings::VARIABLES),
    (payment_service::SERVICE, &[]),
    (inventory_service::SERVICE, &[]),
    (email_service::SERVICE, email_service::settings::VARIABLES),
];

/// Every variable a service's code reads: the runtime's, the telemetry's,
/// the trace service name, and `own` (the service's own settings).
pub(crate) fn readable(own: &[&'static str]) -> BTreeSet<&'static str> {
    checkout_runtime::config::VARIABLES
        .iter()
        .chain(checkout_telemetry::VARIABLES)
        .chain([&checkout_runtime::config::SERVICE_NAME_VARIABLE])
        .chain(own)
        .copied()
        .collect()
}

/// Every variable the console's code reads: its own settings, the few of
/// the runtime's it uses, the telemetry's and the trace service name.
pub(crate) fn console_readable() -> BTreeSet<&'static str> {
    console_service::settings::VARIABLES
        .iter()
        .chain(console_service::settings::RUNTIME_VARIABLES)
        .chain(checkout_telemetry::VARIABLES)
        .chain([&checkout_runtime::config::SERVICE_NAME_VARIABLE])
        .copied()
        .collect()
}

/// `scheme://[user[:password]@]host[:port][/path]` → (user, password, host, port, path).
pub(crate) fn url_parts(url: &str) -> (String, String, String, Option<u16>, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse().expect("a numeric port"))),
        None => (hostport, None),
    };
    (user.into(), password.into(), host.into(), port, path.into())
}
