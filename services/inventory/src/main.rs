use std::process::ExitCode;

fn main() -> ExitCode {
    checkout_runtime::launch(inventory_service::SERVICE, |config| async {
        inventory_service::build(config)
            .await?
            .run_until_stopped()
            .await
    })
}
