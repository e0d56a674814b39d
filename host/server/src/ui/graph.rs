//! The workflow a run pinned, drawn as a graph: steps in columns by what they need, a
//! route's cases as dashed edges, fan-out and loop steps labelled with how many items or
//! iterations this run had, and the path the run took highlighted (the steps it reached,
//! coloured by how they ended, and the edges between them, the case a route chose).

use std::collections::HashMap;

use maud::{html, Markup};
use serde_json::Value;
use tether_types::event::{Event, EventKind};
use tether_types::plan::Plan;

/// What this run did at each step of the plan, from its events and its view.
#[derive(Default)]
struct Taken {
    /// Route key → the step it chose.
    routed: HashMap<String, Option<String>>,
    /// Fan-out step → how many items.
    items: HashMap<String, u32>,
    /// Loop → iterations ended.
    iterations: HashMap<String, u32>,
}

fn taken(events: &[Event]) -> Taken {
    let mut t = Taken::default();
    for e in events {
        match &e.kind {
            EventKind::Routed { step, to, .. } => {
                t.routed.insert(base(step).to_string(), to.clone());
            }
            EventKind::ForEachStarted { step, items } => {
                *t.items.entry(base(step).to_string()).or_default() += items;
            }
            EventKind::LoopIterationEnded { name, iteration, .. } => {
                let n = t.iterations.entry(name.clone()).or_default();
                *n = (*n).max(*iteration);
            }
            _ => {}
        }
    }
    t
}

/// A step key without its fan-out item (`[i]`) or loop iteration (`#k`).
fn base(key: &str) -> &str {
    key.split(['[', '#']).next().unwrap_or(key)
}

/// How a step of the plan went in this run, over all its items and iterations, as the
/// node's class: completed, failed, waiting, in_progress, skipped, or "" (not reached).
fn status_of<'a>(name: &str, steps: &'a [Value]) -> &'a str {
    let mut seen = Vec::new();
    for s in steps {
        let key = s["step"].as_str().unwrap_or("");
        if base(key) == name {
            seen.push(s["status"].as_str().unwrap_or(""));
        }
    }
    if seen.is_empty() {
        ""
    } else if seen.contains(&"failed") {
        "failed"
    } else if seen.contains(&"awaiting check") {
        "waiting"
    } else if seen.iter().all(|s| *s == "skipped") {
        "skipped"
    } else if seen.iter().all(|s| matches!(*s, "completed" | "skipped")) {
        "completed"
    } else {
        "in_progress"
    }
}

/// The graph of the plan pinned in `events`, with the path the run took (`steps` is the
/// run view's list of step keys and statuses).
pub(crate) fn graph(events: &[Event], steps: &[Value]) -> Markup {
    let plan = match events.first().map(|e| &e.kind) {
        Some(EventKind::RunStarted { plan, .. }) => serde_json::from_value::<Plan>(plan.clone()).ok(),
        _ => None,
    };
    let Some(mut plan) = plan.filter(|p| !p.steps.is_empty()) else { return html! {} };
    plan.normalize();
    let taken = taken(events);
    let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let needs: Vec<Vec<usize>> = plan
        .steps
        .iter()
        .map(|s| s.needs.iter().flatten().filter_map(|d| index.get(d.as_str()).copied()).collect())
        .collect();
    // Columns by the longest chain of needs; rows in plan order within a column.
    let mut depth = vec![0usize; names.len()];
    for i in 0..names.len() {
        depth[i] = needs[i].iter().filter(|d| **d < i).map(|d| depth[*d] + 1).max().unwrap_or(0);
    }
    let mut row_of = vec![0usize; names.len()];
    let mut used: HashMap<usize, usize> = HashMap::new();
    for i in 0..names.len() {
        let r = used.entry(depth[i]).or_default();
        row_of[i] = *r;
        *r += 1;
    }
    let status: Vec<&str> = names.iter().map(|n| status_of(n, steps)).collect();
    let (cw, rh, bw, bh) = (180.0, 50.0, 150.0, 30.0);
    let cols = depth.iter().max().map_or(1, |d| d + 1);
    let rows = used.values().max().copied().unwrap_or(1);
    let pos = |i: usize| (10.0 + depth[i] as f64 * cw, 10.0 + row_of[i] as f64 * rh);
    // (from, to, class, label)
    let mut edges: Vec<(usize, usize, String, Option<String>)> = Vec::new();
    for (i, deps) in needs.iter().enumerate() {
        for d in deps {
            let from = &plan.steps[*d];
            let reached = |s: &str| !matches!(s, "" | "skipped");
            let (class, label) = match &from.route {
                Some(cases) => {
                    let case = cases.iter().position(|c| c.to == names[i]);
                    let label = case.map(|k| match &cases[k].when {
                        Some(w) => format!("case {}: {w}", k + 1),
                        None => "default".to_string(),
                    });
                    let chosen = taken.routed.get(names[*d]).is_some_and(|to| to.as_deref() == Some(names[i]));
                    (if chosen { "edge route taken" } else { "edge route" }, label)
                }
                None if reached(status[*d]) && reached(status[i]) => ("edge taken", None),
                None => ("edge", None),
            };
            edges.push((*d, i, class.to_string(), label));
        }
    }
    let label = |i: usize| -> String {
        let s = &plan.steps[i];
        let mut text = s.name.clone();
        if s.route.is_some() {
            text.push_str(" ⇢");
        }
        if s.for_each.is_some() {
            match taken.items.get(&s.name) {
                Some(n) => text.push_str(&format!(" [×{n}]")),
                None => text.push_str(" [each]"),
            }
        }
        if let Some(l) = &s.in_loop {
            match taken.iterations.get(l) {
                Some(n) => text.push_str(&format!(" ↻{n}")),
                None => text.push_str(" ↻"),
            }
        }
        text
    };
    html! {
        div.graph {
            // Drawn at its natural size (a small graph stays small), narrowed to fit a phone.
            @let (w, h) = (cols as f64 * cw + 20.0, rows as f64 * rh + 20.0);
            svg width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="The workflow's steps and what each needs" {
                @for (from, to, class, text) in &edges {
                    @let ((x1, y1), (x2, y2)) = (pos(*from), pos(*to));
                    line class=(class) x1=(x1 + bw) y1=(y1 + bh / 2.0) x2=(x2) y2=(y2 + bh / 2.0) {
                        @if let Some(t) = text { title { (t) } }
                    }
                }
                @for i in 0..names.len() {
                    @let (x, y) = pos(i);
                    g class={ "node " (status[i]) } {
                        rect x=(x) y=(y) width=(bw) height=(bh) rx="6" {}
                        text x=(x + 8.0) y=(y + 19.0) { (label(i)) }
                        title { (names[i]) ": " (if status[i].is_empty() { "not reached" } else { status[i] }) }
                    }
                }
            }
            @if !plan.loops.is_empty() {
                ul.loops {
                    @for (name, l) in &plan.loops {
                        li { "Loop " b { (name) } ": until " code { (l.until) } ", at most " (l.max_iterations)
                            " iterations; this run: " (taken.iterations.get(name).copied().unwrap_or(0)) }
                    }
                }
            }
        }
    }
}
