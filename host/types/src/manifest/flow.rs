//! Checks of the flow fields: `needs` (names exist, no cycles), expressions (they
//! compile), `for_each`, routes, loops and `[run] output`. Every problem is reported
//! at its field, with a hint.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use toml::Spanned;

use super::raw::{RawStep, RawWorkflow};
use super::{ForEach, LoopSpec, RouteCase, StepSpec};
use crate::expr::Expr;
use crate::flow::{cycles, GraphStep};

/// The default and the largest `concurrency` of a `for_each`.
pub const DEFAULT_CONCURRENCY: u32 = 4;
const MAX_CONCURRENCY: u32 = 64;
const MAX_ITERATIONS: u32 = 1000;

type Err<'a> = dyn FnMut(Range<usize>, String, Option<&str>) + 'a;

/// Fills the flow fields of `steps` (parallel to `raw.steps`) and returns the loops and
/// the run output expression.
pub(super) fn check(
    raw: &RawWorkflow,
    steps: &mut [StepSpec],
    err: &mut impl FnMut(Range<usize>, String, Option<&str>),
) -> (BTreeMap<String, LoopSpec>, Option<Expr>) {
    let err: &mut Err<'_> = err;
    let names: HashSet<&str> = raw.steps.iter().map(|s| s.name.get_ref().as_str()).collect();

    let mut loops = BTreeMap::new();
    for (name, l) in &raw.loops {
        if names.contains(name.get_ref().as_str()) {
            err(name.span(), format!("loop `{}` has the name of a step", name.get_ref()), Some("rename one of them"));
        }
        let until = expr(&l.until, &format!("loop `{}` `until`", name.get_ref()), err);
        let max = *l.max_iterations.get_ref();
        if !(1..=MAX_ITERATIONS).contains(&max) {
            err(
                l.max_iterations.span(),
                format!("loop `{}`: `max_iterations` must be 1 to {MAX_ITERATIONS}", name.get_ref()),
                None,
            );
        }
        if !raw.steps.iter().any(|s| s.in_loop.as_ref().is_some_and(|n| n.get_ref() == name.get_ref())) {
            err(
                name.span(),
                format!("loop `{}` has no steps", name.get_ref()),
                Some("add `loop = \"NAME\"` to the steps that repeat"),
            );
        }
        if let Some(until) = until {
            loops.insert(name.get_ref().clone(), LoopSpec { until, max_iterations: max, on_exhausted: l.on_exhausted });
        }
    }

    for (i, (raw_step, step)) in raw.steps.iter().zip(steps.iter_mut()).enumerate() {
        let name = raw_step.name.get_ref().clone();
        step.flow.in_loop = raw_step.in_loop.as_ref().map(|l| {
            if !raw.loops.keys().any(|k| k.get_ref() == l.get_ref()) {
                err(
                    l.span(),
                    format!("step `{name}` is in loop `{}`, which is not declared", l.get_ref()),
                    Some(&format!("declare it with a `[loops.{}]` table (`until`, `max_iterations`)", l.get_ref())),
                );
            }
            l.get_ref().clone()
        });
        step.flow.needs = match &raw_step.needs {
            Some(needs) => {
                let mut list = Vec::new();
                for n in needs.get_ref() {
                    if n.get_ref() == &name {
                        err(n.span(), format!("step `{name}` needs itself"), Some("remove it from its own `needs`"));
                    } else if !names.contains(n.get_ref().as_str()) {
                        err(
                            n.span(),
                            format!("step `{name}` needs `{}`, which is not a step", n.get_ref()),
                            Some(&format!("steps: {}", sorted(&names))),
                        );
                    } else if !list.contains(n.get_ref()) {
                        list.push(n.get_ref().clone());
                    }
                }
                list
            }
            // By default a step needs the one written before it: a pipeline.
            None => i.checked_sub(1).map(|p| vec![raw.steps[p].name.get_ref().clone()]).unwrap_or_default(),
        };
        step.flow.input = raw_step.input.as_ref().and_then(|e| expr(e, &format!("step `{name}` `input`"), err));
        step.flow.when = raw_step.when.as_ref().and_then(|e| expr(e, &format!("step `{name}` `when`"), err));
        step.flow.for_each = for_each(raw_step, &name, err);
        step.flow.route = route(raw_step, &name, err);
    }

    check_routes(raw, steps, err);
    let graph: Vec<GraphStep<'_>> = steps
        .iter()
        .map(|s| GraphStep { name: &s.name, needs: &s.flow.needs, in_loop: s.flow.in_loop.as_deref() })
        .collect();
    for cycle in cycles(&graph) {
        let first = cycle.split(" -> ").next().unwrap_or_default();
        let span = raw.steps.iter().find(|s| s.name.get_ref() == first).map_or(0..0, |s| s.name.span());
        err(
            span,
            format!("the steps' `needs` form a cycle: {cycle}"),
            Some("a step can only need steps that do not (directly or through others) need it"),
        );
    }

    let output = raw.run.as_ref().and_then(|r| r.output.as_ref()).and_then(|e| expr(e, "[run] `output`", err));
    (loops, output)
}

fn expr(source: &Spanned<String>, what: &str, err: &mut Err<'_>) -> Option<Expr> {
    match Expr::compile(source.get_ref()) {
        Ok(e) => Some(e),
        Err(problem) => {
            err(
                source.span(),
                format!("{what}: {problem}"),
                Some("expressions are CEL, for example `steps.classify.category == \"billing\"`"),
            );
            None
        }
    }
}

fn for_each(raw: &RawStep, name: &str, err: &mut Err<'_>) -> Option<ForEach> {
    let concurrency = raw.concurrency.as_ref().map(|c| (c.span(), *c.get_ref()));
    let Some(items) = &raw.for_each else {
        if let Some((span, _)) = concurrency {
            err(
                span,
                format!("step `{name}` has `concurrency` but no `for_each`"),
                Some("remove it, or add `for_each`"),
            );
        }
        return None;
    };
    let concurrency = match concurrency {
        Some((span, c)) if !(1..=MAX_CONCURRENCY).contains(&c) => {
            err(
                span,
                format!("step `{name}`: `concurrency` must be 1 to {MAX_CONCURRENCY}"),
                Some("remove it for the default, or give a number in that range"),
            );
            DEFAULT_CONCURRENCY
        }
        Some((_, c)) => c,
        None => DEFAULT_CONCURRENCY,
    };
    expr(items, &format!("step `{name}` `for_each`"), err).map(|items| ForEach { items, concurrency })
}

fn route(raw: &RawStep, name: &str, err: &mut Err<'_>) -> Option<Vec<RouteCase>> {
    let cases = raw.route.as_ref()?;
    let not_for_routes = [
        ("component", raw.component.as_ref().map(|c| c.span())),
        ("for_each", raw.for_each.as_ref().map(|c| c.span())),
        ("tools", raw.tools.first().map(|t| t.span())),
        ("budget", raw.budget.as_ref().map(|b| b.span())),
        ("retry", raw.retry.as_ref().map(|r| r.span())),
        ("compensate", raw.compensate.as_ref().map(|c| c.span())),
    ];
    for (field, span) in not_for_routes {
        if let Some(span) = span {
            err(
                span,
                format!("step `{name}` is a route, which runs no component; it cannot have `{field}`"),
                Some("move it to the steps the route leads to"),
            );
        }
    }
    if cases.get_ref().is_empty() {
        err(cases.span(), format!("route `{name}` has no cases"), Some("add `{ when = \"...\", to = \"STEP\" }`"));
    }
    let last = cases.get_ref().len().saturating_sub(1);
    let mut out = Vec::new();
    for (i, case) in cases.get_ref().iter().enumerate() {
        if case.when.is_none() && i != last {
            err(
                case.to.span(),
                format!("route `{name}`: only the last case may leave out `when`"),
                Some("the case without `when` is the default; put it last"),
            );
        }
        let when = case.when.as_ref().and_then(|w| expr(w, &format!("route `{name}` case {}", i + 1), err));
        out.push(RouteCase { when, to: case.to.get_ref().clone() });
    }
    Some(out)
}

/// Each route target must be a step in the route's scope that needs the route.
fn check_routes(raw: &RawWorkflow, steps: &[StepSpec], err: &mut Err<'_>) {
    for (raw_step, step) in raw.steps.iter().zip(steps) {
        let Some(cases) = &raw_step.route else { continue };
        let mut seen = HashSet::new();
        for case in cases.get_ref() {
            let to = case.to.get_ref();
            let Some(target) = steps.iter().find(|s| &s.name == to) else {
                err(
                    case.to.span(),
                    format!("route `{}` leads to `{to}`, which is not a step", step.name),
                    Some("name a step of this workflow in `to`"),
                );
                continue;
            };
            if !seen.insert(to) {
                continue;
            }
            if !target.flow.needs.contains(&step.name) {
                err(
                    case.to.span(),
                    format!("route `{}` leads to `{to}`, which does not need it", step.name),
                    Some(&format!("add `needs = [\"{}\"]` to step `{to}`", step.name)),
                );
            } else if target.flow.in_loop != step.flow.in_loop {
                err(
                    case.to.span(),
                    format!("route `{}` leads to `{to}`, which is not in the same loop", step.name),
                    None,
                );
            }
        }
    }
}

fn sorted(names: &HashSet<&str>) -> String {
    let mut v: Vec<&str> = names.iter().copied().collect();
    v.sort_unstable();
    v.join(", ")
}
