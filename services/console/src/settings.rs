//! The console's own settings: where the four services answer, the admin
//! token it reads them with (and asks of its own users), and the Jaeger UI
//! its trace links point at. The broker, the listening address and the HTTP
//! limits come from the runtime's [`Config`](checkout_runtime::Config).
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `ORDER_URL` | the Order service's HTTP API | `http://127.0.0.1:8080` |
//! | `PAYMENT_URL` | the Payment service's | `http://127.0.0.1:8081` |
//! | `INVENTORY_URL` | the Inventory service's | `http://127.0.0.1:8082` |
//! | `EMAIL_URL` | the Email service's | `http://127.0.0.1:8083` |
//! | `ADMIN_TOKEN` | the services' bearer token; the console's own password | required |
//! | `JAEGER_UI_URL` | a Jaeger UI; timeline entries link `<url>/trace/<id>` | unset: no links |

use checkout_runtime::ConfigError;
use checkout_runtime::admin::AdminToken;

/// Every variable [`Settings::from_lookup`] reads, in the order it reads them.
pub const VARIABLES: &[&str] = &[
    "ORDER_URL",
    "PAYMENT_URL",
    "INVENTORY_URL",
    "EMAIL_URL",
    "ADMIN_TOKEN",
    "JAEGER_UI_URL",
];

/// The runtime variables the console uses (it has no database, no consumer
/// and no relay, so the rest of [`checkout_runtime::config::VARIABLES`]
/// means nothing to it).
pub const RUNTIME_VARIABLES: &[&str] = &[
    "AMQP_URL",
    "HTTP_ADDR",
    "BROKER_NAMESPACE",
    "SHUTDOWN_TIMEOUT",
    "HTTP_HEADER_TIMEOUT",
    "HTTP_REQUEST_TIMEOUT",
    "HTTP_MAX_CONCURRENT_REQUESTS",
];

/// The console's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URLs of the services, without a trailing `/`.
    pub services: ServiceUrls,
    /// The token the services take and the console asks for.
    pub admin_token: AdminToken,
    /// `JAEGER_UI_URL`, without a trailing `/`.
    pub jaeger_ui_url: Option<String>,
}

/// Where each service's HTTP API answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrls {
    /// `ORDER_URL`.
    pub order: String,
    /// `PAYMENT_URL`.
    pub payment: String,
    /// `INVENTORY_URL`.
    pub inventory: String,
    /// `EMAIL_URL`.
    pub email: String,
}

impl ServiceUrls {
    /// The base URL of the service called `name` (`order`, `payment`, …).
    pub fn of(&self, name: &str) -> Option<&str> {
        match name {
            "order" => Some(&self.order),
            "payment" => Some(&self.payment),
            "inventory" => Some(&self.inventory),
            "email" => Some(&self.email),
            _ => None,
        }
    }
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = |variable: &'static str, port: u16| -> Result<String, ConfigError> {
            match get(variable) {
                None => Ok(format!("http://127.0.0.1:{port}")),
                Some(raw) => http_url(variable, &raw),
            }
        };
        let services = ServiceUrls {
            order: url("ORDER_URL", 8080)?,
            payment: url("PAYMENT_URL", 8081)?,
            inventory: url("INVENTORY_URL", 8082)?,
            email: url("EMAIL_URL", 8083)?,
        };
        let admin_token = match get("ADMIN_TOKEN") {
            None => {
                return Err(ConfigError {
                    variable: "ADMIN_TOKEN",
                    message: "is required: the console reads the services' admin endpoints \
                              with it and asks it of whoever opens the console"
                        .to_owned(),
                });
            }
            Some(raw) => AdminToken::parse(&raw).map_err(|message| ConfigError {
                variable: "ADMIN_TOKEN",
                message,
            })?,
        };
        let jaeger_ui_url = get("JAEGER_UI_URL")
            .map(|raw| http_url("JAEGER_UI_URL", &raw))
            .transpose()?;
        Ok(Self {
            services,
            admin_token,
            jaeger_ui_url,
        })
    }

    /// The Jaeger page of `trace_id`, when `JAEGER_UI_URL` is set.
    pub fn trace_url(&self, trace_id: &str) -> Option<String> {
        let base = self.jaeger_ui_url.as_deref()?;
        let id_ok = trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit());
        id_ok.then(|| format!("{base}/trace/{trace_id}"))
    }
}

/// `raw` as an `http://` or `https://` base URL without a trailing `/`.
fn http_url(variable: &'static str, raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(url.to_owned()),
        _ => Err(ConfigError {
            variable,
            message: format!("{raw:?} is not an http:// or https:// URL"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    const TOKEN: &str = "a-token-of-sixteen-chars";

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Settings::from_lookup(|name| map.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn defaults_point_at_the_local_services() {
        let s = settings(&[("ADMIN_TOKEN", TOKEN)]).expect("valid");
        assert_eq!(s.services.order, "http://127.0.0.1:8080");
        assert_eq!(s.services.email, "http://127.0.0.1:8083");
        assert_eq!(s.jaeger_ui_url, None);
        assert_eq!(s.trace_url(&"a".repeat(32)), None);
    }

    #[test]
    fn the_admin_token_is_required_and_checked() {
        assert_eq!(settings(&[]).expect_err("refused").variable, "ADMIN_TOKEN");
        assert_eq!(
            settings(&[("ADMIN_TOKEN", "short")])
                .expect_err("refused")
                .variable,
            "ADMIN_TOKEN"
        );
    }

    #[test]
    fn urls_must_be_http_and_lose_their_trailing_slash() {
        let s = settings(&[
            ("ADMIN_TOKEN", TOKEN),
            ("PAYMENT_URL", "http://payment:8081/"),
            ("JAEGER_UI_URL", "http://localhost:16686/"),
        ])
        .expect("valid");
        assert_eq!(s.services.payment, "http://payment:8081");
        assert_eq!(
            s.trace_url("0af7651916cd43dd8448eb211c80319c"),
            Some("http://localhost:16686/trace/0af7651916cd43dd8448eb211c80319c".to_owned())
        );
        assert_eq!(s.trace_url("not-a-trace-id"), None);
        for variable in ["ORDER_URL", "JAEGER_UI_URL"] {
            let error =
                settings(&[("ADMIN_TOKEN", TOKEN), (variable, "ftp://x")]).expect_err("refused");
            assert_eq!(error.variable, variable);
        }
    }

    #[test]
    fn variables_lists_exactly_what_is_read() {
        let read = RefCell::new(Vec::new());
        let _ = Settings::from_lookup(|name| {
            read.borrow_mut().push(name.to_owned());
            (name == "ADMIN_TOKEN").then(|| TOKEN.to_owned())
        });
        assert_eq!(read.into_inner(), VARIABLES);
    }
}
