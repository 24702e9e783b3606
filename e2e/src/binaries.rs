//! Where the four service binaries come from: `cargo build`, run once per
//! test process, which tells us the path of every executable it produced.
//!
//! Why build from inside the tests? `cargo test -p e2e` builds this crate
//! and its dependencies, not the services' binaries; a binary left in
//! `target/` by an earlier build may be missing or older than the source.
//! Running `cargo build` first makes the binaries exactly the current source
//! (a no-op taking about a second when nothing changed). Cargo releases its
//! build-directory lock before it runs test executables, so the nested build
//! does not deadlock; it only waits if another cargo (an IDE, a second
//! terminal) is building in the same target directory at the same time.
//!
//! The paths come from cargo's own JSON messages (`compiler-artifact`,
//! `executable`), not from guessing the layout of `target/`, so a custom
//! target or build directory works too.

use crate::Service;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use tokio::sync::OnceCell;

/// The executable of every service, freshly built.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    paths: HashMap<Service, PathBuf>,
    /// The console (`console-service`), which only the browser test starts.
    console: PathBuf,
}

impl Binaries {
    /// The executable of `service`.
    pub(crate) fn path(&self, service: Service) -> anyhow::Result<&Path> {
        self.paths
            .get(&service)
            .map(PathBuf::as_path)
            .ok_or_else(|| anyhow::anyhow!("no executable for {}", service.binary()))
    }

    /// The console's executable.
    pub(crate) fn console(&self) -> &Path {
        &self.console
    }
}

/// The console's binary (and package) name.
const CONSOLE: &str = "console-service";

/// The one build of this test process; every test awaits the same result.
/// (The error is kept as text because `anyhow::Error` cannot be cloned.)
static BUILT: OnceCell<Result<Binaries, String>> = OnceCell::const_new();

/// Builds the service binaries the first time it is called in this process
/// and returns the same paths (or the same error) every time after.
pub(crate) async fn ensure_built() -> anyhow::Result<Binaries> {
    BUILT
        .get_or_init(|| async { build().await.map_err(|e| format!("{e:#}")) })
        .await
        .clone()
        .map_err(anyhow::Error::msg)
}

/// `cargo build --bins -p order-service -p payment-service …` in the
/// workspace, with the profile the tests themselves were built with.
async fn build() -> anyhow::Result<Binaries> {
    // Cargo tells the processes it runs which cargo it is.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow::anyhow!("the e2e crate has no parent directory"))?
        .join("Cargo.toml");

    let mut command = tokio::process::Command::new(&cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--bins")
        .arg("--message-format=json-render-diagnostics");
    for service in Service::ALL {
        command.arg("-p").arg(service.binary());
    }
    command.arg("-p").arg(CONSOLE);
    command.args(profile_args());
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    eprintln!(
        "e2e: building the service binaries: cargo build --bins -p {} -p {CONSOLE}",
        Service::ALL.map(Service::binary).join(" -p ")
    );
    let started = Instant::now();
    let output = command
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("cannot run {cargo:?}: {e}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "`cargo build` of the service binaries failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Cargo's own account ("Compiling order-service …") shows whether the
    // binaries were rebuilt.
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    eprintln!("e2e: service binaries ready in {:.1?}", started.elapsed());
    binaries(&executables(&String::from_utf8_lossy(&output.stdout)))
}

/// The binaries among the `paths` cargo reported, by name.
fn binaries(paths: &HashMap<String, PathBuf>) -> anyhow::Result<Binaries> {
    let path = |name: &str| {
        paths.get(name).cloned().ok_or_else(|| {
            anyhow::anyhow!("`cargo build` succeeded but reported no executable named {name}")
        })
    };
    let mut binaries = HashMap::new();
    for service in Service::ALL {
        binaries.insert(service, path(service.binary())?);
    }
    Ok(Binaries {
        paths: binaries,
        console: path(CONSOLE)?,
    })
}

/// The tests' executable lives in `<dir>/<profile>/deps/`; build the
/// services with the same profile, so `cargo test --release` tests release
/// binaries.
fn profile_args() -> Vec<String> {
    let profile_dir = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        let profile = deps.parent()?;
        Some(profile.file_name()?.to_string_lossy().into_owned())
    });
    match profile_dir.as_deref() {
        None | Some("debug") => Vec::new(),
        Some("release") => vec!["--release".to_owned()],
        Some(other) => vec!["--profile".to_owned(), other.to_owned()],
    }
}

#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    executable: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct Target {
    name: String,
}

/// Binary name → executable, from cargo's JSON messages (one per line).
fn executables(messages: &str) -> HashMap<String, PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|message| message.reason == "compiler-artifact")
        .filter_map(|message| Some((message.target?.name, message.executable?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_executables_from_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"checkout_events","kind":["lib"]},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"order-service","kind":["bin"]},"executable":"/t/debug/order-service"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        let paths = executables(messages);
        assert_eq!(paths.len(), 1);
        assert_eq!(
            paths.get("order-service"),
            Some(&PathBuf::from("/t/debug/order-service"))
        );
    }
}
