//! The console in a real browser (Debian's headless Chromium through
//! ChromeDriver), against the real binaries: an order placed through the
//! Order API shows CONFIRMED with its timeline across the four services;
//! a permanent Payment failure switched on for a customer pattern sends
//! such an order to the dead-letter queue, where the console shows it;
//! switched off and replayed from the console, the order ends as the saga
//! dictates (CONFIRMED: the deadline is far). Each page's screenshot is
//! saved under `target/console-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (scripts/test installs them).

use e2e::browser::Browser;
use e2e::{Console, Options, System};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

fn order_body(customer: &str) -> serde_json::Value {
    json!({
        "customer_id": customer,
        "customer_email": "ada@example.com",
        "items": [{"sku": "KB-001", "quantity": 1}, {"sku": "MS-001", "quantity": 1}],
        "card_token": "tok_visa",
    })
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// Opens `path` until its page satisfies `ready`; answers the page.
async fn wait_for_page(
    system: &System,
    browser: &Browser,
    console: &Console,
    path: &str,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    system
        .eventually(what, async || {
            browser.goto(&console.url(path)).await?;
            let page = browser.source().await?;
            Ok(if ready(&page) {
                e2e::Probe::Done(page)
            } else {
                e2e::Probe::NotYet(
                    page.chars()
                        .rev()
                        .take(600)
                        .collect::<String>()
                        .chars()
                        .rev()
                        .collect(),
                )
            })
        })
        .await
}

#[tokio::test]
async fn an_order_its_dead_letter_and_its_replay_in_the_console() -> anyhow::Result<()> {
    anyhow::ensure!(
        Browser::available(),
        "chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver; scripts/test does)"
    );
    let options = Options::default()
        .with_order_deadline(Duration::from_secs(300))
        .with_fault_switches();
    let system = System::start(options).await?;
    let console = system.start_console().await?;
    let browser = Browser::start(system.log_dir()).await?;
    let shots = screenshots();

    // The console asks for the token: the browser gets in with it only.
    browser.goto(&console.plain_url("/orders")).await?;
    anyhow::ensure!(
        !browser
            .source()
            .await?
            .contains("Checkout console</strong>"),
        "no token, no console"
    );

    let id = system.place_order(&order_body("c-console")).await?;
    let page = wait_for_page(
        &system,
        &browser,
        &console,
        &format!("/orders/{id}"),
        "the order CONFIRMED with its mail",
        |page| page.contains("CONFIRMED</span>") && page.contains("confirmation mail"),
    )
    .await?;
    for service in ["order", "payment", "inventory", "email"] {
        assert!(
            page.contains(&format!("<td>{service}</td>")),
            "the timeline has {service}'s entries"
        );
    }
    assert!(
        page.contains(&format!("{}/trace/", e2e::JAEGER_UI_URL)),
        "entries link their trace"
    );
    browser.screenshot(&shots.join("order.png")).await?;

    wait_for_page(
        &system,
        &browser,
        &console,
        "/orders",
        "the order in the list",
        |page| page.contains(&id.to_string()),
    )
    .await?;
    let rate = browser.text("#rate").await?;
    assert!(
        rate.contains("CONFIRMED 1/min") || rate.contains("CONFIRMED 1 /min"),
        "the last minute's rate: {rate}"
    );
    browser.screenshot(&shots.join("orders.png")).await?;

    let faults = wait_for_page(
        &system,
        &browser,
        &console,
        "/faults",
        "the fault switches page",
        |page| page.contains("<h2>payment</h2>"),
    )
    .await?;
    anyhow::ensure!(
        faults.contains("id=\"switch-payment-fail_permanent\""),
        "Payment offers the fail_permanent switch"
    );
    fault_to_dead_letter_and_replay(&system, &browser, &console, &shots).await?;
    browser.quit().await?;
    console.stop().await?;
    system.shutdown().await
}

/// Switches `fail_permanent` on for `fail-*`, places such an order, sees
/// its dead letter, switches it off, replays from the console and sees the
/// order confirmed.
async fn fault_to_dead_letter_and_replay(
    system: &System,
    browser: &Browser,
    console: &Console,
    shots: &Path,
) -> anyhow::Result<()> {
    let row = "#switch-payment-fail_permanent";
    browser
        .fill(&format!("{row} input[name=pattern]"), "fail-*")
        .await?;
    browser.click(&format!("{row} button[value=true]")).await?;
    let notice = browser.text(".notice").await?;
    assert!(notice.contains("fail_permanent switched on"), "{notice}");
    browser.screenshot(&shots.join("faults.png")).await?;

    let id = system
        .place_order(&order_body(&format!("fail-{}", Uuid::now_v7().simple())))
        .await?;
    let id_text = id.to_string();
    wait_for_page(
        system,
        browser,
        console,
        "/dead-letters/payment",
        "the order's dead letter",
        |page| page.contains(&id_text),
    )
    .await?;
    browser.screenshot(&shots.join("dead-letters.png")).await?;
    let order_page = wait_for_page(
        system,
        browser,
        console,
        &format!("/orders/{id}"),
        "the dead letter on the order's timeline",
        |page| page.contains("dead letter: PaymentRequested"),
    )
    .await?;
    assert!(
        order_page.contains("PENDING</span>"),
        "the order waits for its payment"
    );

    browser.goto(&console.url("/faults")).await?;
    browser.click(&format!("{row} button[value=false]")).await?;
    assert!(
        browser
            .text(".notice")
            .await?
            .contains("fail_permanent switched off")
    );

    browser.goto(&console.url("/dead-letters/payment")).await?;
    browser.click("#letters a").await?;
    browser.screenshot(&shots.join("dead-letter.png")).await?;
    browser.click("form[action$='/replay'] button").await?;
    assert_eq!(browser.text("#confirm-count").await?, "1");
    browser.click("form[action$='/replay'] button").await?;
    let notice = browser.text(".notice").await?;
    assert!(notice.contains("Replayed 1 dead letter(s)"), "{notice}");

    let order = system.wait_for_final_status(id).await?;
    assert_eq!(
        order.status, "CONFIRMED",
        "replayed with the fault off, the payment is captured"
    );
    let payments = system.payments(id).await?;
    assert_eq!(
        payments
            .iter()
            .map(|p| p.status.as_str())
            .collect::<Vec<_>>(),
        ["CAPTURED"]
    );
    wait_for_page(
        system,
        browser,
        console,
        &format!("/orders/{id}"),
        "the replayed order CONFIRMED",
        |page| page.contains("CONFIRMED</span>"),
    )
    .await?;
    Ok(())
}
