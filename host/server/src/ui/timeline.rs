//! A run's timeline as server-rendered SVG: one row per step key (fan-out items `name[i]`
//! and loop iterations `name#k` get rows of their own), attempts as bars coloured by how
//! they ended, retry backoffs and approval waits as bars, and tool, HTTP and model calls
//! and the policy's refusals as marks with their verdicts.
//!
//! The drawing is bounded whatever the run's size: at most [`MAX_ROWS`] rows, and the marks
//! of a row merged into [`MARK_SLOTS`] slots along the axis (a slot shows the worst verdict
//! among its calls and counts them). A run of 100,000 events draws as a few hundred
//! kilobytes, not as 100,000 shapes.

use std::collections::HashMap;

use maud::{html, Markup};
use tether_types::event::{Event, EventKind, ToolResult};
use tether_types::exchange::{HttpError, HttpOutcome};
use tether_types::model::ModelOutcome;
use tether_types::policy::Verdict;
use tether_types::{FailureClass, GuestFailureKind};

/// Rows drawn at most; the rest are counted under the chart.
pub(crate) const MAX_ROWS: usize = 120;
/// Slots a row's marks are merged into along the time axis.
const MARK_SLOTS: u64 = 96;
/// Lines of a slot's tooltip; further calls are counted.
const SLOT_LINES: usize = 4;

/// How a call went, in order of concern: a slot of several calls shows the worst.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Verdicts {
    Ok,
    Approval,
    Failed,
    Denied,
}

impl Verdicts {
    fn class(self) -> &'static str {
        match self {
            Verdicts::Ok => "ok",
            Verdicts::Approval => "approval",
            Verdicts::Failed => "failed",
            Verdicts::Denied => "denied",
        }
    }
}

/// The marks merged into one slot of one row.
struct Slot {
    first_us: u64,
    count: u32,
    worst: Verdicts,
    lines: Vec<String>,
}

/// An approval request, with its decisions so far.
struct Asked {
    step: String,
    at: u64,
    lines: Vec<String>,
    decided: Option<u64>,
}

/// A bar: an attempt, a backoff or an approval wait.
struct Bar {
    row: usize,
    from: u64,
    to: u64,
    class: &'static str,
    title: String,
}

/// Rows by step key, in the order the journal first names them, up to [`MAX_ROWS`].
#[derive(Default)]
struct Rows {
    keys: Vec<String>,
    index: HashMap<String, usize>,
    hidden: std::collections::HashSet<String>,
}

impl Rows {
    fn of(&mut self, key: &str) -> Option<usize> {
        if let Some(r) = self.index.get(key) {
            return Some(*r);
        }
        if self.keys.len() >= MAX_ROWS {
            if !self.hidden.contains(key) {
                self.hidden.insert(key.to_string());
            }
            return None;
        }
        self.keys.push(key.to_string());
        self.index.insert(key.to_string(), self.keys.len() - 1);
        Some(self.keys.len() - 1)
    }
}

/// Everything drawn, gathered in one pass over the events.
struct Drawing {
    t0: u64,
    t1: u64,
    rows: Rows,
    bars: Vec<Bar>,
    slots: HashMap<(usize, u64), Slot>,
}

impl Drawing {
    fn slot_of(&self, at: u64) -> u64 {
        ((at.saturating_sub(self.t0)) * MARK_SLOTS / (self.t1 - self.t0)).min(MARK_SLOTS - 1)
    }

    fn mark(&mut self, step: &str, at: u64, verdict: Verdicts, line: impl FnOnce() -> String) {
        let Some(row) = self.rows.of(step) else { return };
        let slot = self.slot_of(at);
        let s =
            self.slots.entry((row, slot)).or_insert(Slot { first_us: at, count: 0, worst: verdict, lines: Vec::new() });
        s.count += 1;
        s.worst = s.worst.max(verdict);
        if s.lines.len() < SLOT_LINES {
            s.lines.push(line());
        }
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        format!("{}…", text.chars().take(max).collect::<String>())
    } else {
        text.to_string()
    }
}

/// The policy's word on a tool call, when it gave one other than a plain allow.
fn verdict_note(v: Option<&(Verdict, Option<String>)>) -> String {
    match v {
        Some((verdict, rule)) => {
            let rule = rule.as_deref().map(|r| format!(" by rule {r}")).unwrap_or_default();
            format!(" (policy: {}{rule})", verdict.as_str())
        }
        None => String::new(),
    }
}

fn gather(events: &[Event]) -> Option<Drawing> {
    let first = events.first()?;
    let t0 = first.at_us;
    let t1 = events.iter().map(|e| e.at_us).max().unwrap_or(t0).max(t0 + 1);
    let mut d = Drawing { t0, t1, rows: Rows::default(), bars: Vec::new(), slots: HashMap::new() };
    // Attempts begun and not yet ended, approval requests not yet settled, and the
    // policy's verdicts on tool calls in flight: keyed by step (and call).
    let mut open: HashMap<String, (u64, u32)> = HashMap::new();
    let mut asked: HashMap<String, Asked> = HashMap::new();
    let mut verdicts: HashMap<(String, u32), (Verdict, Option<String>)> = HashMap::new();
    for e in events {
        match &e.kind {
            EventKind::StepAttemptStarted { step, attempt, .. } => {
                d.rows.of(step);
                open.insert(step.clone(), (e.at_us, *attempt));
            }
            EventKind::StepCompleted { step, .. } | EventKind::StepFailed { step, .. } => {
                let (from, attempt) = open.remove(step).unwrap_or((e.at_us, 0));
                let Some(row) = d.rows.of(step) else { continue };
                let (class, title) = match &e.kind {
                    EventKind::StepFailed { failure, .. } => (
                        "failed",
                        format!(
                            "{step}: attempt {attempt} failed ({}): {}",
                            failure.class.as_str(),
                            short(&failure.message, 160)
                        ),
                    ),
                    _ => ("ok", format!("{step}: attempt {attempt} completed")),
                };
                d.bars.push(Bar { row, from, to: e.at_us, class, title });
            }
            EventKind::RetryScheduled { step, not_before_us, .. } => {
                if let Some(row) = d.rows.of(step) {
                    let title = format!("{step}: backoff before the next attempt");
                    d.bars.push(Bar { row, from: e.at_us, to: (*not_before_us).min(t1), class: "backoff", title });
                }
            }
            EventKind::ApprovalRequested { id, step, gate, .. } => {
                let lines = vec![format!("gate {gate}")];
                asked.insert(id.clone(), Asked { step: step.clone(), at: e.at_us, lines, decided: None });
            }
            EventKind::ApprovalDecided { id, by, decision, comment, .. } => {
                if let Some(a) = asked.get_mut(id) {
                    let comment = comment.as_deref().map(|c| format!(": {}", short(c, 120))).unwrap_or_default();
                    a.lines.push(format!("{} by {by} at {}{comment}", decision.as_str(), clock(e.at_us)));
                    a.decided = Some(e.at_us);
                }
            }
            EventKind::PolicyVerdict { step, call, verdict, rule, on, .. } => match (call, verdict) {
                (Some(_), Verdict::Allow) if rule.is_none() => {}
                (Some(call), _) => {
                    verdicts.insert((step.clone(), *call), (*verdict, rule.clone()));
                }
                (None, Verdict::Allow) => {}
                (None, v) => {
                    let class = if *v == Verdict::Deny { Verdicts::Denied } else { Verdicts::Approval };
                    let rule = rule.as_deref().map(|r| format!(" by rule {r}")).unwrap_or_default();
                    d.mark(step, e.at_us, class, || format!("policy at {}: {}{rule}", on.as_str(), v.as_str()));
                }
            },
            EventKind::ToolCallCompleted { step, call, tool, result, wall_us, .. } => {
                let note = verdict_note(verdicts.remove(&(step.clone(), *call)).as_ref());
                let (class, word) = match result {
                    ToolResult::Ok(_) => (Verdicts::Ok, "ok".to_string()),
                    ToolResult::Err { kind, class, message } => {
                        let denied = *kind == GuestFailureKind::Denied || *class == Some(FailureClass::Denied);
                        let class = if denied { Verdicts::Denied } else { Verdicts::Failed };
                        (class, format!("{}: {}", class.class(), short(message, 100)))
                    }
                };
                d.mark(step, e.at_us, class, || {
                    format!("tool {tool} (call {call}): {word}{note}, {:.1} ms", *wall_us as f64 / 1e3)
                });
            }
            EventKind::HttpExchanged { step, request, outcome, .. } => {
                let (class, word) = match outcome {
                    HttpOutcome::Answer { status, .. } if *status < 400 => (Verdicts::Ok, status.to_string()),
                    HttpOutcome::Answer { status, .. } => (Verdicts::Failed, status.to_string()),
                    HttpOutcome::Failed { error: HttpError::Denied, .. } => (Verdicts::Denied, "denied".into()),
                    HttpOutcome::Failed { error, .. } => (Verdicts::Failed, error.as_str().into()),
                };
                d.mark(step, e.at_us, class, || format!("{} {} → {word}", request.method, short(&request.url, 120)));
            }
            EventKind::ModelCalled { step, outcome, usage, .. } => {
                let (class, word) = match outcome {
                    ModelOutcome::Answer { .. } => (Verdicts::Ok, "answered".to_string()),
                    ModelOutcome::Failed { error, .. } => (Verdicts::Failed, error.as_str().to_string()),
                };
                let tokens = usage.get("tokens").map(|t| format!(", {t} tokens")).unwrap_or_default();
                d.mark(step, e.at_us, class, || format!("model call: {word}{tokens}"));
            }
            _ => {}
        }
    }
    for (step, (from, attempt)) in open {
        if let Some(row) = d.rows.of(&step) {
            d.bars.push(Bar {
                row,
                from,
                to: t1,
                class: "open",
                title: format!("{step}: attempt {attempt}, not ended"),
            });
        }
    }
    // Approval waits: from the request to its last decision, or still open.
    for (id, a) in asked {
        if let Some(row) = d.rows.of(&a.step) {
            let (to, class, title) = match a.decided {
                Some(at) => (at, "approval", format!("{id}: {}", a.lines.join("; "))),
                None => (t1, "approval waiting", format!("{id}: waiting for a decision")),
            };
            d.bars.push(Bar { row, from: a.at, to, class, title });
        }
    }
    d.bars.sort_by(|a, b| (a.row, a.from, a.class).cmp(&(b.row, b.from, b.class)));
    Some(d)
}

/// Time of day (UTC) of a journal time.
fn clock(us: u64) -> String {
    let s = us / 1_000_000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// The timeline of a run's events.
pub(crate) fn timeline(events: &[Event]) -> Markup {
    let Some(d) = gather(events) else { return html! { p.empty { "No events." } } };
    let mut slots: Vec<((usize, u64), Slot)> = d.slots.into_iter().collect();
    slots.sort_by_key(|((row, slot), _)| (*row, *slot));
    let (label_w, width, row_h) = (170.0, 640.0, 22.0);
    let (t0, t1) = (d.t0, d.t1);
    let x = |us: u64| label_w + (us.saturating_sub(t0) as f64 / (t1 - t0) as f64) * width;
    let height = row_h * d.rows.keys.len().max(1) as f64 + 20.0;
    html! {
        div.timeline {
            svg viewBox={ "0 0 " (label_w + width + 10.0) " " (height) } role="img" aria-label="Timeline of the run's steps" {
                @for (i, key) in d.rows.keys.iter().enumerate() {
                    text x="4" y=(row_h * i as f64 + 15.0) class="label" { (short(key, 26)) title { (key) } }
                }
                @for b in &d.bars {
                    rect class={ "bar " (b.class) } x=(format!("{:.1}", x(b.from))) y=(row_h * b.row as f64 + 4.0)
                        width=(format!("{:.1}", (x(b.to) - x(b.from)).max(2.0))) height="14" {
                        title { (b.title) }
                    }
                }
                @for ((row, _), s) in &slots {
                    circle class={ "mark " (s.worst.class()) } cx=(format!("{:.1}", x(s.first_us))) cy=(row_h * *row as f64 + 11.0)
                        r=(if s.count > 1 { "5" } else { "4" }) data-calls=(s.count) {
                        title {
                            @if s.count > 1 { (s.count) " calls; " }
                            (s.lines.join("; "))
                            @if s.count as usize > s.lines.len() { "; and " (s.count as usize - s.lines.len()) " more" }
                        }
                    }
                }
                text x=(label_w) y=(height - 4.0) class="axis" { "0" }
                text x=(label_w + width) y=(height - 4.0) class="axis" text-anchor="end" {
                    (format!("{:.1} s", (t1 - t0) as f64 / 1e6))
                }
            }
            @if !d.rows.hidden.is_empty() {
                p.note { (d.rows.hidden.len()) " more rows (fan-out items or loop iterations) are not drawn; the event list has them all." }
            }
            p.legend {
                span.key.ok { "completed / ok" } span.key.failed { "failed" } span.key.backoff { "backoff" }
                span.key.approval { "approval wait" } span.key.denied { "denied" }
            }
        }
    }
}

#[cfg(test)]
mod tests;
