//! A real browser for the console's test: Debian's Chromium, headless,
//! driven through ChromeDriver with the W3C WebDriver protocol.
//!
//! The protocol is a handful of JSON requests (new session, navigate, find
//! an element, click, type, read the page, take a screenshot), so it is
//! spoken here over the `reqwest` client the harness already has, rather
//! than through a WebDriver crate: fantoccini pulls in the `webdriver`
//! crate with ICU segmentation data, a second `http` and `cookie`, and
//! `time`; thirtyfour more again — for six endpoints.
//!
//! Chromium runs with a fresh profile directory and with every background
//! connection it would make switched off (the test machines' network
//! refuses them, and they would only slow the test down).

use crate::poll::{Probe, eventually};
use crate::process::free_port;
use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Where Debian installs them (`apt-get install chromium chromium-driver`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C name of an element reference in a response.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session. Call [`Browser::quit`] at the end; if the
/// test fails first, dropping it kills ChromeDriver (and with it Chromium).
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// Whether Chromium and ChromeDriver are installed here.
    pub fn available() -> bool {
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
    }

    /// Starts ChromeDriver on a free port and opens a session in a fresh
    /// profile under `scratch`.
    pub async fn start(scratch: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let profile = scratch.join(format!("chromium-profile-{port}"));
        std::fs::create_dir_all(&profile)?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {CHROMEDRIVER}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        eventually(
            "ChromeDriver to answer",
            Duration::from_secs(20),
            async || {
                Ok(match http.get(format!("{base}/status")).send().await {
                    Ok(response) if response.status().is_success() => Probe::Done(()),
                    Ok(response) => Probe::NotYet(format!("HTTP {}", response.status())),
                    Err(error) => Probe::NotYet(error.to_string()),
                })
            },
        )
        .await?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
            ]},
            // Finding an element polls for up to 10 s (WebDriver's implicit
            // wait): after a click that submits a form, the next page's
            // elements appear once the navigation ends, not when the click
            // returns.
            "timeouts": {"implicit": 10_000},
        }}});
        let created = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/session"),
            Some(capabilities),
        )
        .await
        .context("ChromeDriver did not open a Chromium session")?;
        let id = created["sessionId"]
            .as_str()
            .context("a session without an id")?;
        Ok(Self {
            session: format!("{base}/session/{id}"),
            http,
            driver,
            profile,
        })
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    /// The current page's HTML, as the browser holds it.
    pub async fn source(&self) -> anyhow::Result<String> {
        let value = self.get("/source").await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// The visible text of the first element that matches `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let element = self.find(css).await?;
        let value = self.get(&format!("/element/{element}/text")).await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// Clicks the first element that matches `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await
            .map(drop)
    }

    /// Replaces the value of the input that matches `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.post(&format!("/element/{element}/clear"), json!({}))
            .await?;
        self.post(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await
        .map(drop)
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let value = self.get("/screenshot").await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .context("the screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Ends the session and ChromeDriver, and removes the profile.
    pub async fn quit(mut self) -> anyhow::Result<()> {
        let ended = call(&self.http, reqwest::Method::DELETE, &self.session, None).await;
        let _ = self.driver.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
        ended.map(drop)
    }

    async fn find(&self, css: &str) -> anyhow::Result<String> {
        let found = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await
            .with_context(|| format!("no element matches {css:?}"))?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{css:?}: not an element reference: {found}"))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        call(
            &self.http,
            reqwest::Method::GET,
            &format!("{}{path}", self.session),
            None,
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.session);
        call(&self.http, reqwest::Method::POST, &url, Some(body)).await
    }
}

/// One WebDriver command: its `value`, or its error and message.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("WebDriver {url}"))?;
    let status = response.status();
    let mut answer: Value = response.json().await.context("a WebDriver answer")?;
    let value = answer["value"].take();
    anyhow::ensure!(
        status.is_success(),
        "WebDriver {url}: {} ({})",
        value["error"].as_str().unwrap_or("error"),
        value["message"].as_str().unwrap_or_default()
    );
    Ok(value)
}
