//! The Deployments page in headless Chromium against the sandbox as `make
//! sandbox` starts it (with the demo environment it seeds), at the page URL
//! it prints: runs tests/page/page.mjs (playwright-core from tools/, the
//! system Chromium) and fails with its output when a check fails.
//! Screenshots go to the test's output folder (target/tmp/page).

use autosky_sandbox::{demo, harness::SandboxProcess};
use std::path::Path;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn publish_schedule_cancel_a_bad_email_and_a_viewer_in_a_real_browser() {
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
    let sandbox = SandboxProcess::spawn(env!("CARGO_BIN_EXE_autosky-sandbox"), true).unwrap();
    let endpoints = &sandbox.endpoints;
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page");
    let out = Command::new("node")
        .arg(root.join("tests/page/page.mjs"))
        .env("API_URL", &endpoints.api)
        .env("PAGE_URL", endpoints.page_url(demo::ENVIRONMENT))
        .env("ENV", demo::ENVIRONMENT)
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
    sandbox.stop();
    assert!(out.status.success(), "page test failed:\n{text}");
    for shot in [
        "bad-email",
        "published",
        "details",
        "scheduled",
        "cancelled",
        "viewer",
    ] {
        assert!(out_dir.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}
