//! The whole of a service's `main`, and how its outcome becomes an exit code.

use crate::config::{Config, ConfigError, ServiceInfo};
use crate::http::ErrorChain;
use std::future::Future;
use std::process::ExitCode;

/// The whole of a service's `main`: read the configuration, start
/// telemetry, run `app` on a multi-threaded runtime, flush spans, and turn
/// the outcome into an exit code. A configuration error — the shared
/// variables', or a [`ConfigError`] that `app` returns (a service's own
/// setting), also inside an `anyhow` context — is one line on stderr
/// naming the variable (exit 2); any other failure logs its cause chain
/// (exit 1).
pub fn launch<F, Fut>(service: ServiceInfo, app: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match Config::from_env(&service) {
        Ok(config) => config,
        Err(error) => return configuration_error(&service, &error),
    };
    let service_name = std::env::var(crate::config::SERVICE_NAME_VARIABLE)
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| service.binary.to_owned());
    let telemetry = match checkout_telemetry::init(&service_name) {
        Ok(guard) => guard,
        Err(error) => return configuration_error(&service, &error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!(
                "{}: cannot start the async runtime: {error}",
                service.binary
            );
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(app(config));
    drop(runtime);
    let code = match Ending::of(&outcome) {
        Ending::Clean => ExitCode::SUCCESS,
        Ending::Configuration(error) => configuration_error(&service, error),
        Ending::Failed(error) => {
            let error: &(dyn std::error::Error + 'static) = error.as_ref();
            tracing::error!(error = %ErrorChain(error), "{} failed", service.binary);
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// The start-up line of a configuration error, and exit code 2.
fn configuration_error(service: &ServiceInfo, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{}", configuration_line(service, error));
    ExitCode::from(2)
}

fn configuration_line(service: &ServiceInfo, error: &dyn std::fmt::Display) -> String {
    format!("{}: configuration error: {error}", service.binary)
}

/// How a service's run ended, as far as its exit code cares.
#[derive(Debug)]
enum Ending<'a> {
    Clean,
    /// A setting is unusable: the [`ConfigError`] anywhere in the chain.
    Configuration(&'a ConfigError),
    Failed(&'a anyhow::Error),
}

impl<'a> Ending<'a> {
    fn of(outcome: &'a anyhow::Result<()>) -> Self {
        let Err(error) = outcome else {
            return Ending::Clean;
        };
        // `downcast_ref` sees the error and its contexts; the chain walk
        // also finds one that another error wraps as its source.
        match error
            .downcast_ref::<ConfigError>()
            .or_else(|| error.chain().find_map(|cause| cause.downcast_ref()))
        {
            Some(config) => Ending::Configuration(config),
            None => Ending::Failed(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: ServiceInfo = ServiceInfo {
        name: "probe",
        binary: "probe-service",
        database: "probes",
        http_port: 8099,
    };

    fn bad_setting() -> ConfigError {
        ConfigError {
            variable: "SMTP_URL",
            message: "not a URL".to_owned(),
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot build the mailer")]
    struct Wrapper(#[source] ConfigError);

    #[test]
    fn a_service_setting_error_is_a_configuration_error_naming_the_variable() {
        let outcomes: [anyhow::Result<()>; 3] = [
            Err(bad_setting().into()),
            Err(anyhow::Error::new(bad_setting()).context("building the service")),
            Err(anyhow::Error::new(Wrapper(bad_setting())).context("building the service")),
        ];
        for outcome in &outcomes {
            let Ending::Configuration(error) = Ending::of(outcome) else {
                panic!("{outcome:?} is a configuration error");
            };
            let line = configuration_line(&SERVICE, error);
            assert_eq!(
                line,
                "probe-service: configuration error: SMTP_URL: not a URL"
            );
        }
    }

    #[test]
    fn other_failures_and_success_are_not_configuration_errors() {
        let failed: anyhow::Result<()> = Err(anyhow::anyhow!("the broker went away"));
        assert!(matches!(Ending::of(&failed), Ending::Failed(_)));
        assert!(matches!(Ending::of(&Ok(())), Ending::Clean));
    }
}
