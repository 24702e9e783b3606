use std::process::ExitCode;

fn main() -> ExitCode {
    // The console's own settings first: a bad one is a configuration
    // error (exit 2), as the runtime's are.
    let settings = match console_service::Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("console-service: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    checkout_runtime::launch(console_service::SERVICE, |config| async {
        console_service::Application::build(config, settings)
            .await?
            .run_until_stopped()
            .await
    })
}
