//! The Email service's own settings, next to the runtime's [`Config`]:
//! where mail goes (`SMTP_URL`) and who it is from (`MAIL_FROM`).
//!
//! [`Config`]: checkout_runtime::Config

use checkout_runtime::ConfigError;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use std::time::Duration;

/// Every environment variable [`Settings::from_env`] reads.
pub const VARIABLES: &[&str] = &["SMTP_URL", "MAIL_FROM"];

/// The SMTP client the sender uses.
pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// How long one SMTP conversation may take before it counts as a transient
/// failure (lettre's default is a minute).
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The Email service's own settings: how it sends mail.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SMTP_URL` (`smtp://host:port`, no TLS): where mail is sent. Unset,
    /// the service only records notifications.
    pub transport: Option<Transport>,
    /// `MAIL_FROM`: the sender of every mail (default
    /// `Checkout <orders@checkout.example>`).
    pub from: Mailbox,
    /// How long the sender sleeps without a notification before it looks anyway.
    pub poll_interval: Duration,
    /// The pause after the first transient failure; it doubles per attempt,
    /// up to [`Settings::max_retry_delay`].
    pub retry_delay: Duration,
    /// The longest pause between two attempts.
    pub max_retry_delay: Duration,
    /// Attempts before a mail that keeps failing transiently is given up.
    pub max_attempts: i32,
}

impl Settings {
    /// Reads `SMTP_URL` and `MAIL_FROM` from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let transport = get("SMTP_URL").map(|url| transport(&url)).transpose()?;
        let from = match get("MAIL_FROM") {
            Some(raw) => raw.trim().parse().map_err(|e| ConfigError {
                variable: "MAIL_FROM",
                message: format!("not a mail address: {e}"),
            })?,
            None => Mailbox::new(
                Some("Checkout".to_owned()),
                "orders@checkout.example".parse().map_err(|e| ConfigError {
                    variable: "MAIL_FROM",
                    message: format!("the default is not an address: {e}"),
                })?,
            ),
        };
        // Retries: 2 s doubling to 5 min, 12 attempts — about half an hour
        // of a mail server being down before a mail is given up.
        Ok(Self {
            transport,
            from,
            poll_interval: Duration::from_secs(1),
            retry_delay: Duration::from_secs(2),
            max_retry_delay: Duration::from_secs(300),
            max_attempts: 12,
        })
    }
}

/// The SMTP client for `url`: `smtp://host[:port]` (port 25 by default).
/// Plain SMTP only: this build has no TLS (like the broker and database
/// connections), and so no credentials either, which would travel in clear.
pub fn transport(url: &str) -> Result<Transport, ConfigError> {
    let invalid = |message: String| ConfigError {
        variable: "SMTP_URL",
        message,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("cannot parse {url:?}: {e}")))?;
    if parsed.scheme() != "smtp" || parsed.query().is_some() {
        return Err(invalid(format!(
            "{url:?}: only smtp://host[:port] is supported (no TLS in this build)"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(format!(
            "{url:?}: credentials are not supported without TLS"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| invalid(format!("{url:?} names no host")))?;
    Ok(Transport::builder_dangerous(host)
        .port(parsed.port().unwrap_or(25))
        .timeout(Some(SMTP_TIMEOUT))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        Settings::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn reads_exactly_the_variables_it_declares() {
        checkout_testkit::config::assert_reads_exactly(VARIABLES, |lookup| {
            Settings::from_lookup(lookup)
        });
    }

    #[test]
    fn without_smtp_url_mail_is_only_recorded() {
        let config = config(&[]).expect("defaults are valid");
        assert!(config.transport.is_none());
        assert_eq!(
            config.from.to_string(),
            "Checkout <orders@checkout.example>"
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (variable, value) in [
            ("SMTP_URL", "mailpit:1025"),
            ("SMTP_URL", "smtps://mail.example"),
            ("SMTP_URL", "smtp://user:secret@mail.example"),
            ("MAIL_FROM", "not an address"),
        ] {
            let error = config(&[(variable, value)]).expect_err("must be refused");
            assert_eq!(error.variable, variable, "{value}");
        }
    }

    #[test]
    fn plain_smtp_is_accepted() {
        let config = config(&[("SMTP_URL", "smtp://mailpit:1025")]).expect("valid");
        assert!(config.transport.is_some());
    }
}
