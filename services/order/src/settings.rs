//! What only the Order service reads from the environment, next to the
//! shared [`Config`](checkout_runtime::Config):
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `JAEGER_UI_URL` | base URL of a Jaeger UI; `GET /orders/{id}` then links the order's trace (`<url>/trace/<trace id>`) | unset: no link |
//! | `ORDER_DEADLINE` | a PENDING order older than this is cancelled (`30s`, `2m`, `500ms`) | `30s` |

use checkout_runtime::ConfigError;
use checkout_runtime::config::duration;
use std::time::Duration;

/// Every variable [`Settings::from_lookup`] reads, in the order it reads them.
pub const VARIABLES: &[&str] = &["JAEGER_UI_URL", "ORDER_DEADLINE"];

/// The Order service's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `JAEGER_UI_URL`, without a trailing `/`.
    pub jaeger_ui_url: Option<String>,
    /// `ORDER_DEADLINE`: how long an order may stay PENDING before it is
    /// cancelled for the leg(s) that did not answer.
    pub order_deadline: Duration,
}

impl Settings {
    /// The default `ORDER_DEADLINE`: far above a healthy saga (tens of
    /// milliseconds) and above a short outage waited out by the consumers,
    /// short enough that a customer is not left without an answer.
    pub const DEFAULT_ORDER_DEADLINE: Duration = Duration::from_secs(30);
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            jaeger_ui_url: None,
            order_deadline: Self::DEFAULT_ORDER_DEADLINE,
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
        let jaeger_ui_url = lookup("JAEGER_UI_URL")
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty());
        if let Some(url) = &jaeger_ui_url {
            let scheme = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if scheme.is_none_or(|rest| rest.is_empty() || rest.contains(char::is_whitespace)) {
                return Err(ConfigError {
                    variable: "JAEGER_UI_URL",
                    message: format!("{url:?} is not an http:// or https:// URL"),
                });
            }
        }
        let order_deadline = match lookup("ORDER_DEADLINE").filter(|v| !v.trim().is_empty()) {
            None => Self::DEFAULT_ORDER_DEADLINE,
            Some(raw) => duration("ORDER_DEADLINE", &raw)?,
        };
        Ok(Self {
            jaeger_ui_url,
            order_deadline,
        })
    }

    /// The Jaeger UI page of `trace_id`, when a Jaeger UI is configured.
    pub fn trace_url(&self, trace_id: &str) -> Option<String> {
        self.jaeger_ui_url
            .as_ref()
            .map(|base| format!("{base}/trace/{trace_id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(value: Option<&str>) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| value.filter(|_| name == "JAEGER_UI_URL").map(str::to_owned))
    }

    #[test]
    fn the_order_deadline_defaults_to_30s_and_names_itself_when_bad() {
        let read = |value: &str| {
            Settings::from_lookup(|name| (name == "ORDER_DEADLINE").then(|| value.to_owned()))
        };
        assert_eq!(
            Settings::from_lookup(|_| None)
                .expect("valid")
                .order_deadline,
            Duration::from_secs(30)
        );
        assert_eq!(
            read("2m").expect("valid").order_deadline,
            Duration::from_secs(120)
        );
        for bad in ["soon", "1s,2s", "0s"] {
            assert_eq!(read(bad).expect_err("refused").variable, "ORDER_DEADLINE");
        }
    }

    #[test]
    fn reads_exactly_the_variables_it_declares() {
        checkout_testkit::config::assert_reads_exactly(VARIABLES, |lookup| {
            Settings::from_lookup(lookup)
        });
    }

    #[test]
    fn the_jaeger_link_is_optional_and_checked() {
        assert_eq!(settings(None).expect("valid").trace_url("abc"), None);
        let configured = settings(Some("http://localhost:16686/")).expect("valid");
        assert_eq!(
            configured.trace_url("abc").as_deref(),
            Some("http://localhost:16686/trace/abc")
        );
        for bad in ["localhost:16686", "ftp://x", "http://"] {
            let error = settings(Some(bad)).expect_err("must be refused");
            assert_eq!(error.variable, "JAEGER_UI_URL");
        }
    }
}
