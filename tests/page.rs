//! The Deployments page in headless Chromium against the sandbox: seeds an
//! environment, then runs tests/page/page.mjs (playwright-core from tools/,
//! the system Chromium) and fails with its output when a check fails.
//! Screenshots go to the test's output folder (target/tmp/page).

use autosky_core::domain::EnvironmentDefaults;
use autosky_sandbox::{harness, seed, Clients};
use std::path::Path;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn publish_schedule_cancel_and_a_bad_email_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/install-browser.sh (Debian's chromium; never `npx playwright install`)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        root.join("tools/node_modules/playwright-core").exists(),
        "tools/node_modules/playwright-core is missing: run scripts/install-browser.sh"
    );
    let endpoints = harness::shared(env!("CARGO_BIN_EXE_autosky-sandbox"));
    let c = Clients::new(endpoints);
    seed::environment(&c, "page-env", 1, EnvironmentDefaults::default())
        .await
        .unwrap();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page");
    let out = Command::new("node")
        .arg(root.join("tests/page/page.mjs"))
        .env("API_URL", &endpoints.api)
        .env("ENV", "page-env")
        .env("OUT_DIR", &out_dir)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "page test failed:\n{text}");
    for shot in [
        "bad-email",
        "published",
        "details",
        "scheduled",
        "cancelled",
    ] {
        assert!(out_dir.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}
