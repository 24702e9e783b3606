//! The console served for real, against a real broker: a namespace of its
//! own provisioned as a deployment is (definitions imported with
//! `rabbitmqctl`, the console's own narrowed user among them), the console
//! on port 0 as that user, and the services' URLs pointing at a port where
//! nothing answers — so every page must show the services as down rather
//! than fail. The pages with live services are the e2e browser test's.

mod access;
mod dead_letters;
mod pages;

use checkout_events::SUBSCRIPTIONS;
use checkout_messaging::access::{self as broker_access, BrokerUser};
use checkout_messaging::{RetryPolicy, Topology};
use console_service::{Application, SERVICE, Settings};
use lapin::types::ShortString;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

const ADMIN_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const TOKEN: &str = "console-integration-token";

/// A console on port 0 over a namespace of its own.
struct Harness {
    topology: Topology,
    console_password: String,
    base: String,
    http: reqwest::Client,
    stop: tokio_util::sync::CancellationToken,
    /// Cleaned up by [`Harness::finish`]; otherwise `Drop` does it.
    finished: bool,
}

impl Harness {
    async fn start() -> Harness {
        let topology = Topology::new(format!("test-console-{}", Uuid::now_v7().simple()))
            .expect("a namespace");
        let console_password = Uuid::now_v7().simple().to_string();
        let retries = RetryPolicy::new(vec![Duration::from_millis(100)]);
        // Every user of a deployment, with throwaway passwords; the console's is ours.
        let users: Vec<(BrokerUser, String)> = broker_access::deployment_users(&topology, None)
            .into_iter()
            .map(|(user, _)| (user, console_password.clone()))
            .collect();
        let definitions =
            broker_access::definitions(&topology.plan(SUBSCRIPTIONS, &retries), &users);
        rabbitmqctl(&["import_definitions"], Some(&definitions.to_string())).await;
        let admin = checkout_messaging::connect(ADMIN_URL, "console test")
            .await
            .expect("broker");
        topology
            .provision(&admin, SUBSCRIPTIONS, &retries)
            .await
            .expect("provision");
        let _ = admin.close(200, ShortString::from("done")).await;

        let user = broker_access::console_user(&topology).name;
        let env: HashMap<&str, String> = HashMap::from([
            (
                "AMQP_URL",
                format!("amqp://{user}:{console_password}@127.0.0.1:5672/%2f"),
            ),
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("BROKER_NAMESPACE", topology.namespace().to_owned()),
            ("ADMIN_TOKEN", TOKEN.to_owned()),
            // Nothing listens on port 9: every service is "down".
            ("ORDER_URL", "http://127.0.0.1:9".to_owned()),
            ("PAYMENT_URL", "http://127.0.0.1:9".to_owned()),
            ("INVENTORY_URL", "http://127.0.0.1:9".to_owned()),
            ("EMAIL_URL", "http://127.0.0.1:9".to_owned()),
            ("JAEGER_UI_URL", "http://jaeger.test:16686".to_owned()),
        ]);
        let lookup = |name: &str| env.get(name).cloned();
        let config = checkout_runtime::Config::from_lookup(&SERVICE, lookup).expect("config");
        let settings = Settings::from_lookup(lookup).expect("settings");
        let app = Application::build(config, settings)
            .await
            .expect("the console builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let stop = app.shutdown_token();
        tokio::spawn(app.run_until_stopped());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a client");
        Harness {
            topology,
            console_password,
            base,
            http,
            stop,
            finished: false,
        }
    }

    /// `GET path` as the admin (basic auth, as a browser sends it).
    async fn get(&self, path: &str) -> (reqwest::StatusCode, String) {
        let response = self.admin_get(path).await;
        let status = response.status();
        (status, response.text().await.expect("a body"))
    }

    async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .basic_auth("admin", Some(TOKEN))
            .send()
            .await
            .expect("the console answers")
    }

    /// `POST path` with a form, as the admin; answers status and `Location`.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (reqwest::StatusCode, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth("admin", Some(TOKEN))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("the console answers");
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.expect("a body");
        (status, location.unwrap_or(text))
    }

    /// The form token in a page the console rendered.
    async fn csrf(&self) -> String {
        let (_, page) = self.get("/dead-letters/payment").await;
        let at = page
            .find("name=\"csrf\" value=\"")
            .expect("a form with the token")
            + 19;
        page[at..at + 32].to_owned()
    }

    /// Stops the console and removes the namespace and its users.
    async fn finish(mut self) {
        self.stop.cancel();
        self.finished = true;
        remove(self.topology.clone()).await;
    }
}

/// Removes what [`Harness::start`] made on the broker, also after a failed
/// test (from `Drop`, on a runtime of its own).
impl Drop for Harness {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.stop.cancel();
        let topology = self.topology.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(remove(topology));
            }
        })
        .join();
    }
}

async fn remove(topology: Topology) {
    let Ok(admin) = checkout_messaging::connect(ADMIN_URL, "console test").await else {
        return;
    };
    if let Ok(channel) = admin.create_channel().await {
        let retries = RetryPolicy::new(vec![Duration::from_millis(100)]);
        let _ = topology.delete(&channel, SUBSCRIPTIONS, &retries).await;
    }
    let _ = admin.close(200, ShortString::from("done")).await;
    for (user, _) in broker_access::deployment_users(&topology, None) {
        let _ = tokio::process::Command::new("rabbitmqctl")
            .args(["delete_user", &user.name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
    }
}

/// Runs `rabbitmqctl args` with `stdin`; panics if it fails.
async fn rabbitmqctl(args: &[&str], stdin: Option<&str>) {
    let mut child = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("rabbitmqctl runs");
    if let (Some(mut pipe), Some(text)) = (child.stdin.take(), stdin) {
        pipe.write_all(text.as_bytes()).await.expect("stdin");
    }
    let output = child.wait_with_output().await.expect("rabbitmqctl ends");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Harness {
    /// `GET path` as the admin, answering status and `Location`.
    async fn http_get_location(&self, path: &str) -> (reqwest::StatusCode, String) {
        let response = self.admin_get(path).await;
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or("");
        (response.status(), location.to_owned())
    }
}
