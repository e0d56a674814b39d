//! The UI's pages, rendered on the server (maud escapes everything interpolated, so no
//! text a guest or a person wrote is ever taken as HTML).

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;
use tether_types::access::Role;
use tether_types::event::EventKind;

use tether_app::EventsPage;

use super::drawn::Drawn;
use super::session::Viewer;
use super::url_encode;

/// A whole page: the header with what the viewer may see, then `body`.
pub(crate) fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tether" }
                link rel="stylesheet" href="/ui/assets/style.css";
                script src="/ui/assets/htmx.min.js" defer {}
            }
            body {
                header {
                    a.brand href="/ui/runs" { "tether" }
                    @if let Some(v) = viewer {
                        nav {
                            a href="/ui/runs" { "Runs" }
                            a href="/ui/inbox" { "Inbox" }
                            a href="/ui/gates" { "Gates" }
                            a href="/ui/stats" { "Stats" }
                        }
                        form.logout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            span.who { (v.identity) " (" (roles(v)) ")" }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn roles(v: &Viewer) -> String {
    v.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

/// The login form.
pub(crate) fn login(next: &str, failed: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        html! {
            @if let Some(why) = failed { p.error role="alert" { (why) } }
            form.login method="post" action="/ui/login" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                input type="hidden" name="next" value=(next);
                button type="submit" { "Log in" }
            }
            p.hint { "Make a token with " code { "tether token create NAME --identity WHO --role ROLE" } "." }
        },
    )
}

/// A status as a coloured badge.
pub(crate) fn status(s: &str) -> Markup {
    html! { span class={ "status " (s) } { (s) } }
}

/// The runs table (also the live fragment the page refreshes).
pub(crate) fn runs_table(runs: &[Value], refresh: &str, older: Option<&str>) -> Markup {
    html! {
        div #runs hx-get=(refresh) hx-trigger="every 3s" hx-swap="outerHTML" {
            @if runs.is_empty() { p.empty { "No runs match." } }
            @else {
                table.runs {
                    thead { tr { th { "Run" } th { "Workflow" } th { "Status" } th { "Started (UTC)" } th { "Identity" } } }
                    tbody {
                        @for r in runs {
                            @let id = r["run_id"].as_str().unwrap_or("-");
                            tr {
                                td { a href={ "/ui/runs/" (url_encode(id)) } { code { (id) } } }
                                td { (r["workflow"].as_str().unwrap_or("-")) }
                                td { (status(r["status"].as_str().unwrap_or("-"))) }
                                td { (time(r["started_us"].as_u64())) }
                                td { (r["identity"].as_str().unwrap_or("-")) }
                            }
                        }
                    }
                }
            }
            @if let Some(older) = older { p { a.more href=(older) { "Older runs →" } } }
        }
    }
}

/// The runs page: filters, then the table.
pub(crate) fn runs(viewer: &Viewer, filters: &Filters, table: Markup) -> Markup {
    const STATUSES: [&str; 8] =
        ["running", "waiting", "paused", "completed", "failed", "compensated", "compensation_failed", "cancelled"];
    page(
        "Runs",
        Some(viewer),
        html! {
            form.filters method="get" action="/ui/runs" {
                label { "Status "
                    select name="status" {
                        option value="" { "any" }
                        @for s in STATUSES { option value=(s) selected[filters.status.as_deref() == Some(s)] { (s) } }
                    }
                }
                label { "Workflow " input type="text" name="workflow" value=(filters.workflow.clone().unwrap_or_default()); }
                label { "Run id starts with " input type="search" name="q" value=(filters.q.clone().unwrap_or_default()); }
                button type="submit" { "Filter" }
            }
            (table)
        },
    )
}

/// What the runs page is filtered by.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Filters {
    pub(crate) status: Option<String>,
    pub(crate) workflow: Option<String>,
    pub(crate) q: Option<String>,
    pub(crate) cursor: Option<String>,
}

fn time(us: Option<u64>) -> String {
    match us {
        Some(us) => tether_types::units::rfc3339(us).replace('T', " ").chars().take(19).collect(),
        None => "-".into(),
    }
}

fn json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// One run: at a glance, its graph and timeline (`drawn`), and a page of its events from
/// the newest.
pub(crate) fn run(viewer: &Viewer, drawn: &Drawn, shown: &EventsPage) -> Markup {
    let view = &drawn.view;
    let total = shown.last.0;
    let events = &shown.events;
    let older = shown.older;
    let id = view["run_id"].as_str().unwrap_or("-");
    let state = view["status"].as_str().unwrap_or("-");
    page(
        &format!("Run {id}"),
        Some(viewer),
        html! {
            @let over = matches!(state, "completed" | "failed" | "compensated" | "compensation_failed" | "cancelled");
            // Until the run is over the page refreshes itself (summary, timeline, events);
            // a long journal less often, as each refresh reads it whole.
            @let every = if total > 10_000 { "every 10s" } else { "every 2s" };
            div #live hx-get=[(!over).then(|| format!("/ui/runs/{}", url_encode(id)))]
                hx-trigger=[(!over).then_some(every)] hx-select="#live" hx-swap="outerHTML" {
            section.summary {
                p { (status(state)) " " b { (view["workflow"].as_str().unwrap_or("-")) } " as " (view["identity"].as_str().unwrap_or("-"))
                    " · started " (view["started"].as_str().unwrap_or("-")) }
                @if let Some(waiting) = view["waiting_on"].as_array().filter(|w| !w.is_empty()) {
                    p.waiting { "Waiting on: "
                        @for w in waiting { span.request { (w["gate"].as_str().unwrap_or("-")) " (" (w["approval"].as_str().unwrap_or("-")) ")" } " " }
                        a href="/ui/inbox" { "decide in the inbox" }
                    }
                }
                @if let Some(paused) = view.get("paused") { p.paused { "Paused: the " (paused["exceeded"].as_str().unwrap_or("-")) " budget ran out" } }
                (meters(view))
                @if viewer.may(Role::Operator) && !matches!(state, "completed" | "failed" | "compensated" | "compensation_failed" | "cancelled") {
                    div.actions {
                        form method="post" action={ "/ui/runs/" (url_encode(id)) "/cancel" } {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            input type="text" name="reason" placeholder="why (recorded)";
                            button.danger type="submit" { "Cancel run" }
                        }
                        @if matches!(state, "paused" | "running") {
                            form method="post" action={ "/ui/runs/" (url_encode(id)) "/resume" } {
                                input type="hidden" name="csrf" value=(viewer.csrf);
                                button type="submit" { "Resume" }
                            }
                        }
                    }
                }
            }
            section.io {
                details open { summary { "Input" } pre { (json(&view["input"])) } }
                @if let Some(out) = view.get("output") { details open { summary { "Output" } pre { (json(out)) } } }
                @if let Some(err) = view.get("error") { details open { summary { "Error" } pre.error { (json(err)) } } }
            }
            section {
                h2 { "Workflow" }
                (PreEscaped(&drawn.graph))
            }
            section {
                h2 { "Timeline" }
                (PreEscaped(&drawn.timeline))
            }
            section {
                h2 { "Events (" (total) ")" }
                table.events {
                    thead { tr { th { "Seq" } th { "Time (UTC)" } th { "Step" } th { "Event" } th { "Detail" } } }
                    tbody {
                        @for e in events.iter().rev() {
                            tr {
                                td { (e.seq) }
                                td { (time(Some(e.at_us))) }
                                td { (e.kind.step().unwrap_or("-")) }
                                td { code { (e.kind.name()) } }
                                td.detail { (detail(&e.kind)) }
                            }
                        }
                    }
                }
                @if let Some(before) = older {
                    p { a.more href={ "/ui/runs/" (url_encode(id)) "?before=" (before) } { "Load earlier events" } }
                }
            }
            }
        },
    )
}

/// Budget meters: what the run used, against its run budget (with raises) where it has one.
fn meters(view: &Value) -> Markup {
    let totals = &view["totals"];
    let limits = &totals["limits"];
    let mut rows: Vec<(String, f64, Option<f64>, String)> = vec![
        ("Fuel".into(), totals["fuel"].as_f64().unwrap_or(0.0), limits["fuel"].as_f64(), String::new()),
        // The budget's wall time is in milliseconds, like the total.
        ("Wall time".into(), totals["wall_ms"].as_f64().unwrap_or(0.0), limits["wall_time"].as_f64(), " ms".into()),
        (
            "Tool calls".into(),
            totals["tool_calls"].as_f64().unwrap_or(0.0),
            limits["tool_calls"].as_f64(),
            String::new(),
        ),
    ];
    let usage = totals["usage"].as_object().cloned().unwrap_or_default();
    let mut metrics: Vec<&String> = usage.keys().collect();
    let limited = limits["usage"].as_object().cloned().unwrap_or_default();
    metrics.extend(limited.keys().filter(|k| !usage.contains_key(*k)));
    for k in metrics {
        rows.push((
            k.clone(),
            usage.get(k).and_then(Value::as_f64).unwrap_or(0.0),
            limited.get(k).and_then(Value::as_f64),
            String::new(),
        ));
    }
    let number = |v: f64| if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.2}") };
    html! {
        dl.meters {
            @for (name, used, limit, unit) in &rows {
                dt { (name) }
                dd {
                    (number(*used)) (unit)
                    @if let Some(limit) = limit {
                        " of " (number(*limit)) (unit)
                        br;
                        meter min="0" max=(limit) high=(limit * 0.8) optimum="0" value=(used.min(*limit)) aria-label={ (name) " used of its budget" } {}
                    }
                }
            }
        }
    }
}

fn detail(kind: &EventKind) -> String {
    let text = serde_json::to_value(kind).map(|mut v| {
        if let Some(o) = v.as_object_mut() {
            o.remove("type");
            o.remove("plan");
        }
        v.to_string()
    });
    let text = text.unwrap_or_default();
    if text.chars().count() > 240 {
        format!("{}…", text.chars().take(240).collect::<String>())
    } else {
        text
    }
}

/// The inbox: each pending request with its proposal, who else must decide, its
/// deadline; approve (optionally with an edited proposal) or reject, with a comment.
pub(crate) fn inbox(viewer: &Viewer, pending: &[Value], notice: Option<&str>) -> Markup {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    page(
        "Inbox",
        Some(viewer),
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if pending.is_empty() { p.empty { "Nothing is waiting for a decision." } }
            @for p in pending {
                @let overdue = p["deadline_us"].as_u64().is_some_and(|d| d <= now);
                @let id = format!("{}:{}", p["run_id"].as_str().unwrap_or(""), p["request"].as_str().unwrap_or(""));
                article class={ "request" @if overdue { " overdue" } } {
                    h2 { (p["gate"].as_str().unwrap_or("-")) " · " a href={ "/ui/runs/" (url_encode(p["run_id"].as_str().unwrap_or(""))) } { code { (p["run_id"].as_str().unwrap_or("-")) } } }
                    p { (p["workflow"].as_str().unwrap_or("-")) " · step " (p["step"].as_str().unwrap_or("-"))
                        " · needs " (p["approvals_needed"].as_u64().unwrap_or(1)) " approval(s)"
                        @if let Some(by) = p["approved_by"].as_array().filter(|a| !a.is_empty()) {
                            ", approved so far by " (by.iter().filter_map(|b| b.as_str()).collect::<Vec<_>>().join(", "))
                        }
                    }
                    @if let Some(d) = p["deadline_us"].as_u64() {
                        p.deadline { @if overdue { b { "Overdue: " } } "deadline " (time(Some(d))) " UTC, then " (p["on_timeout"].as_str().unwrap_or("-")) }
                    }
                    pre.proposal { (json(&p["proposal"])) }
                    @if viewer.may(Role::Approver) {
                        form.decide method="post" action="/ui/decide" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            input type="hidden" name="id" value=(id);
                            input type="hidden" name="version" value=(p["version"].as_u64().unwrap_or(0));
                            label { "Comment " input type="text" name="comment"; }
                            details { summary { "Edit the proposal" }
                                textarea name="payload" rows="6" data-original=(json(&p["proposal"])) { (json(&p["proposal"])) }
                            }
                            button.approve type="submit" name="decision" value="approve" { "Approve" }
                            button.reject type="submit" name="decision" value="reject" { "Reject" }
                        }
                    }
                }
            }
            (PreEscaped(EDIT_CHECK))
        },
    )
}

/// Checks an edited proposal is JSON before the form is sent (the server checks it
/// against the original's shape again).
const EDIT_CHECK: &str = r#"<script>
document.addEventListener('submit', function (ev) {
  var area = ev.target.querySelector('textarea[name=payload]');
  if (!area) return;
  if (area.value.trim() === area.dataset.original.trim()) { area.disabled = true; return; }
  try { JSON.parse(area.value); } catch (e) { ev.preventDefault(); alert('The edited proposal is not valid JSON: ' + e.message); }
});
</script>"#;

/// The gates: each gate's track record and whether it approves by itself now.
pub(crate) fn gates(viewer: &Viewer, gates: &[Value]) -> Markup {
    page(
        "Gates",
        Some(viewer),
        html! {
            @if gates.is_empty() { p.empty { "No run has met a gate yet." } }
            @for g in gates {
                article.gate {
                    h2 { (g["gate"].as_str().unwrap_or("-")) " · " (g["workflow"].as_str().unwrap_or("-")) }
                    p { (g["spec"]["approvals"].as_u64().unwrap_or(1)) " approval(s)"
                        @if let Some(relax) = g["spec"].get("relax_after") {
                            " · relaxes after " (relax["decisions"].as_u64().unwrap_or(0)) " decisions with at most "
                            (format!("{:.0}%", relax["max_override_rate"].as_f64().unwrap_or(0.0) * 100.0)) " overridden"
                        } @else { " · never relaxes" }
                    }
                    table {
                        thead { tr { th { "Class" } th { "Decisions" } th { "Approved" } th { "Overrides" } th { "Override rate" } th { "Automatic" } th { "Now" } } }
                        tbody {
                            @for r in g["records"].as_array().into_iter().flatten() {
                                tr {
                                    td { (r["class"].as_str().unwrap_or("all")) }
                                    td { (r["decisions"]) } td { (r["approved"]) } td { (r["overrides"]) }
                                    td { (format!("{:.1}%", r["override_rate"].as_f64().unwrap_or(0.0) * 100.0)) }
                                    td { (r["auto_approved"]) }
                                    td { @if r["relaxed"] == true { span.status.completed { "relaxed" } }
                                         @else if g["spec"].get("relax_after").is_none() { span.status { "people decide" } }
                                         @else { span.status.waiting { (r["decisions_to_go"]) " to go" } } }
                                }
                                tr { td colspan="7" { (trend_chart(r, g["spec"]["relax_after"]["max_override_rate"].as_f64())) } }
                            }
                        }
                    }
                    @if let Some(auto) = g["automatic"].as_array().filter(|a| !a.is_empty()) {
                        h3 { "Approved by the gate itself" }
                        ul.automatic {
                            @for a in auto {
                                li {
                                    a href={ "/ui/runs/" (url_encode(a["run_id"].as_str().unwrap_or(""))) } { code { (a["run_id"].as_str().unwrap_or("-")) } }
                                    " " (a["request"].as_str().unwrap_or("-")) " · " (time(a["at_us"].as_u64())) " "
                                    @if a["overridden"] == true { span.status.failed { "overridden" } }
                                    @else if viewer.may(Role::Approver) {
                                        form.override method="post" action="/ui/override" {
                                            input type="hidden" name="csrf" value=(viewer.csrf);
                                            input type="hidden" name="run" value=(a["run_id"].as_str().unwrap_or(""));
                                            input type="hidden" name="request" value=(a["request"].as_str().unwrap_or(""));
                                            input type="text" name="comment" placeholder="why it was wrong" required;
                                            button.danger type="submit" { "Override" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The stats over a chosen period: rates as bars, usage (cost, tokens) per successful
/// run, and each step's latency (median and p95) as bars.
pub(crate) fn stats(viewer: &Viewer, s: &Value, period: &str) -> Markup {
    let pct = |v: &Value| v.as_f64().map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
    let rates =
        [("Success", &s["success_rate"]), ("Escalation", &s["escalation_rate"]), ("Rollback", &s["rollback_rate"])];
    let steps: Vec<(&String, &Value)> = s["steps"].as_object().into_iter().flatten().collect();
    let slowest = steps.iter().filter_map(|(_, l)| l["p95_us"].as_f64()).fold(1.0, f64::max);
    page(
        "Stats",
        Some(viewer),
        html! {
            form.filters method="get" action="/ui/stats" {
                label { "Period "
                    select name="period" {
                        @for (value, label) in [("1d", "last day"), ("7d", "last 7 days"), ("30d", "last 30 days"), ("all", "all runs")] {
                            option value=(value) selected[period == value] { (label) }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
            dl.meters {
                dt { "Runs" } dd { (s["runs"]) }
                dt { "Finished" } dd { (s["finished"]) }
                dt { "Waiting" } dd { (s["waiting"]) }
                dt { "Cancelled" } dd { (s["cancelled"]) }
                @if let Some(f) = s["fuel_per_success"].as_f64() { dt { "Fuel per successful run" } dd { (format!("{f:.0}")) } }
                @for (metric, v) in s["usage_per_success"].as_object().into_iter().flatten() {
                    dt { (metric) " per successful run" } dd { (format!("{:.4}", v.as_f64().unwrap_or(0.0))) }
                }
            }
            svg.bars viewBox="0 0 420 80" role="img" aria-label="Success, escalation and rollback rates" {
                @for (i, (label, v)) in rates.iter().enumerate() {
                    text x="0" y=(i as f64 * 24.0 + 15.0) { (label) }
                    rect class={ "bar r" (i) } x="90" y=(i as f64 * 24.0 + 4.0) width=(format!("{:.1}", v.as_f64().unwrap_or(0.0) * 260.0)) height="14" {}
                    text x=(format!("{:.1}", 96.0 + v.as_f64().unwrap_or(0.0) * 260.0)) y=(i as f64 * 24.0 + 15.0) { (pct(v)) }
                }
            }
            h2 { "Latency by step" }
            @if steps.is_empty() { p.empty { "No step completed in this period." } }
            @else {
                svg.bars viewBox={ "0 0 620 " (steps.len() as f64 * 24.0 + 8.0) } role="img" aria-label="Median and 95th percentile latency of each step" {
                    @for (i, (step, l)) in steps.iter().enumerate() {
                        @let (median, p95) = (l["median_us"].as_f64().unwrap_or(0.0), l["p95_us"].as_f64().unwrap_or(0.0));
                        text x="0" y=(i as f64 * 24.0 + 15.0) { (step) }
                        rect class="bar p95" x="160" y=(i as f64 * 24.0 + 4.0) width=(format!("{:.1}", p95 / slowest * 340.0)) height="14" {}
                        rect class="bar median" x="160" y=(i as f64 * 24.0 + 4.0) width=(format!("{:.1}", median / slowest * 340.0)) height="14" {}
                        text x="510" y=(i as f64 * 24.0 + 15.0) { (format!("{:.2} / {:.2} ms", median / 1e3, p95 / 1e3)) }
                    }
                }
                p.hint { "Dark: median; light: 95th percentile." }
            }
        },
    )
}

/// The override rate after each decision as a line, with the relax rule's ceiling dashed.
fn trend_chart(record: &Value, ceiling: Option<f64>) -> Markup {
    let points: Vec<f64> = record["trend"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
    if points.len() < 2 {
        return html! { span.hint { "The override rate is charted from the second decision." } };
    }
    let (w, h) = (600.0, 80.0);
    let step = w / (points.len() - 1) as f64;
    let y = |rate: f64| h - rate.clamp(0.0, 1.0) * h;
    let line: Vec<String> =
        points.iter().enumerate().map(|(i, r)| format!("{:.1},{:.1}", i as f64 * step, y(*r))).collect();
    html! {
        svg.trend viewBox={ "0 0 " (w) " " (h + 14.0) } role="img"
            aria-label={ "Override rate after each of " (points.len()) " decisions, now " (format!("{:.0}%", points.last().unwrap_or(&0.0) * 100.0)) } {
            @if let Some(c) = ceiling {
                line.ceiling x1="0" x2=(w) y1=(format!("{:.1}", y(c))) y2=(format!("{:.1}", y(c))) {}
            }
            polyline.rate points=(line.join(" ")) {}
            text x="0" y=(h + 12.0) class="axis" { "decision 1" }
            text x=(w) y=(h + 12.0) class="axis" text-anchor="end" { "decision " (points.len()) }
        }
    }
}
