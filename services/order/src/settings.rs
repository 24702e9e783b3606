//! What only the Order service reads from the environment, next to the
//! shared [`Config`](checkout_runtime::Config):
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `JAEGER_UI_URL` | base URL of a Jaeger UI; `GET /orders/{id}` then links the order's trace (`<url>/trace/<trace id>`) | unset: no link |

use checkout_runtime::ConfigError;

/// The Order service's own settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `JAEGER_UI_URL`, without a trailing `/`.
    pub jaeger_ui_url: Option<String>,
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
        Ok(Self { jaeger_ui_url })
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
        Settings::from_lookup(|_| value.map(str::to_owned))
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
