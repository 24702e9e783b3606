use std::process::ExitCode;

fn main() -> ExitCode {
    checkout_runtime::launch(payment_service::SERVICE, |config| async {
        payment_service::build(config)
            .await?
            .run_until_stopped()
            .await
    })
}
