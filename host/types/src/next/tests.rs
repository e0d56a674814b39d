//! `Flow::next` decided by hand, with the events the host would record and no wasm:
//! the DAG, `when`, routes and resuming an interrupted attempt here; fan-out, loops,
//! retries and run budgets, and approvals in the modules below, with what the host
//! decides without `Flow::next`: an attempt's end (`after`), deadlines and earned
//! autonomy (`defaults`), and undoing a failed or cancelled run (`undo`).

use serde_json::json;

use super::{Launch, Next};
use crate::event::{EventKind, HostRead};
use crate::failure::FailureClass;
use crate::state::{OpenAttempt, Resolved, RunState};
use crate::testing::{journal, plan, run_started, started, Run};

mod after;
mod approvals;
mod defaults;
mod fanout;
mod loops;
mod retries;
mod undo;

fn skipped(step: &str, reason: &str) -> EventKind {
    EventKind::StepSkipped { step: step.into(), reason: reason.into() }
}

const DAG: &str = r#"
[[steps]]
name = "a"
needs = []
component = "a.wasm"

[[steps]]
name = "b"
needs = []
component = "b.wasm"
input = "{'n': input.n * 2}"

[[steps]]
name = "c"
needs = ["a", "b"]
component = "c.wasm"

[run]
output = "{'sum': steps.a.v + steps.b.v, 'c': steps.c}"
"#;

#[test]
fn independent_steps_launch_together_and_the_fan_in_waits_for_both() {
    let mut run = Run::new(DAG, json!({"n": 3}));
    let launches = run.start(&["a", "b"]);
    let first = Launch {
        key: "a".into(),
        step: "a".into(),
        input: json!({"n": 3}),
        attempt: 1,
        resume: None,
        not_before_us: None,
    };
    assert_eq!(launches[0], first, "no needs: the run input");
    assert_eq!(launches[1].input, json!({"n": 6}), "its `input` expression");
    assert_eq!(run.next(), Next::Run(vec![]), "both running, nothing else ready");
    run.complete("a", json!({"v": 1}));
    assert_eq!(run.next(), Next::Run(vec![]), "c still needs b");
    run.complete("b", json!({"v": 2}));
    let launches = run.start(&["c"]);
    assert_eq!(launches[0].input, json!({"a": {"v": 1}, "b": {"v": 2}}), "several needs: an object of their outputs");
    run.complete("c", json!({"ok": true}));
    assert_eq!(run.next(), Next::Complete(json!({"sum": 3, "c": {"ok": true}})));
    assert_eq!(run.state.resolved["c"], Resolved::Completed(json!({"ok": true})));
}

#[test]
fn a_plain_list_of_steps_is_a_pipeline_whose_output_is_the_last_steps() {
    let toml = r#"
[[steps]]
name = "a"
component = "a.wasm"
[[steps]]
name = "b"
component = "b.wasm"
[[steps]]
name = "c"
component = "c.wasm"
"#;
    let mut run = Run::new(toml, json!({"x": 0}));
    let a = run.run(&["a"], |_| json!({"x": 1}));
    assert_eq!(a[0].input, json!({"x": 0}));
    let b = run.run(&["b"], |_| json!({"x": 2}));
    assert_eq!(b[0].input, json!({"x": 1}), "one need: its output");
    let c = run.run(&["c"], |_| json!({"x": 3}));
    assert_eq!(c[0].input, json!({"x": 2}));
    assert_eq!(run.next(), Next::Complete(json!({"x": 3})));
}

const WHEN: &str = r#"
[[steps]]
name = "a"
needs = []
component = "a.wasm"

[[steps]]
name = "b"
needs = ["a"]
component = "b.wasm"
when = "steps.a.go"

[[steps]]
name = "c"
needs = ["a", "b"]
component = "c.wasm"

[[steps]]
name = "d"
needs = ["b"]
component = "d.wasm"

[run]
output = "{'c': steps.c, 'b_ran': 'b' in steps, 'd_ran': 'd' in steps}"
"#;

#[test]
fn a_step_whose_when_fails_is_skipped_and_its_dependents_see_it_absent() {
    let mut run = Run::new(WHEN, json!({}));
    run.run(&["a"], |_| json!({"go": false}));
    assert_eq!(run.record(), vec![skipped("b", "`when` did not hold: steps.a.go")]);
    assert_eq!(run.state.resolved["b"], Resolved::Skipped("`when` did not hold: steps.a.go".into()));
    // d needs only b: skipped too. c needs a as well: it runs, without b.
    assert_eq!(run.record(), vec![skipped("d", "every step it needs was skipped (b)")]);
    let c = run.run(&["c"], |_| json!({"done": 1}));
    assert_eq!(c[0].input, json!({"a": {"go": false}}), "b is absent from its input");
    assert_eq!(run.next(), Next::Complete(json!({"c": {"done": 1}, "b_ran": false, "d_ran": false})));
}

#[test]
fn a_step_whose_when_holds_runs_with_its_needs_output() {
    let mut run = Run::new(WHEN, json!({}));
    run.run(&["a"], |_| json!({"go": true}));
    let b = run.run(&["b"], |_| json!({"b": 1}));
    assert_eq!(b[0].input, json!({"go": true}));
    let launched = run.run(&["c", "d"], |_| json!({"done": 1}));
    assert_eq!(launched[0].input, json!({"a": {"go": true}, "b": {"b": 1}}));
    assert_eq!(run.next(), Next::Complete(json!({"c": {"done": 1}, "b_ran": true, "d_ran": true})));
}

#[test]
fn a_run_whose_last_step_was_skipped_outputs_null() {
    let toml = r#"
[[steps]]
name = "a"
component = "a.wasm"
[[steps]]
name = "b"
component = "b.wasm"
when = "input.go"
"#;
    let mut run = Run::new(toml, json!({"go": false}));
    run.run(&["a"], |_| json!(1));
    assert_eq!(run.record().len(), 1);
    assert_eq!(run.next(), Next::Complete(serde_json::Value::Null));
}

#[test]
fn an_expression_that_fails_at_run_time_fails_its_step_as_invalid_input() {
    let toml = r#"
[[steps]]
name = "a"
component = "a.wasm"
[[steps]]
name = "b"
component = "b.wasm"
when = "steps.a.missing > 1"
"#;
    let mut run = Run::new(toml, json!({}));
    run.run(&["a"], |_| json!({}));
    let events = run.record();
    let [EventKind::StepFailed { step, attempt: 1, failure, .. }] = &events[..] else {
        panic!("expected the step to fail: {events:?}")
    };
    assert_eq!((step.as_str(), failure.class), ("b", FailureClass::InvalidInput));
    let Next::Fail(error) = run.next() else { panic!("expected the run to fail") };
    assert_eq!((error.class, error.step.as_str()), (FailureClass::InvalidInput, "b"));
    assert_eq!(error.message, failure.message);
}

const ROUTE: &str = r#"
[[steps]]
name = "classify"
needs = []
component = "classify.wasm"

[[steps]]
name = "route"
needs = ["classify"]
route = [
  { when = "steps.classify.kind == 'outage'", to = "escalate" },
  { when = "steps.classify.kind == 'question'", to = "reply" },
]

[[steps]]
name = "escalate"
needs = ["route"]
component = "escalate.wasm"

[[steps]]
name = "reply"
needs = ["route"]
component = "reply.wasm"

[[steps]]
name = "log"
needs = ["escalate", "reply"]
component = "log.wasm"
"#;

fn routed(to: Option<&str>, case: Option<u32>, output: serde_json::Value) -> EventKind {
    EventKind::Routed { step: "route".into(), to: to.map(Into::into), case, output }
}

#[test]
fn a_route_runs_the_chosen_target_and_skips_the_others() {
    let mut run = Run::new(ROUTE, json!({}));
    run.run(&["classify"], |_| json!({"kind": "question"}));
    assert_eq!(
        run.record(),
        vec![
            routed(Some("reply"), Some(2), json!({"kind": "question"})),
            skipped("escalate", "route `route` chose `reply`")
        ]
    );
    let reply = run.run(&["reply"], |_| json!({"sent": true}));
    assert_eq!(reply[0].input, json!({"kind": "question"}), "a route passes its input on");
    let log = run.run(&["log"], |_| json!({"logged": 1}));
    assert_eq!(log[0].input, json!({"reply": {"sent": true}}));
    assert_eq!(run.next(), Next::Complete(json!({"logged": 1})));
}

#[test]
fn a_route_where_no_case_holds_skips_every_target_and_what_needs_only_them() {
    let mut run = Run::new(ROUTE, json!({}));
    run.run(&["classify"], |_| json!({"kind": "other"}));
    assert_eq!(
        run.record(),
        vec![
            routed(None, None, json!({"kind": "other"})),
            skipped("escalate", "no case of route `route` held"),
            skipped("reply", "no case of route `route` held"),
        ]
    );
    assert_eq!(run.record(), vec![skipped("log", "every step it needs was skipped (escalate, reply)")]);
    assert_eq!(run.next(), Next::Complete(serde_json::Value::Null));
}

#[test]
fn a_target_named_by_two_cases_is_skipped_once() {
    let toml = ROUTE.replace(
        "  { when = \"steps.classify.kind == 'question'\", to = \"reply\" },\n",
        "  { when = \"steps.classify.kind == 'question'\", to = \"reply\" },\n  { to = \"escalate\" },\n",
    );
    let mut run = Run::new(&toml, json!({}));
    run.run(&["classify"], |_| json!({"kind": "question"}));
    assert_eq!(
        run.record(),
        vec![
            routed(Some("reply"), Some(2), json!({"kind": "question"})),
            skipped("escalate", "route `route` chose `reply`")
        ]
    );
    // The default case.
    let mut run = Run::new(&toml, json!({}));
    run.run(&["classify"], |_| json!({"kind": "other"}));
    assert_eq!(
        run.record(),
        vec![
            routed(Some("escalate"), Some(3), json!({"kind": "other"})),
            skipped("reply", "route `route` chose `escalate`")
        ]
    );
}

#[test]
fn an_interrupted_attempt_is_continued_from_the_journal_with_its_recorded_input() {
    let plan = plan("[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\ninput = \"{'n': input.n}\"\n");
    let read = EventKind::HostRead { step: "a".into(), read: HostRead::WallClock { nanos: 5 } };
    let events = journal(vec![run_started(&plan, json!({"n": 1})), started("a", 1, json!({"n": 99})), read.clone()]);
    let state = RunState::fold("r", &events).unwrap();
    let run = Run { state, ..Run::of(plan, json!({})) };
    let open = OpenAttempt {
        step: "a".into(),
        attempt: 1,
        input: json!({"n": 99}),
        interactions: vec![(3, read)],
        limits: None,
        usage_limits: Default::default(),
    };
    let expected = Launch {
        key: "a".into(),
        step: "a".into(),
        input: json!({"n": 99}),
        attempt: 1,
        resume: Some(open),
        not_before_us: None,
    };
    assert_eq!(run.next(), Next::Run(vec![expected]));
}
