//! Triggers of `tether serve`: a cron schedule fired by two servers on one journal and
//! across a restart (one run per tick, the latest missed tick caught up once), webhooks
//! with their signature accepted or refused and deliveries deduplicated, and the
//! operator's configuration file checked at start.

use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tether_tests::artifacts;

use crate::served::{token, Served};
use crate::support::{fresh_dir, tether_cmd, tether_json};

/// A directory with a one-step workflow `tick` and a server configuration holding
/// `extra` (TOML); the configuration's path.
fn setup(dir: &Path, extra: &str) -> String {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let workflow = format!("name = \"tick\"\n[[steps]]\nname = \"echo\"\ncomponent = {:?}\n", artifacts::TRIVIAL);
    std::fs::write(dir.join("workflows/tick.toml"), workflow).unwrap();
    let config = format!("workflows = \"workflows\"\n{extra}");
    let path = dir.join("serve.toml");
    std::fs::write(&path, config).unwrap();
    path.display().to_string()
}

/// Every run's (run id, origin) from the journal.
fn origins(db: &Path) -> Vec<(String, Value)> {
    let (_, runs) = tether_json(db, &["runs", "--json", "--limit", "1000"]);
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["run_id"].as_str().unwrap().to_string();
            let (_, events) = tether_json(db, &["history", &id, "--json"]);
            (id, events[0]["origin"].clone())
        })
        .collect()
}

#[test]
fn a_schedule_runs_once_per_tick_with_two_servers_and_across_a_restart() {
    let dir = fresh_dir("serve-cron");
    let db = dir.join("journal.db");
    let schedule = "[[schedules]]\nname = \"every-2s\"\nworkflow = \"tick\"\ncron = \"*/2 * * * * *\"\n\
                    overlap = \"allow\"\ninput = { hello = \"cron\" }\ncatch_up = \"30s\"\n";
    let config = setup(&dir, schedule);
    let viewer = token(&db, "dash", "vera", &["viewer"]);
    // Two servers on one journal fire the same ticks.
    let mut first = Served::start(&db, &["--config", &config]);
    let mut second = Served::start(&db, &["--config", &config]);
    std::thread::sleep(Duration::from_millis(6500));
    first.kill();
    second.kill();
    let killed_at = utc_now();
    let before = origins(&db);
    assert!(before.len() >= 3, "ticks every 2 s for 6.5 s: {before:?}\n{}", first.log());
    let keys: std::collections::BTreeSet<String> =
        before.iter().map(|(_, o)| o["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(keys.len(), before.len(), "one run per tick, whichever server fired it: {before:?}");
    assert!(before.iter().all(|(_, o)| o["via"] == "schedule" && o["key"].as_str().unwrap().starts_with("every-2s@")));

    // Down for a while: at restart the latest missed tick runs once, the others do not.
    std::thread::sleep(Duration::from_millis(4500));
    let restarting_at = utc_now();
    let restarted = Served::start(&db, &["--config", &config]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = origins(&db);
        if after.len() > before.len() {
            break after;
        }
        assert!(std::time::Instant::now() < deadline, "nothing ran after the restart:\n{}", restarted.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let (_, caught_up) = after.iter().find(|(id, _)| !before.iter().any(|(b, _)| b == id)).unwrap();
    let latest_before = keys.iter().max().unwrap().clone();
    assert!(caught_up["key"].as_str().unwrap() > latest_before.as_str(), "{caught_up} after {latest_before}");
    std::thread::sleep(Duration::from_millis(2500));
    let (status, runs) = restarted.get_as(&viewer, "/v1/runs?limit=1000");
    assert_eq!(status, 200);
    // Paged two at a time by cursor: every run once, newest first, as in one page.
    let mut paged = Vec::new();
    let mut path = "/v1/runs?workflow=tick&limit=2".to_string();
    loop {
        let (status, page) = restarted.get_as(&viewer, &path);
        assert_eq!(status, 200, "{page}");
        paged.extend(page["runs"].as_array().unwrap().iter().map(|r| r["run_id"].clone()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/runs?workflow=tick&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let whole: Vec<Value> = runs["runs"].as_array().unwrap().iter().map(|r| r["run_id"].clone()).collect();
    // (A tick may have started a newer run since: it comes first.)
    assert!(paged.ends_with(&whole), "{paged:?} does not end with {whole:?}");
    let distinct: std::collections::BTreeSet<String> = paged.iter().map(|v| v.to_string()).collect();
    assert_eq!(distinct.len(), paged.len(), "a run on two pages: {paged:?}");
    let (_, none) = restarted.get_as(&viewer, "/v1/runs?workflow=other");
    assert_eq!(none["runs"], json!([]));
    let (status, bad) = restarted.get_as(&viewer, "/v1/runs?cursor=nonsense");
    assert_eq!((status, bad["error"]["field"].as_str()), (400, Some("cursor")), "{bad}");
    let all = origins(&db);
    let keys: std::collections::BTreeSet<String> =
        all.iter().map(|(_, o)| o["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(keys.len(), all.len(), "still one run per tick: {all:?}");
    // Of the ticks that fell while no server ran, only the latest was run.
    let tick_time = |k: &String| k.split_once('@').unwrap().1.to_string();
    let in_gap: Vec<String> = keys
        .iter()
        .map(tick_time)
        .filter(|t| *t > killed_at && *t <= restarting_at && *t > tick_time(&latest_before))
        .collect();
    // (4.5 s down holds at least two ticks of a 2 s schedule.)
    assert!(in_gap.len() <= 1, "ticks in the gap {killed_at}..{restarting_at} made up: {in_gap:?} of {keys:?}");
    assert!(runs["runs"].as_array().unwrap().iter().all(|r| r["status"] == "completed" || r["status"] == "running"));
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ` (as tick keys write times).
fn utc_now() -> String {
    let o = std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn a_webhook_starts_a_run_only_with_a_valid_signature_and_once_per_delivery() {
    let dir = fresh_dir("serve-hooks");
    let db = dir.join("journal.db");
    std::fs::write(dir.join("hook.secret"), "s3cret-hook\n").unwrap();
    let hooks = "[secrets]\nMAIL_HOOK_SECRET = { file = \"hook.secret\" }\n\n\
                 [[webhooks]]\nname = \"mail\"\nworkflow = \"tick\"\nsecret = \"MAIL_HOOK_SECRET\"\n";
    let config = setup(&dir, hooks);
    let served = Served::start(&db, &["--config", &config]);
    let body = br#"{"subject": "refund please"}"#;
    let good = sign("s3cret-hook", body);
    let post = |headers: &[(&str, &str)], body: &[u8]| {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        served.send("POST", "/hooks/mail", None, Some(body), &all)
    };
    let (status, started) = post(&[("x-tether-signature", &good), ("x-tether-delivery", "d-1")], body);
    assert_eq!((status, started["created"].as_bool()), (202, Some(true)), "{started}\n{}", served.log());
    let run = started["run_id"].as_str().unwrap().to_string();
    // The sender retries the same delivery: the same run, nothing new.
    let (status, again) = post(&[("x-tether-signature", &good), ("x-tether-delivery", "d-1")], body);
    assert_eq!((status, again["run_id"].as_str(), again["created"].as_bool()), (202, Some(run.as_str()), Some(false)));

    let wrong = sign("another-secret", body);
    for (headers, code) in [
        (vec![("x-tether-signature", wrong.as_str())], "bad_signature"),
        (vec![], "bad_signature"),
        (vec![("x-tether-signature", "sha256=zz")], "bad_signature"),
    ] {
        let (status, refused) = post(&headers, body);
        assert_eq!((status, refused["error"]["code"].as_str()), (401, Some(code)), "{headers:?}: {refused}");
    }
    // A body changed after signing is refused.
    let (status, _) = post(&[("x-tether-signature", &good)], br#"{"subject": "refund me twice"}"#);
    assert_eq!(status, 401);
    let text = b"not json";
    let (status, refused) = post(&[("x-tether-signature", &sign("s3cret-hook", text))], text);
    assert_eq!((status, refused["error"]["field"].as_str()), (400, Some("body")), "{refused}");
    let (status, refused) = served.send("POST", "/hooks/other", None, Some(body), &[]);
    assert_eq!((status, refused["error"]["code"].as_str()), (404, Some("unknown_hook")));

    let (_, events) = tether_json(&db, &["history", &run, "--json"]);
    assert_eq!(events[0]["origin"], json!({"via": "webhook", "by": "hook:mail", "key": "d-1"}));
    assert_eq!(events[0]["input"], json!({"subject": "refund please"}));
    let (_, runs) = tether_json(&db, &["runs", "--json"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "refused deliveries started nothing: {runs}");
    assert!(!served.log().contains("s3cret-hook"), "the secret is never logged");
}

#[test]
fn a_bad_configuration_is_refused_at_start_naming_what_is_wrong() {
    let dir = fresh_dir("serve-config");
    let db = dir.join("journal.db");
    for (extra, expected) in [
        (
            "[[schedules]]\nname = \"n\"\nworkflow = \"tick\"\ncron = \"61 * * * *\"\n",
            "schedule `n`: cron `61 * * * *`",
        ),
        ("[[schedules]]\nname = \"n\"\nworkflow = \"nope\"\ncron = \"* * * * *\"\n", "no workflow `nope`"),
        (
            "[[webhooks]]\nname = \"h\"\nworkflow = \"tick\"\nsecret = \"UNSET_HOOK_SECRET\"\n",
            "its secret `UNSET_HOOK_SECRET`",
        ),
        ("[secrets]\nX = { file = \"missing.secret\" }\n", "secret `X`: cannot read"),
        ("listen_on = \"x\"\n", "unknown field `listen_on`"),
    ] {
        let config = setup(&dir, extra);
        let o = tether_cmd(&db).args(["serve", "--listen", "127.0.0.1:0", "--config", &config]).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra}: {stderr}");
        assert!(stderr.contains(expected), "{extra}: expected `{expected}` in: {stderr}");
    }
}
