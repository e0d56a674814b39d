//! The web UI, served under `/ui` by the same binary: server-rendered HTML (maud) with a
//! vendored htmx for the parts that refresh themselves; no JavaScript build step and no
//! asset from outside. What a page offers follows the logged-in token's roles; every
//! form carries a CSRF token; everything a guest or a person wrote is escaped.

mod drawn;
mod graph;
pub(crate) mod pages;
pub(crate) mod session;
mod timeline;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::Value;
use tether_types::access::Role;
use tether_types::store::{RunIndexStatus, RunQuery};

use crate::error::ApiError;
use crate::Server;
pub use drawn::RunPages;
use pages::Filters;
pub use session::Sessions;
use session::Viewer;

const HTMX: &[u8] = include_bytes!("../../assets/htmx.min.js");
const STYLE: &str = include_str!("style.css");

/// Runs on one page of the runs list.
const RUNS_PAGE: u32 = 50;
/// Events on one page of a run's event list (the newest first).
const EVENTS_PAGE: u64 = 200;

/// The UI's routes.
pub(crate) fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/assets/htmx.min.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], HTMX) }))
        .route("/ui/assets/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE) }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/runs", get(runs_page))
        .route("/ui/runs/table", get(runs_table))
        .route("/ui/runs/{id}", get(run_page))
        .route("/ui/runs/{id}/cancel", post(cancel))
        .route("/ui/runs/{id}/resume", post(resume))
        .route("/ui/inbox", get(inbox))
        .route("/ui/decide", post(decide))
        .route("/ui/gates", get(gates))
        .route("/ui/override", post(override_auto))
        .route("/ui/stats", get(stats))
}

/// `text` for a URL's path segment or query value.
pub(crate) fn url_encode(text: &str) -> String {
    crate::path_segment(text)
}

/// An error as a page: what went wrong, with a way back.
fn error_page(viewer: Option<&Viewer>, e: ApiError) -> Response {
    let status = e.status();
    let body = maud::html! { p.error role="alert" { (e.message()) } p { a href="/ui/runs" { "Back to the runs" } } };
    (status, pages::page("Something went wrong", viewer, body)).into_response()
}

fn forbidden(viewer: &Viewer, what: &str) -> Response {
    let body = maud::html! { p.error role="alert" { "Your token (" (viewer.token) ") may not " (what) "." } };
    (StatusCode::FORBIDDEN, pages::page("Not allowed", Some(viewer), body)).into_response()
}

async fn runs_list(server: &Server, f: &Filters) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let status = match f.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            RunIndexStatus::parse(s).ok_or_else(|| ApiError::bad("status", format!("`{s}` is not a run status")))?,
        ),
    };
    let before = f
        .cursor
        .as_deref()
        .and_then(|c| c.split_once('.'))
        .and_then(|(us, id)| Some((us.parse().ok()?, id.to_string())));
    let query = RunQuery {
        status,
        workflow: f.workflow.clone().filter(|w| !w.is_empty()),
        id_prefix: f.q.clone().filter(|q| !q.is_empty()),
        before,
        limit: RUNS_PAGE,
    };
    let runs = server.worker.app().runs_page(&query).await?;
    let older = (runs.len() == RUNS_PAGE as usize)
        .then(|| runs.last().map(|r| format!("{}.{}", r.started_us, r.run_id)))
        .flatten();
    let values = runs.iter().map(|r| serde_json::to_value(r).unwrap_or_default()).collect();
    Ok((values, older))
}

fn query_string(f: &Filters, cursor: Option<&str>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [("status", &f.status), ("workflow", &f.workflow), ("q", &f.q)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", url_encode(v)));
        }
    }
    if let Some(c) = cursor {
        parts.push(format!("cursor={}", url_encode(c)));
    }
    parts.join("&")
}

async fn runs_page(State(server): State<Arc<Server>>, viewer: Viewer, Query(f): Query<Filters>) -> Response {
    match runs_list(&server, &f).await {
        Ok((runs, older)) => {
            let refresh = format!("/ui/runs/table?{}", query_string(&f, f.cursor.as_deref()));
            let older = older.map(|c| format!("/ui/runs?{}", query_string(&f, Some(&c))));
            pages::runs(&viewer, &f, pages::runs_table(&runs, &refresh, older.as_deref())).into_response()
        }
        Err(e) => error_page(Some(&viewer), e),
    }
}

async fn runs_table(State(server): State<Arc<Server>>, _viewer: Viewer, Query(f): Query<Filters>) -> Response {
    match runs_list(&server, &f).await {
        Ok((runs, older)) => {
            let refresh = format!("/ui/runs/table?{}", query_string(&f, f.cursor.as_deref()));
            let older = older.map(|c| format!("/ui/runs?{}", query_string(&f, Some(&c))));
            pages::runs_table(&runs, &refresh, older.as_deref()).into_response()
        }
        Err(e) => (e.status(), e.message().to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct RunQueryParams {
    before: Option<u64>,
}

async fn run_page(
    State(server): State<Arc<Server>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<RunQueryParams>,
) -> Response {
    let app = server.worker.app();
    let result = async {
        let run = app.resolve_run(&id).await?;
        let page = app.events_page(&run, q.before, EVENTS_PAGE).await?;
        // The summary, graph and timeline need the whole journal: drawn once per state
        // of the run and kept, so a long run's later views read only the page shown.
        let drawn = match server.pages.get(run.as_str(), &page.last) {
            Some(drawn) => drawn,
            None => {
                let (view, all) = app.show_with_events(&run).await?;
                let view = serde_json::to_value(view).unwrap_or_default();
                let steps = view["steps"].as_array().map_or(&[][..], Vec::as_slice);
                let drawn = Arc::new(drawn::Drawn {
                    run: run.as_str().to_string(),
                    last: all.last().map(|e| (e.seq, e.hash.clone())).unwrap_or_default(),
                    graph: graph::graph(&all, steps).into_string(),
                    timeline: timeline::timeline(&all).into_string(),
                    view,
                });
                server.pages.keep(Arc::clone(&drawn));
                drawn
            }
        };
        Ok::<_, ApiError>(pages::run(&viewer, &drawn, &page))
    }
    .await;
    match result {
        Ok(page) => page.into_response(),
        Err(e) => error_page(Some(&viewer), e),
    }
}

#[derive(Deserialize)]
struct CancelForm {
    csrf: String,
    reason: Option<String>,
}

async fn cancel(
    State(server): State<Arc<Server>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Response {
    if !viewer.csrf_ok(&form.csrf) {
        return session::csrf_refused();
    }
    if !viewer.may(Role::Operator) {
        return forbidden(&viewer, "cancel runs");
    }
    let reason = form.reason.filter(|r| !r.trim().is_empty());
    match crate::runs::cancel_as(&server, &viewer.identity, &id, reason).await {
        Ok(_) => Redirect::to(&format!("/ui/runs/{}", url_encode(&id))).into_response(),
        Err(e) => error_page(Some(&viewer), e),
    }
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn resume(
    State(server): State<Arc<Server>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if !viewer.csrf_ok(&form.csrf) {
        return session::csrf_refused();
    }
    if !viewer.may(Role::Operator) {
        return forbidden(&viewer, "resume runs");
    }
    match crate::runs::resume_as(&server, &viewer.identity, &id, Default::default()).await {
        Ok(_) => Redirect::to(&format!("/ui/runs/{}", url_encode(&id))).into_response(),
        Err(e) => error_page(Some(&viewer), e),
    }
}

#[derive(Deserialize)]
struct Notice {
    notice: Option<String>,
}

async fn inbox(State(server): State<Arc<Server>>, viewer: Viewer, Query(n): Query<Notice>) -> Response {
    match server.worker.app().inbox().await {
        Ok(all) => {
            let list: Vec<Value> = all.iter().map(tether_app::Pending::to_json).collect();
            pages::inbox(&viewer, &list, n.notice.as_deref()).into_response()
        }
        Err(e) => error_page(Some(&viewer), e.into()),
    }
}

#[derive(Deserialize)]
struct DecideForm {
    csrf: String,
    id: String,
    decision: String,
    version: Option<u64>,
    comment: Option<String>,
    payload: Option<String>,
}

async fn decide(State(server): State<Arc<Server>>, viewer: Viewer, Form(form): Form<DecideForm>) -> Response {
    if !viewer.csrf_ok(&form.csrf) {
        return session::csrf_refused();
    }
    if !viewer.may(Role::Approver) {
        return forbidden(&viewer, "decide approval requests");
    }
    let payload = match form.payload.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => Some(v),
            Err(e) => {
                return error_page(
                    Some(&viewer),
                    ApiError::bad("payload", format!("the edited proposal is not JSON: {e}")),
                )
            }
        },
    };
    let body = crate::approvals::DecisionBody {
        decision: form.decision.clone(),
        payload,
        comment: form.comment.filter(|c| !c.trim().is_empty()),
        version: form.version,
    };
    match crate::approvals::decide_as(&server, &viewer.identity, &form.id, body).await {
        Ok(done) => {
            let what = if done["settled"] == true {
                format!("{} {}d; the run continues", done["request"].as_str().unwrap_or("-"), form.decision)
            } else {
                format!("{} recorded; more approvals are needed", done["request"].as_str().unwrap_or("-"))
            };
            Redirect::to(&format!("/ui/inbox?notice={}", url_encode(&what))).into_response()
        }
        Err(e) => error_page(Some(&viewer), e),
    }
}

async fn gates(State(server): State<Arc<Server>>, viewer: Viewer) -> Response {
    match server.worker.app().gates(None).await {
        Ok(gates) => {
            let list: Vec<Value> = gates.iter().map(|g| serde_json::to_value(g).unwrap_or_default()).collect();
            pages::gates(&viewer, &list).into_response()
        }
        Err(e) => error_page(Some(&viewer), e.into()),
    }
}

#[derive(Deserialize)]
struct Period {
    period: Option<String>,
}

async fn stats(State(server): State<Arc<Server>>, viewer: Viewer, Query(p): Query<Period>) -> Response {
    let period = p.period.unwrap_or_else(|| "7d".into());
    let since_us = match period.as_str() {
        "all" => None,
        other => {
            let Ok(back) = humantime::parse_duration(other) else {
                return error_page(Some(&viewer), ApiError::bad("period", format!("`{other}` is not a period")));
            };
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
            Some(now.saturating_sub(back.as_micros() as u64))
        }
    };
    let filter = tether_app::StatsFilter { since_us, limit: 10_000, ..Default::default() };
    match server.worker.app().stats(&filter).await {
        Ok(s) => pages::stats(&viewer, &serde_json::to_value(s).unwrap_or_default(), &period).into_response(),
        Err(e) => error_page(Some(&viewer), e.into()),
    }
}

#[derive(Deserialize)]
struct OverrideForm {
    csrf: String,
    run: String,
    request: String,
    comment: Option<String>,
}

/// `POST /ui/override`: a reviewer records that a relaxed gate's automatic approval was
/// wrong; it counts against the gate once and re-arms it.
async fn override_auto(State(server): State<Arc<Server>>, viewer: Viewer, Form(form): Form<OverrideForm>) -> Response {
    if !viewer.csrf_ok(&form.csrf) {
        return session::csrf_refused();
    }
    if !viewer.may(Role::Approver) {
        return forbidden(&viewer, "override automatic approvals");
    }
    let app = server.worker.app();
    let result = async {
        let run = app.resolve_run(&form.run).await?;
        let request = tether_app::OverrideRequest {
            run: run.to_string(),
            gate: form.request.clone(),
            identity: viewer.identity.clone(),
            payload: None,
            comment: form.comment.filter(|c| !c.trim().is_empty()),
        };
        server.worker.exclusive(&run, app.override_auto(request)).await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => Redirect::to("/ui/gates").into_response(),
        Err(e) => error_page(Some(&viewer), e),
    }
}
