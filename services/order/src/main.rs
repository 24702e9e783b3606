use std::process::ExitCode;

fn main() -> ExitCode {
    checkout_runtime::launch(order_service::SERVICE, |config| async {
        order_service::build(config)
            .await?
            .run_until_stopped()
            .await
    })
}
