//! The timeline and the graph, drawn from journals written by hand: what each shape says,
//! that guest text stays text, and that a run of 100,000 events draws as a bounded page.

use serde_json::{json, Value};
use tether_types::event::Event;
use tether_types::resolve::{plan_of, ResolvedStep};
use tether_types::Workflow;

use super::{timeline, MAX_ROWS};
use crate::ui::graph::graph;

/// An event at `ms` milliseconds into the run.
fn ev(seq: u64, ms: u64, kind: Value) -> Event {
    let mut v = kind;
    v["seq"] = json!(seq);
    v["at_us"] = json!(1_000_000_000 + ms * 1000);
    v["hash"] = json!("");
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

fn plan(toml: &str) -> Value {
    let wf = Workflow::parse("t.toml", &format!("name = \"t\"\n{toml}")).unwrap();
    let step = |_: &tether_types::StepSpec| ResolvedStep { component: "c".into(), compensate: None, dirs: Vec::new() };
    serde_json::to_value(plan_of(&wf, None, step, Vec::new())).unwrap()
}

fn started(plan: Value) -> Value {
    json!({"type": "run_started", "workflow": "t", "workflow_digest": "d", "plan": plan, "input": {}, "identity": "bot"})
}

fn attempt(step: &str, n: u32) -> Value {
    json!({"type": "step_attempt_started", "step": step, "attempt": n, "component_digest": "c", "input": {}})
}

fn completed(step: &str, n: u32) -> Value {
    json!({"type": "step_completed", "step": step, "attempt": n, "output": {}, "fuel": 1, "tool_fuel": 0, "wall_us": 5, "peak_memory": 1})
}

fn tool(step: &str, call: u32, ok: bool) -> Value {
    let result =
        if ok { json!({"ok": {"i": call}}) } else { json!({"err": {"kind": "denied", "message": "no <b>grant</b>"}}) };
    json!({"type": "tool_call_completed", "step": step, "call": call, "tool": "echo", "result": result, "fuel": 1, "wall_us": 10})
}

const FAN_OUT: &str = r#"
[[steps]]
name = "fetch"
component = "c.wasm"
for_each = "input.items"
[[steps]]
name = "pay"
component = "c.wasm"
"#;

#[test]
fn every_kind_of_shape_says_what_happened_and_guest_text_stays_text() {
    let events = vec![
        ev(1, 0, started(plan(FAN_OUT))),
        ev(2, 1, attempt("fetch[0]", 1)),
        ev(3, 2, attempt("fetch[1]", 1)),
        ev(4, 10, tool("fetch[0]", 0, true)),
        ev(5, 11, tool("fetch[0]", 1, false)),
        ev(6, 20, completed("fetch[0]", 1)),
        ev(
            7,
            30,
            json!({"type": "step_failed", "step": "fetch[1]", "attempt": 1,
            "failure": {"class": "guest_error", "message": "<script>x</script>"}, "fuel": 1, "tool_fuel": 0, "wall_us": 5, "peak_memory": 1}),
        ),
        ev(
            8,
            30,
            json!({"type": "retry_scheduled", "step": "fetch[1]", "attempt": 2, "not_before_us": 1_000_000_000u64 + 60_000, "backoff_ms": 30}),
        ),
        ev(9, 60, attempt("fetch[1]", 2)),
        ev(
            10,
            61,
            json!({"type": "http_exchanged", "step": "fetch[1]", "exchange": 0,
            "request": {"method": "GET", "url": "https://example.test/x", "headers": [], "body": {"bytes": 0, "sha256": ""}},
            "outcome": "answer", "status": 503, "headers": [], "body": {"bytes": 0, "sha256": ""}, "wall_us": 9}),
        ),
        ev(11, 70, completed("fetch[1]", 2)),
        ev(12, 80, attempt("pay", 1)),
        ev(
            13,
            81,
            json!({"type": "approval_requested", "id": "pay@step_result", "gate": "refund", "step": "pay",
            "on": "step_result", "proposal": {}, "approvals": 1, "on_timeout": "reject"}),
        ),
        ev(
            14,
            90,
            json!({"type": "approval_decided", "id": "pay@step_result", "gate": "refund", "step": "pay",
            "by": "alice", "decision": "approve", "comment": "<b>fine</b>"}),
        ),
        ev(15, 100, completed("pay", 1)),
    ];
    let page = timeline(&events).into_string();
    for row in [">fetch[0]<", ">fetch[1]<", ">pay<"] {
        assert!(page.contains(row), "row {row} missing:\n{page}");
    }
    for shape in ["bar ok", "bar failed", "bar backoff", "bar approval", "mark ok", "mark denied", "mark failed"] {
        assert!(page.contains(&format!("class=\"{shape}\"")), "{shape} missing:\n{page}");
    }
    assert!(page.contains("approve by alice at"), "who decided: {page}");
    assert!(page.contains("GET https://example.test/x → 503"), "{page}");
    assert!(page.contains("attempt 1 failed (guest_error)"), "{page}");
    assert!(!page.contains("<script>") && !page.contains("<b>"), "guest or user text taken as markup:\n{page}");
    assert!(page.contains("&lt;b&gt;fine&lt;/b&gt;") && page.contains("&lt;script&gt;x"), "{page}");
    assert!(!page.contains("more rows"), "nothing hidden in a small run");
}

#[test]
fn a_run_of_100_000_events_draws_a_bounded_page() {
    // 2,000 fan-out items of 48 tool calls each, with the item's attempt around them.
    let mut events = vec![ev(1, 0, started(plan(FAN_OUT)))];
    let mut seq = 1;
    let mut push = |ms: u64, kind: Value| {
        seq += 1;
        events.push(ev(seq, ms, kind));
    };
    for item in 0..2_000u64 {
        let key = format!("fetch[{item}]");
        push(item * 50, attempt(&key, 1));
        for call in 0..48 {
            push(item * 50 + call as u64, tool(&key, call, call % 17 != 5));
        }
        push(item * 50 + 49, completed(&key, 1));
    }
    assert!(events.len() > 100_000);
    let page = timeline(&events).into_string();
    let rows = page.matches("class=\"label\"").count();
    assert_eq!(rows, MAX_ROWS, "rows are capped");
    assert!(page.contains(&format!("{} more rows", 2_000 - MAX_ROWS)), "the hidden rows are counted");
    let marks = page.matches("<circle").count();
    assert!(marks > MAX_ROWS, "each drawn row shows its calls: {marks}");
    assert!(marks <= MAX_ROWS * super::MARK_SLOTS as usize, "{marks} marks");
    assert!(page.contains("calls; ") && page.contains("more"), "merged marks count their calls");
    assert!(page.len() < 1_000_000, "the page is {} bytes", page.len());
}

#[test]
fn the_graph_highlights_the_route_taken_and_counts_items_and_iterations() {
    let toml = r#"
[[steps]]
name = "classify"
component = "c.wasm"
[[steps]]
name = "route"
needs = ["classify"]
route = [{ when = "output.classify.urgent", to = "escalate" }, { to = "reply" }]
[[steps]]
name = "escalate"
component = "c.wasm"
needs = ["route"]
[[steps]]
name = "reply"
component = "c.wasm"
needs = ["route"]
[[steps]]
name = "each"
component = "c.wasm"
for_each = "input.items"
needs = ["reply", "escalate"]
"#;
    let events = vec![
        ev(1, 0, started(plan(toml))),
        ev(2, 1, json!({"type": "routed", "step": "route", "to": "reply", "case": 2, "output": {}})),
        ev(3, 2, json!({"type": "for_each_started", "step": "each", "items": 3})),
    ];
    let steps = vec![
        json!({"step": "classify", "status": "completed"}),
        json!({"step": "escalate", "status": "skipped"}),
        json!({"step": "reply", "status": "completed"}),
        json!({"step": "each[0]", "status": "completed"}),
        json!({"step": "each[1]", "status": "failed"}),
    ];
    let svg = graph(&events, &steps).into_string();
    assert!(svg.contains("class=\"edge route taken\""), "the case taken: {svg}");
    assert!(svg.contains("class=\"edge route\""), "the case not taken: {svg}");
    assert!(svg.contains("case 1: output.classify.urgent") && svg.contains("default"), "{svg}");
    assert!(svg.contains("each [×3]"), "the items counted: {svg}");
    assert!(svg.contains("<g class=\"node failed\"><rect") && svg.contains("<g class=\"node skipped\"><rect"), "{svg}");
    assert!(svg.contains("class=\"edge taken\""), "classify → route taken: {svg}");
}
