//! `tether serve`: the HTTP API over the application layer, in the same binary as the
//! CLI and on the same journal. This first part reads: runs, one run, its events by
//! sequence number, the pending approvals, stats, and the health check; every answer is JSON, and every error a JSON
//! object with a stable `code` and a message.
//!
//! Handlers call the application (`tether_app::App`) and nothing below it, as the CLI
//! does, so a run looks the same through both.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tether_app::{App, AppError, ErrorKind};
use tether_types::store::RunIndexStatus;

/// Most runs or events one page holds.
pub const PAGE_MAX: u32 = 1000;

/// The API's routes over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/runs", get(runs))
        .route("/v1/runs/{id}", get(run))
        .route("/v1/runs/{id}/events", get(events))
        .route("/v1/approvals", get(approvals))
        .route("/v1/stats", get(stats))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint".into()) })
        .with_state(app)
}

/// Serves the API on `listener` until `shutdown` completes; requests under way finish.
/// Every accepted connection has `TCP_NODELAY` set: answers are small and go at once.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(app)).with_graceful_shutdown(shutdown).await
}

/// An error as the API answers it: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: String) -> ApiError {
        ApiError { status, code, message, field: None }
    }

    fn bad(field: &'static str, message: String) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, code: "invalid_request", message, field: Some(field) }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        let (status, code) = match (&e, e.kind()) {
            (AppError::UnknownRun { .. }, _) => (StatusCode::NOT_FOUND, "unknown_run"),
            (_, ErrorKind::Usage) => (StatusCode::BAD_REQUEST, "invalid_request"),
            (_, ErrorKind::Busy) => (StatusCode::CONFLICT, "busy"),
            (_, ErrorKind::Internal) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            error["field"] = Value::from(field);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    status: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/runs?status=&limit=`: the newest runs first.
async fn runs(
    State(app): State<Arc<App>>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(RunIndexStatus::parse(s).ok_or_else(|| {
            ApiError::bad(
                "status",
                format!("`{s}` is not a run status (running, waiting, paused, completed, failed, ...)"),
            )
        })?),
    };
    let limit = limit(q.limit)?;
    let runs = app.runs(status, limit).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// `GET /v1/runs/{id}`: one run at a glance, as `tether show` gives it.
async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let run = app.resolve_run(&id).await?;
    let view = app.show(&run).await?;
    serde_json::to_value(view)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<u32>,
}

/// `GET /v1/runs/{id}/events?after=SEQ&limit=N`: the run's events after `SEQ`, in order;
/// `next_after` is what to ask for next (absent when there is nothing more now).
async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let run = app.resolve_run(&id).await?;
    let limit = limit(q.limit)? as usize;
    let after = q.after.unwrap_or(0);
    let all = app.events(&run).await?;
    let page: Vec<_> = all.iter().filter(|e| e.seq > after).take(limit).collect();
    let more = all.iter().filter(|e| e.seq > after).count() > page.len();
    let mut doc = json!({ "run_id": run.as_str(), "events": page });
    if more {
        doc["next_after"] = Value::from(page.last().map_or(after, |e| e.seq));
    }
    Ok(Json(doc))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsQuery {
    state: Option<String>,
}

/// `GET /v1/approvals?state=pending`: the requests waiting for a decision, oldest first
/// (as `tether inbox --json`).
async fn approvals(
    State(app): State<Arc<App>>,
    q: Result<Query<ApprovalsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    if let Some(state) = q.state.as_deref().filter(|s| *s != "pending") {
        return Err(ApiError::bad("state", format!("state `{state}`: only `pending` is listed")));
    }
    let pending: Vec<Value> = app.inbox().await?.iter().map(tether_app::Pending::to_json).collect();
    Ok(Json(json!({ "approvals": pending })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    workflow: Option<String>,
    since_us: Option<u64>,
    limit: Option<u32>,
}

/// `GET /v1/stats?workflow=&since_us=&limit=`: run counts, latencies, gates (as
/// `tether stats --json`).
async fn stats(
    State(app): State<Arc<App>>,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    // Stats read many runs: their own default and bound (as `tether stats`).
    let limit = match q.limit {
        None => 10_000,
        Some(n) if (1..=100_000).contains(&n) => n,
        Some(n) => return Err(ApiError::bad("limit", format!("limit {n} is outside 1..=100000"))),
    };
    let filter = tether_app::StatsFilter { workflow: q.workflow, since_us: q.since_us, limit };
    let stats = app.stats(&filter).await?;
    serde_json::to_value(stats)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad("query", e.body_text())
}

fn limit(asked: Option<u32>) -> Result<u32, ApiError> {
    match asked {
        None => Ok(100),
        Some(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad("limit", format!("limit {n} is outside 1..={PAGE_MAX}"))),
    }
}
