//! What a run does next, decided from its state alone (the fold of its journal). Pure:
//! the driver asks, records what it is told (skips, routes, fan-outs, loop iterations)
//! or runs what is ready, and asks again. Because the decision depends only on the
//! journal, a resumed run decides exactly what the interrupted one would have. What the
//! driver records besides, pure as well and for the same reason, is decided in the
//! modules below: an attempt's end and its retry ([`after`]), approvals decided at a
//! deadline or by a gate's earned autonomy ([`approvals`]), and undoing the completed
//! steps of a failed or cancelled run ([`undo`]).
//!
//! Rules (the README's "Workflow language" section documents them for users):
//! - a step is ready when every step it needs has completed or been skipped;
//! - it is skipped when it needs steps and all of them were skipped, or when its `when`
//!   does not hold; a route skips the targets it does not choose;
//! - its input is its `input` expression, or by default the output of its one need, an
//!   object of its completed needs' outputs (several needs), or the run input (none);
//! - a `for_each` runs one instance per item, at most `concurrency` at once, and its
//!   output is the list of the items' outputs in item order;
//! - a loop's steps run as iteration 1, 2, ... until `until` holds or `max_iterations`
//!   is reached; outside the loop, its steps' outputs are those of the last iteration;
//! - the run's output is `[run] output`, or by default the output of the last step written.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use crate::expr::{Expr, Scope};
use crate::failure::FailureClass;
use crate::flow::Key;
use crate::plan::{OnExhausted, Plan, PlanStep};
use crate::report::RunError;
use crate::state::{OpenAttempt, Resolved, RunState};

pub mod after;
pub mod approvals;
mod checks;
mod make;
pub mod undo;
use checks::Gate;
use make::{default_input, failed, failure, invalid_input, launch};
#[cfg(test)]
mod tests;

/// A plan's expressions, compiled.
#[derive(Clone, Debug, Default)]
pub struct Flow {
    steps: BTreeMap<String, StepExprs>,
    loops: BTreeMap<String, Expr>,
    output: Option<Expr>,
    rules: crate::policy::Rules,
    /// Steps with an approval gate: the gate's condition (none: always).
    approval_when: BTreeMap<String, Option<Expr>>,
    /// Steps with an approval gate: the gate.
    approval_gate: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
struct StepExprs {
    input: Option<Expr>,
    when: Option<Expr>,
    for_each: Option<Expr>,
    route: Vec<(Option<Expr>, String)>,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Record these decisions (and apply them to the state), then ask again.
    Record(Vec<crate::EventKind>),
    /// Run these (possibly none: wait for running attempts to end), then ask again.
    Run(Vec<Launch>),
    /// The run fails (once running attempts have ended).
    Fail(RunError),
    /// The run completed with this output.
    Complete(Value),
    /// Nothing can run until these approval requests are decided.
    Wait(Vec<String>),
}

/// An attempt that is ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// The key of the run of the step (`name`, `name#K`, `name[I]`).
    pub key: String,
    /// The step.
    pub step: String,
    /// Its input.
    pub input: Value,
    /// The attempt number.
    pub attempt: u32,
    /// The interrupted attempt to continue, if any.
    pub resume: Option<OpenAttempt>,
    /// A retry's backoff ends at this time (microseconds since the Unix epoch).
    pub not_before_us: Option<u64>,
}

/// Where a loop stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoopStatus {
    /// Waiting for what its steps need from outside it.
    Waiting,
    /// Running this iteration.
    Active(u32),
    /// Over after this many iterations.
    Done(u32),
    /// Skipped: everything it needs was skipped.
    Skipped,
}

/// The status of something a step needs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Need<'a> {
    Pending,
    Completed(&'a Value),
    Skipped,
}

/// Where a step is evaluated: at the top, or in an iteration of a loop.
#[derive(Clone, Copy, Debug)]
struct At<'a> {
    in_loop: Option<&'a str>,
    iteration: Option<u32>,
}

impl Flow {
    /// Compiles a plan's expressions; a recorded plan whose expressions no longer compile
    /// cannot be run.
    pub fn compile(plan: &Plan) -> Result<Flow, String> {
        let compile = |what: &str, source: &Option<String>| -> Result<Option<Expr>, String> {
            source.as_deref().map(Expr::compile).transpose().map_err(|e| format!("{what}: {e}"))
        };
        let mut flow = Flow { output: compile("[run] output", &plan.output)?, ..Flow::default() };
        if let Some(policy) = &plan.policy {
            flow.rules = crate::policy::Rules::compile(policy)?;
        }
        for s in &plan.steps {
            if let Some(a) = &s.approval {
                flow.approval_when.insert(s.name.clone(), compile(&format!("step `{}` approval", s.name), &a.when)?);
                flow.approval_gate.insert(s.name.clone(), a.gate.clone());
            }
        }
        for s in &plan.steps {
            let exprs = StepExprs {
                input: compile(&format!("step `{}` input", s.name), &s.input)?,
                when: compile(&format!("step `{}` when", s.name), &s.when)?,
                for_each: compile(
                    &format!("step `{}` for_each", s.name),
                    &s.for_each.as_ref().map(|f| f.items.clone()),
                )?,
                route: s
                    .route
                    .iter()
                    .flatten()
                    .map(|c| Ok((compile(&format!("route `{}`", s.name), &c.when)?, c.to.clone())))
                    .collect::<Result<_, String>>()?,
            };
            flow.steps.insert(s.name.clone(), exprs);
        }
        for (name, l) in &plan.loops {
            flow.loops.insert(name.clone(), Expr::compile(&l.until).map_err(|e| format!("loop `{name}`: {e}"))?);
        }
        Ok(flow)
    }

    /// What the run does next. `busy` holds the keys of attempts running now; `now_us`
    /// (microseconds since the Unix epoch) starts the deadline of any approval requested.
    pub fn next(&self, state: &RunState, busy: &HashSet<String>, now_us: u64) -> Next {
        if let Some(error) = failure(state, busy) {
            return Next::Fail(error);
        }
        let mut record = Vec::new();
        let mut launches = Vec::new();
        // The top level, then each loop that is running an iteration.
        let mut scopes = vec![At { in_loop: None, iteration: None }];
        for (name, l) in &state.plan.loops {
            match self.loop_status(state, name) {
                LoopStatus::Active(k) => {
                    scopes.push(At { in_loop: Some(name), iteration: Some(k) });
                    if let Some(event) = self.end_of_iteration(state, name, k) {
                        match event {
                            Ok(event) => record.push(event),
                            Err(error) => return Next::Fail(error),
                        }
                    }
                }
                LoopStatus::Done(k)
                    if !state.loops.get(name).is_some_and(|s| s.converged) && l.on_exhausted == OnExhausted::Fail =>
                {
                    return Next::Fail(RunError {
                        class: FailureClass::LoopExhausted,
                        step: format!("loop {name}"),
                        message: format!("loop `{name}` ran its {k} iterations without `until` ({}) holding", l.until),
                    });
                }
                LoopStatus::Waiting if self.loop_needs_all_skipped(state, name) => {
                    for s in state.plan.steps.iter().filter(|s| s.in_loop.as_deref() == Some(name)) {
                        let reason = format!("loop `{name}` was skipped: every step it needs was skipped");
                        record.push(crate::EventKind::StepSkipped { step: s.name.clone(), reason });
                    }
                }
                _ => {}
            }
        }
        if !record.is_empty() {
            return Next::Record(record);
        }
        for at in &scopes {
            for step in state.plan.steps.iter().filter(|s| s.in_loop.as_deref() == at.in_loop) {
                match self.step_next(state, busy, step, *at, now_us, &mut launches) {
                    Some(events) if !events.is_empty() => return Next::Record(events),
                    _ => {}
                }
            }
        }
        if !launches.is_empty() || !busy.is_empty() {
            return Next::Run(launches);
        }
        let waiting: Vec<String> = state.pending_approvals().map(|a| a.id.clone()).collect();
        if !waiting.is_empty() {
            return Next::Wait(waiting);
        }
        match self.output(state) {
            Ok(Some(output)) => Next::Complete(output),
            Ok(None) => Next::Fail(RunError {
                class: FailureClass::HostFault,
                step: String::new(),
                message: "the run cannot go on: no step is ready and none is running (please report this)".into(),
            }),
            Err(error) => Next::Fail(error),
        }
    }

    /// Decides one step at `at`: events to record, or instances to launch.
    fn step_next(
        &self,
        state: &RunState,
        busy: &HashSet<String>,
        step: &PlanStep,
        at: At<'_>,
        now_us: u64,
        launches: &mut Vec<Launch>,
    ) -> Option<Vec<crate::EventKind>> {
        let key = Key::node(&step.name, at.iteration);
        let key_text = key.to_string();
        if state.resolved.contains_key(&key_text) {
            return None;
        }
        let exprs = self.steps.get(&step.name)?;
        if let Some(&count) = state.fanouts.get(&key_text) {
            return self.fan_out(state, busy, step, at, (&key, count), now_us, launches);
        }
        let instance = state.instances.get(&key_text);
        if let Some(output) = instance.and_then(|i| i.pending.clone()) {
            return self.check_output(state, &step.name, &key_text, output, now_us).events();
        }
        let started = instance.is_some() || busy.contains(&key_text);
        let needs = step.needs.as_deref().unwrap_or_default();
        let mut outputs = Vec::with_capacity(needs.len());
        let mut skipped = Vec::new();
        for need in needs {
            match self.need(state, need, at) {
                Need::Pending => return None,
                Need::Completed(v) => outputs.push((need, v)),
                Need::Skipped => skipped.push(need.as_str()),
            }
        }
        // The variables are gathered (cloning every output so far) only for a step that
        // has an expression to evaluate.
        let scope = std::cell::OnceCell::new();
        let scope = || scope.get_or_init(|| self.scope(state, at, None));
        if !started {
            if !needs.is_empty() && outputs.is_empty() {
                let reason = format!("every step it needs was skipped ({})", skipped.join(", "));
                return Some(vec![crate::EventKind::StepSkipped { step: key_text, reason }]);
            }
            if let Some(when) = &exprs.when {
                match when.eval_bool(scope()) {
                    Err(e) => return Some(vec![invalid_input(&key_text, 1, e)]),
                    Ok(false) => {
                        let reason = format!("`when` did not hold: {}", when.source());
                        return Some(vec![crate::EventKind::StepSkipped { step: key_text, reason }]);
                    }
                    Ok(true) => {}
                }
            }
        }
        let attempt = instance.map_or(0, |i| i.attempts) + 1;
        if let Some(items) = &exprs.for_each {
            // Each item's input is built when the item is launched (see `fan_out`).
            return Some(match items.eval_list(scope()) {
                Err(e) => vec![invalid_input(&key_text, attempt, e)],
                Ok(list) => {
                    let mut events =
                        vec![crate::EventKind::ForEachStarted { step: key_text.clone(), items: list.len() as u32 }];
                    if list.is_empty() {
                        events.push(crate::EventKind::ForEachGathered { step: key_text, output: Value::Array(vec![]) });
                    }
                    events
                }
            });
        }
        let input = match &exprs.input {
            Some(e) => e.eval(scope()),
            None => Ok(default_input(state, needs, &outputs)),
        };
        let input = match input {
            Ok(v) => v,
            Err(e) => return Some(vec![invalid_input(&key_text, attempt, e)]),
        };
        if step.route.is_some() {
            return Some(self.route(state, step, at, scope(), input));
        }
        if !busy.contains(&key_text) {
            let input = match self.check_input(state, &step.name, &key_text, input, now_us) {
                Gate::Go(input) => input,
                gate => return gate.events(),
            };
            if !checks::waits_in_call(state, &key_text) {
                launches.push(launch(&key_text, &step.name, input, instance));
            }
        }
        None
    }

    /// A fanned-out step: gather it once every item completed, otherwise launch items up
    /// to its concurrency.
    #[allow(clippy::too_many_arguments)]
    fn fan_out(
        &self,
        state: &RunState,
        busy: &HashSet<String>,
        step: &PlanStep,
        at: At<'_>,
        (key, count): (&Key, u32),
        now_us: u64,
        launches: &mut Vec<Launch>,
    ) -> Option<Vec<crate::EventKind>> {
        for i in 0..count {
            let item_key = key.with_item(i).to_string();
            if let Some(output) = state.instances.get(&item_key).and_then(|inst| inst.pending.clone()) {
                if let Some(events) = self.check_output(state, &step.name, &item_key, output, now_us).events() {
                    return Some(events);
                }
            }
        }
        let outputs: Vec<Option<&Value>> = (0..count)
            .map(|i| state.instances.get(&key.with_item(i).to_string()).and_then(|inst| inst.output.as_ref()))
            .collect();
        if outputs.iter().all(Option::is_some) {
            let output = Value::Array(outputs.into_iter().flatten().cloned().collect());
            return Some(vec![crate::EventKind::ForEachGathered { step: key.to_string(), output }]);
        }
        let exprs = self.steps.get(&step.name)?;
        let scope = self.scope(state, at, None);
        let items = match exprs.for_each.as_ref()?.eval_list(&scope) {
            Ok(items) if items.len() == count as usize => items,
            Ok(items) => {
                let message = format!(
                    "`for_each` gave {} items on resume, but {count} were recorded; the expression must depend only on the run input and step outputs",
                    items.len()
                );
                return Some(vec![failed(&key.to_string(), 1, FailureClass::HostFault, message)]);
            }
            Err(e) => return Some(vec![invalid_input(&key.to_string(), 1, e)]),
        };
        let cap = step.for_each.as_ref().map_or(1, |f| f.concurrency.max(1)) as usize;
        let prefix = format!("{key}[");
        let mut running = busy.iter().filter(|k| k.starts_with(&prefix)).count();
        for (i, item) in items.into_iter().enumerate() {
            if running >= cap {
                break;
            }
            let item_key = key.with_item(i as u32).to_string();
            let instance = state.instances.get(&item_key);
            if busy.contains(&item_key) || instance.is_some_and(|inst| inst.output.is_some()) {
                continue;
            }
            let scope = Scope { item: Some((item.clone(), i)), ..scope.clone() };
            let attempt = instance.map_or(0, |inst| inst.attempts) + 1;
            let input = match &exprs.input {
                Some(e) => match e.eval(&scope) {
                    Ok(v) => v,
                    Err(e) => return Some(vec![invalid_input(&item_key, attempt, e)]),
                },
                None => item,
            };
            if instance.is_some_and(|inst| inst.pending.is_some()) {
                continue;
            }
            let input = match self.check_input(state, &step.name, &item_key, input, now_us) {
                Gate::Go(input) => input,
                Gate::Wait => continue,
                gate => return gate.events(),
            };
            if checks::waits_in_call(state, &item_key) {
                continue;
            }
            launches.push(launch(&item_key, &step.name, input, instance));
            running += 1;
        }
        None
    }

    /// A route step: the first case that holds picks its target; the others are skipped.
    fn route(
        &self,
        state: &RunState,
        step: &PlanStep,
        at: At<'_>,
        scope: &Scope,
        input: Value,
    ) -> Vec<crate::EventKind> {
        let key = Key::node(&step.name, at.iteration).to_string();
        let cases = self.steps.get(&step.name).map(|e| e.route.as_slice()).unwrap_or_default();
        let mut chosen = None;
        for (i, (when, to)) in cases.iter().enumerate() {
            let holds = match when {
                None => Ok(true),
                Some(w) => w.eval_bool(scope),
            };
            match holds {
                Err(e) => return vec![invalid_input(&key, 1, e)],
                Ok(true) => {
                    chosen = Some((i as u32 + 1, to.clone()));
                    break;
                }
                Ok(false) => {}
            }
        }
        let mut events = vec![crate::EventKind::Routed {
            step: key,
            to: chosen.as_ref().map(|(_, to)| to.clone()),
            case: chosen.as_ref().map(|(i, _)| *i),
            output: input,
        }];
        // A target may be named by several cases, not only by neighbouring ones: skip it once.
        let mut targets: Vec<&String> = Vec::new();
        for (_, to) in cases {
            if !targets.contains(&to) {
                targets.push(to);
            }
        }
        for to in targets {
            if chosen.as_ref().is_some_and(|(_, c)| c == to) || state.plan.step(to).is_none() {
                continue;
            }
            let reason = match &chosen {
                Some((_, c)) => format!("route `{}` chose `{c}`", step.name),
                None => format!("no case of route `{}` held", step.name),
            };
            events.push(crate::EventKind::StepSkipped { step: Key::node(to, at.iteration).to_string(), reason });
        }
        events
    }

    /// The loop-iteration event once every step of iteration `k` has completed or been skipped.
    fn end_of_iteration(&self, state: &RunState, name: &str, k: u32) -> Option<Result<crate::EventKind, RunError>> {
        let body = state.plan.steps.iter().filter(|s| s.in_loop.as_deref() == Some(name));
        if !body.clone().all(|s| state.resolved.contains_key(&Key::node(&s.name, Some(k)).to_string())) {
            return None;
        }
        let until = self.loops.get(name)?;
        let scope = self.scope(state, At { in_loop: Some(name), iteration: Some(k) }, None);
        Some(match until.eval_bool(&scope) {
            Ok(until) => Ok(crate::EventKind::LoopIterationEnded { name: name.to_string(), iteration: k, until }),
            Err(message) => Err(RunError { class: FailureClass::InvalidInput, step: format!("loop {name}"), message }),
        })
    }

    fn loop_status(&self, state: &RunState, name: &str) -> LoopStatus {
        let Some(l) = state.plan.loops.get(name) else { return LoopStatus::Skipped };
        let first = state.plan.steps.iter().find(|s| s.in_loop.as_deref() == Some(name));
        if first.is_some_and(|s| matches!(state.resolved.get(&s.name), Some(Resolved::Skipped(_)))) {
            return LoopStatus::Skipped;
        }
        let progress = state.loops.get(name).copied().unwrap_or_default();
        if progress.iterations > 0 && (progress.converged || progress.iterations >= l.max_iterations) {
            return LoopStatus::Done(progress.iterations);
        }
        let ready = self
            .loop_needs(state, name)
            .iter()
            .all(|n| self.need(state, n, At { in_loop: None, iteration: None }) != Need::Pending);
        if ready && !self.loop_needs_all_skipped(state, name) {
            LoopStatus::Active(progress.iterations + 1)
        } else {
            LoopStatus::Waiting
        }
    }

    /// What a loop's steps need from outside it.
    fn loop_needs<'p>(&self, state: &'p RunState, name: &str) -> Vec<&'p String> {
        let body: HashSet<&str> =
            state.plan.steps.iter().filter(|s| s.in_loop.as_deref() == Some(name)).map(|s| s.name.as_str()).collect();
        let mut needs: Vec<&String> = state
            .plan
            .steps
            .iter()
            .filter(|s| body.contains(s.name.as_str()))
            .flat_map(|s| s.needs.iter().flatten())
            .filter(|n| !body.contains(n.as_str()))
            .collect();
        needs.sort();
        needs.dedup();
        needs
    }

    fn loop_needs_all_skipped(&self, state: &RunState, name: &str) -> bool {
        let needs = self.loop_needs(state, name);
        !needs.is_empty()
            && needs.iter().all(|n| self.need(state, n, At { in_loop: None, iteration: None }) == Need::Skipped)
    }

    /// The status of step `name` as seen from `at`.
    fn need<'s>(&self, state: &'s RunState, name: &str, at: At<'_>) -> Need<'s> {
        use std::borrow::Cow;
        let Some(step) = state.plan.step(name) else { return Need::Skipped };
        let key: Cow<'_, str> = match (step.in_loop.as_deref(), at.in_loop) {
            (Some(l), Some(here)) if l == here => Key::node(name, at.iteration).to_string().into(),
            (Some(l), _) => match self.loop_status(state, l) {
                LoopStatus::Done(k) => Key::node(name, Some(k)).to_string().into(),
                LoopStatus::Skipped => name.into(),
                _ => return Need::Pending,
            },
            (None, _) => name.into(),
        };
        match state.resolved.get(key.as_ref()) {
            Some(Resolved::Completed(v)) => Need::Completed(v),
            Some(Resolved::Skipped(_)) => Need::Skipped,
            None => Need::Pending,
        }
    }

    /// The variables of an expression evaluated at `at`.
    fn scope(&self, state: &RunState, at: At<'_>, item: Option<(Value, usize)>) -> Scope {
        let mut steps = Map::new();
        for s in &state.plan.steps {
            if let Need::Completed(v) = self.need(state, &s.name, at) {
                steps.insert(s.name.clone(), v.clone());
            }
        }
        let in_loop = match (at.in_loop, at.iteration) {
            (Some(name), Some(k)) => {
                let mut previous = Map::new();
                for s in state.plan.steps.iter().filter(|s| s.in_loop.as_deref() == Some(name)) {
                    if let Some(Resolved::Completed(v)) =
                        state.resolved.get(&Key::node(&s.name, Some(k - 1)).to_string())
                    {
                        previous.insert(s.name.clone(), v.clone());
                    }
                }
                Some((k, Value::Object(previous)))
            }
            _ => None,
        };
        Scope { input: state.input.clone(), steps, item, in_loop }
    }

    /// The run's output once every step at the top level is resolved; `None` before.
    fn output(&self, state: &RunState) -> Result<Option<Value>, RunError> {
        let top = At { in_loop: None, iteration: None };
        let mut last = None;
        for s in &state.plan.steps {
            match self.need(state, &s.name, top) {
                Need::Pending => return Ok(None),
                Need::Completed(v) => last = Some(v),
                Need::Skipped => last = None,
            }
        }
        match &self.output {
            None => Ok(Some(last.cloned().unwrap_or(Value::Null))),
            Some(e) => e.eval(&self.scope(state, top, None)).map(Some).map_err(|message| RunError {
                class: FailureClass::InvalidInput,
                step: "[run] output".into(),
                message,
            }),
        }
    }
}
