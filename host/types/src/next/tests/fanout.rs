//! `for_each`: the fan-out decision, items launched up to `concurrency`, the gather in
//! item order.

use serde_json::json;

use crate::event::EventKind;
use crate::failure::{FailureClass, GuestFailureKind, StepFailure};
use crate::next::Next;
use crate::state::Resolved;
use crate::testing::Run;

const FAN: &str = r#"
[[steps]]
name = "plan"
needs = []
component = "plan.wasm"

[[steps]]
name = "search"
needs = ["plan"]
component = "search.wasm"
for_each = "steps.plan.sources"
concurrency = 2
input = "{'source': item, 'index': index, 'q': input.q}"

[[steps]]
name = "combine"
needs = ["search"]
component = "combine.wasm"
"#;

fn started(items: u32) -> EventKind {
    EventKind::ForEachStarted { step: "search".into(), items }
}

fn gathered(output: serde_json::Value) -> EventKind {
    EventKind::ForEachGathered { step: "search".into(), output }
}

#[test]
fn items_run_at_most_concurrency_at_once_and_gather_in_item_order() {
    let mut run = Run::new(FAN, json!({"q": "why"}));
    run.run(&["plan"], |_| json!({"sources": ["x", "y", "z"]}));
    assert_eq!(run.record(), vec![started(3)]);
    assert_eq!(run.state.fanouts["search"], 3);
    let launches = run.start(&["search[0]", "search[1]"]);
    assert_eq!(launches[0].step, "search");
    assert_eq!(launches[0].input, json!({"source": "x", "index": 0, "q": "why"}));
    assert_eq!(launches[1].input, json!({"source": "y", "index": 1, "q": "why"}));
    assert_eq!(run.next(), Next::Run(vec![]), "two running: the cap");
    // Items end out of order; the gather follows the items.
    run.complete("search[1]", json!("hit y"));
    let launches = run.start(&["search[2]"]);
    assert_eq!(launches[0].input, json!({"source": "z", "index": 2, "q": "why"}));
    run.complete("search[2]", json!("hit z"));
    assert_eq!(run.next(), Next::Run(vec![]), "search[0] still runs");
    assert!(!run.state.resolved.contains_key("search"), "items are not the step");
    run.complete("search[0]", json!("hit x"));
    assert_eq!(run.record(), vec![gathered(json!(["hit x", "hit y", "hit z"]))]);
    assert_eq!(run.state.resolved["search"], Resolved::Completed(json!(["hit x", "hit y", "hit z"])));
    let combine = run.run(&["combine"], |l| json!({"n": l.input.as_array().map(Vec::len)}));
    assert_eq!(combine[0].input, json!(["hit x", "hit y", "hit z"]));
    assert_eq!(run.next(), Next::Complete(json!({"n": 3})));
}

#[test]
fn an_empty_list_fans_out_and_gathers_at_once() {
    let mut run = Run::new(FAN, json!({"q": "why"}));
    run.run(&["plan"], |_| json!({"sources": []}));
    assert_eq!(run.record(), vec![started(0), gathered(json!([]))]);
    let combine = run.run(&["combine"], |_| json!("none"));
    assert_eq!(combine[0].input, json!([]));
    assert_eq!(run.next(), Next::Complete(json!("none")));
}

#[test]
fn an_item_without_an_input_expression_gets_the_item_itself() {
    let toml = FAN.replace("input = \"{'source': item, 'index': index, 'q': input.q}\"\n", "");
    let mut run = Run::new(&toml, json!({}));
    run.run(&["plan"], |_| json!({"sources": [{"id": 7}, {"id": 8}]}));
    run.record();
    let items = run.start(&["search[0]", "search[1]"]);
    assert_eq!((&items[0].input, &items[1].input), (&json!({"id": 7}), &json!({"id": 8})));
}

#[test]
fn a_list_that_is_not_a_list_fails_the_step_as_invalid_input() {
    let mut run = Run::new(FAN, json!({"q": "why"}));
    run.run(&["plan"], |_| json!({"sources": "x"}));
    let events = run.record();
    assert!(
        matches!(&events[..], [EventKind::StepFailed { step, failure, .. }]
            if step == "search" && failure.class == FailureClass::InvalidInput),
        "{events:?}"
    );
    assert!(matches!(run.next(), Next::Fail(e) if e.class == FailureClass::InvalidInput && e.step == "search"));
}

#[test]
fn a_failed_item_fails_the_run_under_its_own_key_once_the_others_end() {
    let mut run = Run::new(FAN, json!({"q": "why"}));
    run.run(&["plan"], |_| json!({"sources": ["x", "y", "z"]}));
    run.record();
    run.start(&["search[0]", "search[1]"]);
    run.fail("search[1]", StepFailure::from_guest(GuestFailureKind::Internal, "no index"));
    // search[0] still runs: the core says fail (the host waits for it); search[2] never starts.
    let Next::Fail(error) = run.next() else { panic!("expected the run to fail") };
    assert_eq!(
        (error.class, error.step.as_str(), error.message.as_str()),
        (FailureClass::GuestError, "search[1]", "no index")
    );
    run.complete("search[0]", json!("hit x"));
    assert!(matches!(run.next(), Next::Fail(e) if e.step == "search[1]"));
    assert!(!run.state.instances.contains_key("search[2]"));
}

#[test]
fn a_resumed_fan_out_runs_only_its_unfinished_items() {
    let mut run = Run::new(FAN, json!({"q": "why"}));
    run.run(&["plan"], |_| json!({"sources": ["x", "y", "z"]}));
    run.record();
    run.start(&["search[0]", "search[1]"]);
    run.complete("search[0]", json!("hit x"));
    // The host dies with search[1] running: nothing is busy after the restart.
    run.busy.clear();
    let launches = run.launches();
    let keys: Vec<&str> = launches.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys, ["search[1]", "search[2]"]);
    assert_eq!(launches[0].resume.as_ref().map(|o| o.attempt), Some(1), "the interrupted item goes on");
    assert_eq!((launches[1].resume.as_ref(), launches[1].attempt), (None, 1));
}

#[test]
fn a_recorded_item_count_the_list_no_longer_gives_is_a_host_fault() {
    let mut run = Run::new(FAN, json!({"q": "why"}));
    run.run(&["plan"], |_| json!({"sources": ["x", "y", "z"]}));
    run.apply([started(5)]);
    let events = run.record();
    let [EventKind::StepFailed { step, failure, .. }] = &events[..] else { panic!("{events:?}") };
    assert_eq!((step.as_str(), failure.class), ("search", FailureClass::HostFault));
    assert!(
        failure.message.starts_with("`for_each` gave 3 items on resume, but 5 were recorded"),
        "{}",
        failure.message
    );
}
