//! Loops: iterations as `name#K`, `until` checked after each, exhaustion.

use serde_json::{json, Value};

use crate::event::EventKind;
use crate::failure::FailureClass;
use crate::next::Next;
use crate::state::LoopState;
use crate::testing::Run;

const LOOP: &str = r#"
[[steps]]
name = "plan"
needs = []
component = "plan.wasm"
when = "input.go"

[loops.fix]
until = "steps.test.passed"
max_iterations = 3

[[steps]]
name = "generate"
needs = ["plan"]
loop = "fix"
component = "generate.wasm"
input = "{'plan': steps.plan, 'iteration': iteration, 'previous': previous}"

[[steps]]
name = "test"
needs = ["generate"]
loop = "fix"
component = "test.wasm"

[[steps]]
name = "ship"
needs = ["test"]
component = "ship.wasm"
"#;

fn ended(iteration: u32, until: bool) -> EventKind {
    EventKind::LoopIterationEnded { name: "fix".into(), iteration, until }
}

/// Runs iteration `k` of the loop; its test passes or not.
fn iteration(run: &mut Run, k: u32, passed: bool) -> Value {
    let generate = run.run(&[&format!("generate#{k}")], |_| json!({"code": k}));
    let test = run.run(&[&format!("test#{k}")], |_| json!({"passed": passed, "k": k}));
    assert_eq!(test[0].input, json!({"code": k}), "the output of its need in the same iteration");
    assert_eq!(run.record(), vec![ended(k, passed)]);
    generate[0].input.clone()
}

#[test]
fn iterations_advance_until_until_holds_and_later_steps_see_the_last_one() {
    let mut run = Run::new(LOOP, json!({"go": true}));
    run.run(&["plan"], |_| json!({"p": 1}));
    let first = iteration(&mut run, 1, false);
    assert_eq!(first, json!({"plan": {"p": 1}, "iteration": 1, "previous": {}}));
    assert_eq!(run.state.loops["fix"], LoopState { iterations: 1, converged: false });
    let second = iteration(&mut run, 2, true);
    assert_eq!(
        second,
        json!({"plan": {"p": 1}, "iteration": 2, "previous": {"generate": {"code": 1}, "test": {"passed": false, "k": 1}}})
    );
    assert_eq!(run.state.loops["fix"], LoopState { iterations: 2, converged: true });
    let ship = run.run(&["ship"], |_| json!("shipped"));
    assert_eq!(ship[0].input, json!({"passed": true, "k": 2}));
    assert_eq!(run.next(), Next::Complete(json!("shipped")));
}

#[test]
fn a_loop_that_runs_out_of_iterations_fails_the_run_as_loop_exhausted() {
    let mut run = Run::new(LOOP, json!({"go": true}));
    run.run(&["plan"], |_| json!({}));
    for k in 1..=3 {
        iteration(&mut run, k, false);
    }
    let Next::Fail(error) = run.next() else { panic!("expected the run to fail") };
    assert_eq!((error.class, error.step.as_str()), (FailureClass::LoopExhausted, "loop fix"));
    assert_eq!(error.message, "loop `fix` ran its 3 iterations without `until` (steps.test.passed) holding");
    assert!(!run.state.instances.contains_key("ship"));
}

#[test]
fn a_loop_that_continues_when_exhausted_goes_on_with_its_last_iteration() {
    let toml = LOOP.replace("max_iterations = 3\n", "max_iterations = 2\non_exhausted = \"continue\"\n");
    let mut run = Run::new(&toml, json!({"go": true}));
    run.run(&["plan"], |_| json!({}));
    iteration(&mut run, 1, false);
    iteration(&mut run, 2, false);
    let ship = run.run(&["ship"], |_| json!("shipped anyway"));
    assert_eq!(ship[0].input, json!({"passed": false, "k": 2}));
    assert_eq!(run.next(), Next::Complete(json!("shipped anyway")));
}

#[test]
fn a_loop_whose_needs_were_all_skipped_is_skipped_whole() {
    let mut run = Run::new(LOOP, json!({"go": false}));
    assert!(matches!(&run.record()[..], [EventKind::StepSkipped { step, .. }] if step == "plan"));
    let reason = "loop `fix` was skipped: every step it needs was skipped";
    assert_eq!(
        run.record(),
        vec![
            EventKind::StepSkipped { step: "generate".into(), reason: reason.into() },
            EventKind::StepSkipped { step: "test".into(), reason: reason.into() },
        ]
    );
    assert_eq!(
        run.record(),
        vec![EventKind::StepSkipped { step: "ship".into(), reason: "every step it needs was skipped (test)".into() }]
    );
    assert_eq!(run.next(), Next::Complete(Value::Null));
}

#[test]
fn an_until_that_cannot_be_evaluated_fails_the_run_as_invalid_input() {
    let mut run = Run::new(LOOP, json!({"go": true}));
    run.run(&["plan"], |_| json!({}));
    run.run(&["generate#1"], |_| json!({}));
    run.run(&["test#1"], |_| json!({"no": "verdict"}));
    let Next::Fail(error) = run.next() else { panic!("expected the run to fail") };
    assert_eq!((error.class, error.step.as_str()), (FailureClass::InvalidInput, "loop fix"));
}
