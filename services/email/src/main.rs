use std::process::ExitCode;

fn main() -> ExitCode {
    checkout_runtime::launch(email_service::SERVICE, |config| async {
        email_service::build(config)
            .await?
            .run_until_stopped()
            .await
    })
}
