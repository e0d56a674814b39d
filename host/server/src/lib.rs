//! `tether serve`: the HTTP API over the application layer, in the same binary as the
//! CLI and on the same journal. A [`Server`] holds a worker (which executes runs, fires
//! due timers and takes over interrupted runs) and the registered workflows; every
//! answer is JSON, and every error a JSON object with a stable `code` and a message.
//!
//! Handlers call the application (`tether_app`) and nothing below it, as the CLI does,
//! so a run looks the same through both. Every `/v1` endpoint needs an API token; the
//! token's identity is who acts, and is journaled with what it causes.

mod approvals;
mod auth;
pub mod config;
mod error;
mod openapi;
mod plugins;
mod runs;
pub mod triggers;
pub mod ui;
mod workflows;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
#[allow(unused_imports)]
use openapi::ErrorBody;
use serde_json::{json, Value};
use tether_app::Worker;
use tether_types::access::Role;

pub use auth::Caller;
pub use error::ApiError;
pub use workflows::{Registered, Registry, Workflows};

/// Most runs or events one page holds.
pub const PAGE_MAX: u32 = 1000;

/// Largest request body taken (a run's input, a decision): larger is 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What the API serves from.
pub struct Server {
    /// Executes runs.
    pub worker: Arc<Worker>,
    /// Workflows runs are started of, by name.
    pub workflows: Registry,
    /// Webhooks, by name.
    pub hooks: std::collections::BTreeMap<String, config::WebhookSpec>,
    /// The web UI's open sessions.
    pub sessions: ui::Sessions,
    /// The web UI's drawings of the runs looked at last.
    pub pages: ui::RunPages,
}

/// The API's routes.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/hooks/{name}", post(triggers::hook))
        .route("/v1/runs", get(runs::list).post(runs::submit))
        .route("/v1/runs/{id}", get(runs::one))
        .route("/v1/runs/{id}/events", get(runs::events))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/resume", post(runs::resume))
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{id}/decision", post(approvals::decide))
        .route("/v1/workflows", get(list_workflows).post(runs::register))
        .route(
            "/v1/plugins",
            get(plugins::list).post(plugins::deploy).layer(DefaultBodyLimit::max(plugins::COMPONENT_LIMIT)),
        )
        .route("/v1/gates", get(plugins::gates))
        .route("/v1/stats", get(runs::stats))
        .merge(ui::routes())
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // A handler that panics answers 500 like any internal error; the server goes on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(server)
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    tracing::error!("a request handler panicked; the request was answered 500 and the server goes on");
    ApiError::internal("the server failed on this request (it goes on; please report this)").into_response()
}

/// Serves the API on `listener` until `shutdown` completes; requests under way finish.
/// Every accepted connection has `TCP_NODELAY` set: answers are small and go at once.
pub async fn serve(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(server)).with_graceful_shutdown(shutdown).await
}

/// `GET /readyz`: 200 while the server takes work, 503 once it is stopping.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "Taking work", body = String), (status = 503, description = "Stopping", body = ErrorBody)))]
async fn ready(State(server): State<Arc<Server>>) -> Result<&'static str, ApiError> {
    if server.worker.stopping() {
        return Err(ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "stopping", "the server is stopping"));
    }
    Ok("ready")
}

/// `GET /metrics` (viewer): the OpenMetrics text exposition (see `tether_app::metrics`).
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"), (status = 401, description = "No usable token", body = ErrorBody)), security(("bearer" = [])))]
async fn metrics(State(server): State<Arc<Server>>, caller: Caller) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    caller.require(Role::Viewer)?;
    let worker = &server.worker;
    let text = worker.metrics().render(worker.app(), worker.in_flight()).await?;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response())
}

/// `GET /v1/workflows`: the workflows runs can be started of.
#[utoipa::path(get, path = "/v1/workflows", tag = "runs", responses((status = 200, description = "Registered workflows", body = Object), (status = 401, description = "No usable token", body = ErrorBody)), security(("bearer" = [])))]
async fn list_workflows(State(server): State<Arc<Server>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let list: Vec<Value> = server
        .workflows
        .list()
        .iter()
        .map(|r| {
            let w = &r.workflow;
            json!({
                "name": w.name, "version": w.version, "description": w.description,
                "steps": w.steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "workflows": list })))
}

/// `text` as one URL path segment (or query value): every byte but the unreserved ones
/// and `:` and `@` percent-encoded. Request ids hold `/`; a run id never does.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn limit(asked: Option<u32>) -> Result<u32, ApiError> {
    match asked {
        None => Ok(100),
        Some(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad("limit", format!("limit {n} is outside 1..={PAGE_MAX}"))),
    }
}
