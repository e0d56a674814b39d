//! The web UI's pages checked without a browser: login and its session cookie, pages
//! that follow the token's roles, CSRF on every form, escaping of what guests and people
//! wrote, and an approval decided by posting the inbox's form.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::governance::{Refund, POLICY};
use crate::served::{token, Served};

/// One raw request: (status, head, body).
fn raw(served: &Served, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(&served.address).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n", served.address);
    if let Some(c) = cookie {
        head.push_str(&format!("cookie: {c}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        head.push_str(&format!(
            "content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), head.to_string(), body.to_string())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Logs in with `token`: the session cookie (`name=value`).
fn login(served: &Served, token: &str) -> String {
    let (status, head, _) = raw(served, "POST", "/ui/login", None, Some(&format!("token={token}&next=%2Fui%2Finbox")));
    assert_eq!(status, 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/ui/inbox"));
    let cookie = header(&head, "set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/ui"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

fn csrf(page: &str) -> String {
    page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_ui_logs_in_shows_what_roles_allow_escapes_everything_and_decides_through_its_forms() {
    let r = Refund::new("ui-pages", "output.amount > 100.0", POLICY);
    let alice = token(&r.db, "alice", "alice", &["approver", "runner"]);
    let viewer = token(&r.db, "vera", "vera", &["viewer"]);
    let dir = r.dir.display().to_string();
    let served = Served::start(&r.db, &["--workflows", &dir]);

    // Nothing without a session: the login page, which names where to go after.
    let (status, head, _) = raw(&served, "GET", "/ui/runs?status=waiting", None, None);
    assert_eq!(status, 303);
    assert_eq!(header(&head, "location"), Some("/ui/login?next=%2Fui%2Fruns%3Fstatus%3Dwaiting"));
    let (status, head, _) = raw(&served, "POST", "/ui/login", None, Some("token=tether_nope"));
    assert_eq!(status, 303);
    assert!(header(&head, "location").unwrap().contains("failed="), "{head}");

    // A run whose reason holds markup: shown as text everywhere.
    let input = json!({"order_id": "<script>alert(1)</script>", "amount": 500.0, "reason": "<b>broken</b> & \"torn\""});
    let (status, created) = served.post_as(&alice, "/v1/runs", &json!({"workflow": "refund-ui-pages", "input": input}));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    served.wait_status(&alice, &run, "waiting", Duration::from_secs(60));

    let vera = login(&served, &viewer);
    let (status, _, runs) = raw(&served, "GET", "/ui/runs", Some(&vera), None);
    assert_eq!(status, 200);
    assert!(runs.contains(&run) && runs.contains("hx-get=\"/ui/runs/table?"), "{runs}");
    let (_, _, prefixed) = raw(&served, "GET", &format!("/ui/runs?q={}", &run[..12]), Some(&vera), None);
    assert!(prefixed.contains(&run));
    let (_, _, none) = raw(&served, "GET", "/ui/runs?q=run_zzzz", Some(&vera), None);
    assert!(!none.contains(&run) && none.contains("No runs match"));
    let (status, _, page) = raw(&served, "GET", &format!("/ui/runs/{run}"), Some(&vera), None);
    assert_eq!(status, 200);
    assert!(page.contains("<svg") && page.contains("Timeline") && page.contains("approval_requested"), "{page}");
    assert!(!page.contains("<script>alert(1)"), "guest input rendered as HTML:\n{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    assert!(!page.contains("<b>broken</b>"));
    assert!(!page.contains("Cancel run"), "a viewer is offered no cancel");

    // A viewer sees the request but no way to decide it, and a forged decision is refused.
    let (_, _, inbox) = raw(&served, "GET", "/ui/inbox", Some(&vera), None);
    assert!(inbox.contains(&run) && !inbox.contains("Approve</button>"), "{inbox}");
    let id = form_encode(&format!("{run}:assess@step_result"));
    let forged = format!("csrf={}&id={id}&decision=approve", csrf(&inbox));
    let (status, _, _) = raw(&served, "POST", "/ui/decide", Some(&vera), Some(&forged));
    assert_eq!(status, 403, "a viewer's decision is refused");
    let (status, _, _) =
        raw(&served, "POST", "/ui/decide", Some(&vera), Some(&format!("csrf=wrong&id={id}&decision=approve")));
    assert_eq!(status, 403, "a decision without the session's CSRF token is refused");

    // Alice decides by posting the inbox's form, as herself.
    let ally = login(&served, &alice);
    let (_, _, inbox) = raw(&served, "GET", "/ui/inbox", Some(&ally), None);
    assert!(inbox.contains("Approve</button>"), "{inbox}");
    let version = inbox.split("name=\"version\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (status, _, _) = raw(&served, "POST", "/ui/decide", Some(&ally), Some(&format!("id={id}&decision=approve")));
    assert!(status == 403 || status == 422, "no CSRF token: {status}");
    let form = format!(
        "csrf={}&id={id}&version={version}&decision=approve&comment={}",
        csrf(&inbox),
        form_encode("photos <ok>")
    );
    let (status, head, _) = raw(&served, "POST", "/ui/decide", Some(&ally), Some(&form));
    assert_eq!(status, 303, "{head}");
    assert!(header(&head, "location").unwrap().starts_with("/ui/inbox?notice="), "{head}");
    served.wait_status(&alice, &run, "completed", Duration::from_secs(60));
    let (_, events) = crate::support::tether_json(&r.db, &["history", &run, "--json"]);
    let decided = events.as_array().unwrap().iter().find(|e| e["type"] == "approval_decided").unwrap().clone();
    assert_eq!((decided["by"].as_str(), decided["comment"].as_str()), (Some("alice"), Some("photos <ok>")));
    let (_, _, page) = raw(&served, "GET", &format!("/ui/runs/{run}"), Some(&ally), None);
    assert!(page.contains("photos &lt;ok&gt;"), "the comment is escaped on the run page");
    // The workflow's graph, with the path this run took.
    assert!(page.contains("aria-label=\"The workflow's steps and what each needs\""), "{page}");
    assert!(page.contains("<g class=\"node completed\"><rect") && page.contains(">issue<"), "{page}");

    // Gates and stats render; logging out ends the session.
    let (status, _, gates) = raw(&served, "GET", "/ui/gates", Some(&ally), None);
    assert_eq!(status, 200);
    assert!(gates.contains("refund") && gates.contains("Override rate"), "{gates}");
    let (status, _, stats) = raw(&served, "GET", "/ui/stats?period=all", Some(&ally), None);
    assert_eq!(status, 200);
    assert!(
        stats.contains("aria-label=\"Success, escalation and rollback rates\"") && stats.contains("Latency by step"),
        "{stats}"
    );
    let (status, _, _) = raw(&served, "GET", "/ui/stats?period=sometimes", Some(&ally), None);
    assert_eq!(status, 400);
    let (_, _, any) = raw(&served, "GET", "/ui/runs", Some(&ally), None);
    let (status, head, _) = raw(&served, "POST", "/ui/logout", Some(&ally), Some(&format!("csrf={}", csrf(&any))));
    assert_eq!(status, 303);
    assert!(header(&head, "set-cookie").unwrap().contains("Max-Age=0"));
    let (status, _, _) = raw(&served, "GET", "/ui/runs", Some(&ally), None);
    assert_eq!(status, 303, "the session is gone");

    // Revoking a token ends its sessions at once.
    let o = crate::support::tether_cmd(&r.db).args(["token", "revoke", "vera"]).output().unwrap();
    assert!(o.status.success());
    let (status, _, _) = raw(&served, "GET", "/ui/runs", Some(&vera), None);
    assert_eq!(status, 303, "a revoked token's session is gone");
    let (status, head, body) = raw(&served, "GET", "/ui/assets/htmx.min.js", None, None);
    assert_eq!((status, header(&head, "content-type")), (200, Some("text/javascript")));
    assert!(body.starts_with("var htmx="));
}

/// The `<td>` of each event row's sequence number on a run page, in page order.
fn seqs(page: &str) -> Vec<u64> {
    let events = page.split("<table class=\"events\">").nth(1).unwrap_or("");
    events.split("<tr><td>").skip(1).filter_map(|r| r.split('<').next()?.parse().ok()).collect()
}

#[test]
fn a_long_runs_events_are_paged_from_the_newest_and_a_page_tampered_with_is_refused() {
    let dir = crate::support::fresh_dir("ui-long-run");
    let db = dir.join("journal.db");
    let wf = dir.join("flood.toml");
    let text = format!(
        "name = \"flood\"\n[run]\nbudget = {{ tool_calls = 500, usage = {{ tokens = 9 }} }}\n[tools.echo]\ncomponent = {echo:?}\n[[steps]]\nname = \"calls\"\ncomponent = {hostile:?}\n\
         tools = [\"echo\"]\ninput = \"{{'mode': 'tool-flood', 'n': 150}}\"\nbudget = {{ tool_calls = 200 }}\n",
        echo = tether_tests::artifacts::ECHO_TOOL,
        hostile = tether_tests::artifacts::HOSTILE
    );
    std::fs::write(&wf, text).unwrap();
    let (code, report) = crate::support::tether_json(&db, &["run", &wf.display().to_string(), "--json"]);
    assert_eq!(code, Some(0), "{report}");
    let run = report["run_id"].as_str().unwrap().to_string();
    let (_, history) = crate::support::tether_json(&db, &["history", &run, "--json"]);
    let total = history.as_array().unwrap().len() as u64;
    assert!(total > 300, "{total} events");
    let viewer = token(&db, "vera", "vera", &["viewer"]);
    let served = Served::start(&db, &[]);
    let vera = login(&served, &viewer);

    // The newest 200 first, newest at the top, with a link to the ones before.
    let (status, _, page) = raw(&served, "GET", &format!("/ui/runs/{run}"), Some(&vera), None);
    assert_eq!(status, 200);
    assert!(page.contains(&format!("Events ({total})")), "{page}");
    assert_eq!(seqs(&page), (total - 199..=total).rev().collect::<Vec<_>>());
    let earlier = format!("/ui/runs/{run}?before={}", total - 199);
    assert!(page.contains(&earlier.replace('&', "&amp;")), "a link to the earlier events");
    // What the run used against its budget.
    assert!(page.contains("<dt>Tool calls</dt><dd>150 of 500<br><meter"), "{page}");
    assert!(page.contains("<dt>tokens</dt><dd>0 of 9<br>"), "a budgeted metric not yet used: {page}");
    // The timeline merges the 150 calls into marks that count them.
    assert!(page.contains("calls; tool echo (call"), "{page}");
    // Drawn again from what was kept: the same page.
    let (_, _, again) = raw(&served, "GET", &format!("/ui/runs/{run}"), Some(&vera), None);
    assert_eq!(again, page);

    let (_, _, before) = raw(&served, "GET", &earlier, Some(&vera), None);
    assert_eq!(seqs(&before), (1..total - 199).rev().collect::<Vec<_>>(), "the rest, down to the first");
    assert!(!before.contains("Load earlier events"), "nothing before the first event");

    // An event edited in the journal: the page holding it is refused, by the chain,
    // even though the run's drawing was kept.
    let seq = total - 5;
    let path = db.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let original = rt.block_on(tether_store::testing::payload(&path, &run, seq));
    rt.block_on(tether_store::testing::tamper_payload(&path, &run, seq, &original.replace("\"i\":", "\"j\":")));
    let (status, _, refused) = raw(&served, "GET", &format!("/ui/runs/{run}"), Some(&vera), None);
    assert_eq!(status, 500, "{refused}");
    assert!(refused.contains(&format!("the hash chain is broken at event {seq}")), "{refused}");
}
