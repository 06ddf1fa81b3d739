//! The quickstart's dashboard in Debian's Chromium, headless, through ChromeDriver
//! (WebDriver, `fantoccini`): log in with the demo account, create a key, read it from the
//! page, call the API with it (200), edit it in the page (rename, narrow its scopes, set
//! metadata; a stale form refused with 412), revoke it in the page (confirming the
//! dialog), call again (401), and save a screenshot of the key list (`target/dashboard.png`; with
//! `UPDATE_SCREENSHOT=1` also `docs/dashboard.png`).
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`).
//! Without them a plain `cargo test` skips it (saying so), so the default test run needs
//! nothing outside Rust; `scripts/test` installs them and sets
//! `TOWER_API_KEY_REQUIRE_BROWSER=1`, under which a missing browser is a failure.
#![cfg(feature = "axum")]

use crate::examples::quickstart;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

mod page;

use page::{edit_in_the_page, webhook_in_the_page};

/// A ChromeDriver of this test, killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<ChromeDriver> {
    let required = std::env::var("TOWER_API_KEY_REQUIRE_BROWSER").as_deref() == Ok("1");
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = match Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(error) if !required => {
            eprintln!("skipping the browser test: cannot start {binary} ({error})");
            return None;
        }
        Err(error) => panic!(
            "cannot start {binary} ({error}). Install Chromium and ChromeDriver (Debian: apt-get install \
             chromium chromium-driver) or set CHROMEDRIVER"
        ),
    };
    let driver = ChromeDriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Up to 30 s: a first start after Chromium was installed or upgraded, on a loaded
    // two-core machine, took longer than the 5 s this waited before.
    for _ in 0..3_000 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(driver);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("chromedriver did not start listening within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_creates_and_revokes_a_key_in_a_real_browser() {
    let Some(driver) = chromedriver() else { return };

    // The demo keys issued a rotation age ago, on the key store's clock; then back to now.
    let now = std::time::SystemTime::now();
    let clock = tower_api_key::clock::ManualClock::new(now - quickstart::ROTATION_AGE);
    let store = quickstart::key_store(clock.clone());
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    clock.set(now);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = quickstart::app(&quickstart::Demo::new(store, &keys))
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    // One review with the live key: 10 of its 30 units.
    let review = reqwest::Client::new()
        .post(format!("{base}/v1/reviews"))
        .header(
            "authorization",
            format!("Bearer {}", keys.live.key().expose_secret()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(review.status(), 200);

    let mut capabilities = serde_json::Map::new();
    let mut chrome = json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"] });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        chrome["binary"] = json!("/usr/bin/chromium");
    }
    capabilities.insert("goog:chromeOptions".to_owned(), chrome);
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session");
    let wait = || browser.wait().at_most(Duration::from_secs(15));

    // Log in with the printed demo account.
    browser.goto(&format!("{base}/dashboard")).await.unwrap();
    browser
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys(quickstart::DEMO_EMAIL)
        .await
        .unwrap();
    browser
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(quickstart::DEMO_PASSWORD)
        .await
        .unwrap();
    browser
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait()
        .for_element(Locator::Css("#keys tbody tr"))
        .await
        .expect("the key list");
    let rows = browser
        .find_all(Locator::Css("#keys tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "the four demo keys");
    let due = browser
        .find_all(Locator::Css("#keys tbody tr .rotation-due"))
        .await
        .unwrap();
    assert_eq!(
        due.len(),
        4,
        "90 days old: every demo key is due for rotation"
    );

    // The spend bars: one per key (budgets are per key), with what is spent and the reset.
    wait()
        .for_element(Locator::Css("#spend .budget"))
        .await
        .expect("the spend bars");
    let bars = browser
        .find_all(Locator::Css("#spend .budget"))
        .await
        .unwrap();
    // Issue 36.1: and the owner's live budget, which its sessions spend from (it was
    // missing from the report).
    assert_eq!(bars.len(), 5, "a budget per demo key, and the account's");
    browser
        .find(Locator::Css("#spend .budget[data-key='live']"))
        .await
        .expect("the account's live budget");
    let live = browser
        .find(Locator::Css(&format!(
            "#spend .budget[data-key='{}']",
            keys.live.record().id()
        )))
        .await
        .unwrap();
    let meter = live.find(Locator::Css("[role=meter]")).await.unwrap();
    assert_eq!(
        meter.attr("aria-valuenow").await.unwrap().as_deref(),
        Some("10")
    );
    assert_eq!(
        meter.attr("aria-valuemax").await.unwrap().as_deref(),
        Some("30")
    );
    let width = meter
        .find(Locator::Css("div"))
        .await
        .unwrap()
        .attr("style")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(width.contains("33.3"), "a third of the bar: {width}");
    let text = live.text().await.unwrap();
    assert!(text.contains("10 / 30 per month"), "{text}");
    assert!(text.contains("resets "), "{text}");
    let trial = browser
        .find(Locator::Css(&format!(
            "#spend .budget[data-key='{}'] .reset",
            keys.trial.record().id()
        )))
        .await
        .unwrap();
    assert_eq!(trial.text().await.unwrap(), "never resets (credits)");

    // The usage chart beside the live key: today's one review, drawn as a bar.
    let chart = wait()
        .for_element(Locator::Css(&format!(
            "#keys tbody tr[data-id='{}'] svg.usage-chart",
            keys.live.record().id()
        )))
        .await
        .expect("the live key's usage chart");
    assert_eq!(
        chart.attr("data-today").await.unwrap().as_deref(),
        Some("1")
    );
    let bars = chart.find_all(Locator::Css("rect.ok")).await.unwrap();
    assert_eq!(bars.len(), 1, "one day with requests");
    let title = chart.find(Locator::Css("title")).await.unwrap();
    let title = title.prop("textContent").await.unwrap().unwrap_or_default();
    assert!(
        title.contains("1 requests") && title.contains("10 spent"),
        "{title}"
    );
    let owner = wait()
        .for_element(Locator::Css("#owner-usage svg.usage-chart"))
        .await
        .expect("the owner's chart");
    let owner_today: u64 = owner
        .attr("data-today")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(owner_today >= 1, "{owner_today}");

    // Create a key and read it, once, from the page.
    browser
        .find(Locator::Id("new-name"))
        .await
        .unwrap()
        .send_keys("browser key")
        .await
        .unwrap();
    for scope in ["read:rules", "read:reports"] {
        browser
            .find(Locator::Css(&format!("input[name=scope][value='{scope}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    browser
        .find(Locator::Id("create"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = wait()
        .for_element(Locator::Css("#once:not([hidden]) #new-key"))
        .await
        .expect("the new key");
    let key = shown.text().await.unwrap();
    assert!(key.starts_with("forg_test_"), "{key:?}");
    let fresh = browser
        .find(Locator::XPath(
            "//tbody/tr[td[1][normalize-space()='browser key']]",
        ))
        .await
        .unwrap();
    assert!(
        fresh.find(Locator::Css(".rotation-due")).await.is_err(),
        "a new key is not due"
    );
    let bars = browser
        .find_all(Locator::Css("#spend .budget"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 6, "the new key's budget is drawn too");
    let curl = browser
        .find(Locator::Id("curl-line"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(curl.contains(&key));

    // The key works.
    let call = || {
        reqwest::Client::new()
            .get(format!("{base}/v1/rules"))
            .header("authorization", format!("Bearer {key}"))
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);

    edit_in_the_page(&browser, "browser key").await;
    webhook_in_the_page(&browser, &base).await;
    assert_eq!(call().await.unwrap().status(), 200, "read:rules kept");

    // Screenshot of the key list, as an artifact.
    let png = browser.screenshot().await.unwrap();
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("dashboard.png"), &png).unwrap();
    if std::env::var("UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        std::fs::write(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png"),
            &png,
        )
        .unwrap();
    }
    assert!(png.starts_with(b"\x89PNG"));

    // Revoke it in the page, confirming the dialog; the API refuses it from then on.
    let row = wait()
        .for_element(Locator::XPath(
            "//tbody/tr[td[1][normalize-space()='browser key (edited)']]",
        ))
        .await
        .unwrap();
    row.find(Locator::Css("button.revoke"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(browser
        .get_alert_text()
        .await
        .unwrap()
        .contains("browser key (edited)"));
    browser.accept_alert().await.unwrap();
    wait()
        .for_element(Locator::XPath("//tbody/tr[td[1][normalize-space()='browser key (edited)'] and td[7][normalize-space()='revoked']]"))
        .await
        .expect("the row shows the key revoked");
    assert_eq!(call().await.unwrap().status(), 401);

    browser.close().await.unwrap();
}
