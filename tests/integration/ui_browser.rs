//! The web UI in a real browser: headless Chromium driven by playwright-core (both
//! installed by the test command) against a live `tether serve`. The scenarios are in
//! tests/ui/browser.mjs; screenshots of each page at 1280 and 390 px land in
//! target/ui-screenshots.

use std::time::Duration;

use tether_tests::repo_root;

use crate::governance::{Refund, POLICY};
use crate::served::{token, Served};

#[test]
fn in_chromium_a_person_logs_in_approves_rejects_sees_a_gate_relax_and_no_markup_runs() {
    let toolchains = std::env::var_os("TETHER_TOOLCHAINS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/toolchains"));
    let playwright = toolchains.join("js/node_modules/playwright-core/index.mjs");
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        playwright.exists() && chromium.exists(),
        "run the tests with scripts/test, which installs Chromium and playwright-core"
    );

    let policy = POLICY.replace(
        "[gates.refund]\napprovals = 1",
        "[gates.refund]\napprovals = 1\nrelax_after = { decisions = 3, max_override_rate = 0.5 }",
    );
    let r = Refund::new("ui-browser", "output.amount > 100.0", &policy);
    let alice = token(&r.db, "alice", "alice", &["approver", "runner"]);
    let bob = token(&r.db, "bob", "bob", &["approver"]);
    let vera = token(&r.db, "vera", "vera", &["viewer"]);
    let dir = r.dir.display().to_string();
    let served = Served::start(&r.db, &["--workflows", &dir]);
    let shots = repo_root().join("target/ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let mut child = std::process::Command::new("node")
        .arg(repo_root().join("tests/ui/browser.mjs"))
        .env("PLAYWRIGHT", &playwright)
        .env("CHROMIUM", chromium)
        .env("BASE", format!("http://{}", served.address))
        .env("ALICE", &alice)
        .env("BOB", &bob)
        .env("VERA", &vera)
        .env("WORKFLOW", "refund-ui-browser")
        .env("SHOTS", &shots)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser scenarios did not finish in 240 s\n{}", served.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}\nserver:\n{}", served.log());
    for scenario in [
        "logged in",
        "approved from the inbox",
        "rejected with a comment",
        "the gate relaxed",
        "markup shown as text",
        "a viewer cannot decide",
    ] {
        assert!(said.contains(&format!("ok: {scenario}")), "{scenario} did not pass:\n{said}");
    }
    for page in ["login-runs", "inbox", "run", "gates", "run-with-markup", "stats", "inbox-viewer"] {
        for size in ["desktop", "phone"] {
            let file = shots.join(format!("{page}-{size}.png"));
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(bytes.starts_with(b"\x89PNG"), "no screenshot {}", file.display());
        }
    }
}
