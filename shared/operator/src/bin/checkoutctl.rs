//! `checkoutctl`: see what failed and why, and send it round again; and
//! provision the broker before the services start. The commands are in
//! [`checkout_operator::cli`]; this is only the process around them.

use checkout_operator::cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::from_env();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("checkoutctl: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    match runtime.block_on(cli.run(&mut out, &mut err)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("checkoutctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
