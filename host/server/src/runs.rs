//! Runs: list, one, its events, start, cancel, resume; and stats.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tether_app::{AppError, StartRequest, Submitted};
use tether_types::access::Role;
use tether_types::store::{RunIndexStatus, RunQuery};
use tether_types::{Origin, RunId};

use crate::auth::Caller;
use crate::error::{body_error, query_error, ApiError};
#[allow(unused_imports)]
use crate::openapi::ErrorBody;
use crate::{limit, Server};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only runs with this status.
    #[param(pattern = "^(running|waiting|paused|completed|failed|compensated|compensation_failed|cancelled)$")]
    status: Option<String>,
    /// Only runs of this workflow.
    workflow: Option<String>,
    /// Where the previous page ended (its `next_cursor`).
    #[param(pattern = "^[0-9]+[.]run_[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
    /// At most this many (1 to 1000, 100 if not given).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/runs?status=&workflow=&cursor=&limit=`: the newest runs first, a page at a
/// time; `next_cursor` (present when the page is full) asks for the next page.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(ListQuery), responses((status = 200, description = "The newest runs first, a page at a time", body = Object), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn list(
    State(server): State<Arc<Server>>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
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
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.split_once('.')
                .and_then(|(us, id)| Some((us.parse::<u64>().ok()?, RunId::try_from(id.to_string()).ok()?.to_string())))
                .ok_or_else(|| ApiError::bad("cursor", "give the `next_cursor` of the previous page"))?,
        ),
    };
    let limit = limit(q.limit)?;
    let query = RunQuery { status, workflow: q.workflow, id_prefix: None, before, limit };
    let runs = server.worker.app().runs_page(&query).await?;
    let mut doc = json!({ "runs": runs });
    if runs.len() == limit as usize {
        if let Some(last) = runs.last() {
            doc["next_cursor"] = Value::from(format!("{}.{}", last.started_us, last.run_id));
        }
    }
    Ok(Json(doc))
}

/// `GET /v1/runs/{id}`: one run at a glance, as `tether show` gives it.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = String, Path, description = "A run id, or a unique start of one")), responses((status = 200, description = "The run at a glance", body = Object), (status = 404, description = "No such run", body = ErrorBody), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn one(
    State(server): State<Arc<Server>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let app = server.worker.app();
    let run = app.resolve_run(&id).await?;
    let view = app.show(&run).await?;
    serde_json::to_value(view).map(Json).map_err(|e| ApiError::internal(e.to_string()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Events after this sequence number.
    after: Option<u64>,
    /// At most this many (1 to 1000, 100 if not given).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/runs/{id}/events?after=SEQ&limit=N`: the run's events after `SEQ`, in order;
/// `next_after` is what to ask for next (absent when there is nothing more now). With
/// `Accept: text/event-stream`, the same events as server-sent events that follow the
/// run live (see [`follow`]).
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs", params(("id" = String, Path, description = "A run id, or a unique start of one"), EventsQuery), responses((status = 200, description = "Events after `after`, in order (or, with Accept: text/event-stream, a live stream)", body = Object), (status = 404, description = "No such run", body = ErrorBody), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn events(
    State(server): State<Arc<Server>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let Query(q) = q.map_err(query_error)?;
    let app = server.worker.app();
    let run = app.resolve_run(&id).await?;
    let limit = limit(q.limit)? as usize;
    let streaming = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if streaming {
        // A reconnecting client says where it was with `Last-Event-ID`.
        let resumed = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let after = resumed.or(q.after).unwrap_or(0);
        return Ok(follow(server, run, after).into_response());
    }
    let after = q.after.unwrap_or(0);
    let all = app.events(&run).await?;
    let page: Vec<_> = all.iter().filter(|e| e.seq > after).take(limit).collect();
    let more = all.iter().filter(|e| e.seq > after).count() > page.len();
    let mut doc = json!({ "run_id": run.as_str(), "events": page });
    if more {
        doc["next_after"] = Value::from(page.last().map_or(after, |e| e.seq));
    }
    Ok(Json(doc).into_response())
}

/// How often a followed run's journal is read for new events.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A run's events after `after` as server-sent events (`id` the sequence number, `event`
/// the event's type, `data` the event as JSON), following the run until it ends; then
/// one `end` event with its status. Waiting and paused runs are followed too: they may
/// go on. A comment is sent every 15 s so proxies keep the stream open.
fn follow(
    server: Arc<Server>,
    run: RunId,
    after: u64,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    struct Cursor {
        server: Arc<Server>,
        run: RunId,
        after: u64,
        queued: std::collections::VecDeque<SseEvent>,
        ended: bool,
    }
    let start = Cursor { server, run, after, queued: Default::default(), ended: false };
    let stream = futures_util::stream::unfold(start, |mut c| async move {
        loop {
            if let Some(next) = c.queued.pop_front() {
                return Some((Ok(next), c));
            }
            if c.ended || c.server.worker.stopping() {
                return None;
            }
            let app = c.server.worker.app();
            // Watched from before the read, so a stop right after it is not missed.
            let mut stops = c.server.worker.stops();
            match app.events(&c.run).await {
                Ok(events) => {
                    let after = c.after;
                    for e in events.iter().filter(|e| e.seq > after) {
                        let data = serde_json::to_string(e).unwrap_or_default();
                        c.queued.push_back(SseEvent::default().id(e.seq.to_string()).event(e.kind.name()).data(data));
                        c.after = e.seq;
                    }
                    let status = tether_types::state::index_status(&events);
                    if status.is_final() {
                        let data = json!({ "run_id": c.run.as_str(), "status": status.as_str() }).to_string();
                        c.queued.push_back(SseEvent::default().event("end").data(data));
                        c.ended = true;
                    }
                }
                Err(e) => {
                    let data = json!({ "error": { "code": e.code(), "message": e.to_string() } }).to_string();
                    c.queued.push_back(SseEvent::default().event("error").data(data));
                    c.ended = true;
                }
            }
            if c.queued.is_empty() {
                // A run that stops on this server is seen at once; others at the next look.
                tokio::select! {
                    () = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = stops.changed() => {}
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitBody {
    /// A registered workflow, by name (see `GET /v1/workflows`).
    workflow: Option<String>,
    /// Or a deployed step plugin, `NAME@VERSION`, run as a one-step workflow.
    plugin: Option<String>,
    /// The run's input.
    #[serde(default)]
    input: Value,
}

/// Longest idempotency key taken.
const KEY_MAX: usize = 255;

#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = SubmitBody, params(("Idempotency-Key" = Option<String>, Header, description = "A key seen before returns its run")), responses((status = 201, description = "Started; its start is durable", body = Object), (status = 200, description = "The run this idempotency key started before", body = Object), (status = 404, description = "No such workflow", body = ErrorBody), (status = 409, description = "Busy", body = ErrorBody), (status = 413, description = "The body is too large", body = ErrorBody), (status = 415, description = "The body is not JSON", body = ErrorBody), (status = 503, description = "The server is stopping", body = ErrorBody), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
/// `POST /v1/runs` with `{"workflow": NAME, "input": ...}` (or `{"plugin": NAME@VERSION,
/// ...}`) and, optionally, an `Idempotency-Key` header: 201 with the new run once its
/// start is durable; with a key seen before (from the same identity, for the same
/// workflow), 200 with that run and nothing new started. The run acts as the workflow's
/// identity, or else the caller's.
pub(crate) async fn submit(
    State(server): State<Arc<Server>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<SubmitBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Runner)?;
    let Json(body) = body.map_err(body_error)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= KEY_MAX && k.chars().all(|c| c.is_ascii_graphic()))
                .ok_or_else(|| {
                    ApiError::bad("Idempotency-Key", format!("use 1 to {KEY_MAX} visible ASCII characters"))
                })?
                .to_string(),
        ),
    };
    let (scope, registered) = match (&body.workflow, &body.plugin) {
        (Some(name), None) => {
            let Some(registered) = server.workflows.get(name) else {
                let names = server.workflows.names();
                let registered = if names.is_empty() {
                    "none; start the server with --workflows DIR".into()
                } else {
                    names.join(", ")
                };
                return Err(ApiError::not_found(
                    "unknown_workflow",
                    format!("no workflow `{name}` is registered (registered: {registered})"),
                ));
            };
            (name.clone(), registered)
        }
        (None, Some(plugin)) => (format!("plugin:{plugin}"), one_step(plugin)?),
        _ => return Err(ApiError::bad("body", "name either a `workflow` or a `plugin` (NAME@VERSION) to run")),
    };
    let run_id = key.as_deref().map(|k| keyed_run_id(&caller.identity, &scope, k));
    let app = server.worker.app();
    if let Some(id) = &run_id {
        if let Some(found) = existing(&server, id).await? {
            return Ok(found);
        }
    }
    let workflow = registered.workflow.clone();
    let identity = workflow.identity.clone().unwrap_or_else(|| caller.identity.clone());
    let request = StartRequest {
        workflow,
        base: registered.base.clone(),
        policy_file: None,
        identity: Some(identity),
        input: body.input,
        run_id: run_id.clone(),
    };
    let prepared = app.prepare(request).await?;
    let origin = Origin { via: "api".into(), by: Some(caller.identity.clone()), key };
    match server.worker.submit(prepared, origin).await? {
        Submitted::Started(id) => {
            Ok((StatusCode::CREATED, Json(json!({ "run_id": id.as_str(), "created": true }))).into_response())
        }
        Submitted::Existing(id) => existing(&server, &id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::CONFLICT, "busy", format!("run {id} is being started by another request"))
        }),
    }
}

/// A deployed step plugin as a one-step workflow named after it.
fn one_step(plugin: &str) -> Result<crate::Registered, ApiError> {
    let (name, _) = tether_types::plugin_ref::parse(plugin)
        .map_err(|e| ApiError::bad("plugin", format!("`{plugin}`: {e} (write NAME@VERSION)")))?;
    let text = format!("name = {name:?}\n[[steps]]\nname = {name:?}\ncomponent = {plugin:?}\n");
    let workflow = tether_types::Workflow::parse(plugin, &text).map_err(|e| ApiError::bad("plugin", e.to_string()))?;
    Ok(crate::Registered { workflow, base: std::path::PathBuf::new(), file: std::path::PathBuf::new() })
}

#[utoipa::path(post, path = "/v1/workflows", tag = "runs", request_body(content = String, content_type = "text/plain", description = "The workflow file (TOML; any content type is taken)"), responses((status = 201, description = "Registered", body = Object), (status = 200, description = "Replaced the workflow of that name", body = Object), (status = 400, description = "The workflow does not parse or load", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody), (status = 409, description = "The server has no workflows directory", body = ErrorBody)), security(("bearer" = [])))]
/// `POST /v1/workflows` with a workflow file (TOML) as the body: checked (parsed, its
/// policy assembled, its components resolved and compiled) and registered under its
/// name, written into the server's workflows directory so the next start has it too.
/// Its components are best named as deployed plugins (`NAME@VERSION`); relative paths
/// are taken from that directory. Runs started before keep the workflow they pinned.
pub(crate) async fn register(
    State(server): State<Arc<Server>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad("body", "the workflow file must be UTF-8 TOML"))?;
    let registered = server.workflows.parse(text).map_err(|e| {
        if e.contains("no workflows directory") {
            ApiError::new(StatusCode::CONFLICT, "no_workflows_directory", e)
        } else {
            ApiError::bad("body", e)
        }
    })?;
    // It must load as a run of it would: components resolved and compiled, the policy read.
    let check = StartRequest {
        workflow: registered.workflow.clone(),
        base: registered.base.clone(),
        policy_file: None,
        identity: None,
        input: Value::Null,
        run_id: None,
    };
    server.worker.app().prepare(check).await?;
    let name = registered.workflow.name.clone();
    let replaced = server.workflows.commit(registered, text).map_err(ApiError::internal)?;
    tracing::info!("workflow {name} registered by {}", caller.identity);
    let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json!({ "workflow": name, "replaced": replaced }))).into_response())
}

/// The run by this id, answered as an idempotent repeat (200), if it exists.
async fn existing(server: &Server, id: &RunId) -> Result<Option<Response>, ApiError> {
    match server.worker.app().show(id).await {
        Ok(view) => {
            let status = serde_json::to_value(&view).map_err(|e| ApiError::internal(e.to_string()))?["status"].clone();
            Ok(Some(Json(json!({ "run_id": id.as_str(), "created": false, "status": status })).into_response()))
        }
        Err(AppError::UnknownRun { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The run id an idempotency key stands for: the same key from the same identity for
/// the same workflow is the same run, on every server sharing the journal.
fn keyed_run_id(identity: &str, workflow: &str, key: &str) -> RunId {
    let digest = Sha256::digest(format!("api\0{identity}\0{workflow}\0{key}").as_bytes());
    RunId::from_suffix(&hex::encode(&digest[..16])).expect("hex is a valid run id suffix")
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    reason: Option<String>,
}

/// `POST /v1/runs/{id}/cancel` with an optional `{"reason": ...}`: the cancel is
/// journaled as the caller's identity and the run is undone (202). A run executing here
/// is asked to cancel, which it does within a fraction of a second.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", params(("id" = String, Path, description = "A run id, or a unique start of one")), request_body(content = Option<CancelBody>), responses((status = 202, description = "Recorded, or asked of the host executing it", body = Object), (status = 404, description = "No such run", body = ErrorBody), (status = 409, description = "The run has ended", body = ErrorBody), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn cancel(
    State(server): State<Arc<Server>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    let CancelBody { reason } = optional_body(&body)?;
    let answer = cancel_as(&server, &caller.identity, &id, reason).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// A cancel of run `id` made as `identity`: recorded and undone here, or asked of the
/// host that executes it.
pub(crate) async fn cancel_as(
    server: &Arc<Server>,
    identity: &str,
    id: &str,
    reason: Option<String>,
) -> Result<Value, ApiError> {
    let app = server.worker.app();
    let run = app.resolve_run(id).await?;
    let request = tether_app::CancelRequest {
        run: run.to_string(),
        identity: identity.to_string(),
        reason: reason.clone(),
        wait: std::time::Duration::ZERO,
    };
    let recorded = if server.worker.executes(&run) {
        Err(AppError::Busy(String::new()))
    } else {
        server.worker.exclusive(&run, app.record_cancel(&run, &request)).await
    };
    let asked = match recorded {
        Ok(_) => false,
        // Executing here or on another host: it is asked, and picks the request up
        // while it runs, or when it is next continued.
        Err(AppError::Busy(_)) => {
            app.store().request_cancel(run.as_str(), identity, reason.as_deref()).await.map_err(AppError::from)?;
            true
        }
        Err(e) => return Err(e.into()),
    };
    // Undone here now, or (executing here) once it stops, if it has not seen the request.
    server.worker.wake(run.clone(), Vec::new());
    let state = if asked { "requested" } else { "recorded" };
    Ok(json!({ "run_id": run.as_str(), "cancel": state, "by": identity }))
}

/// A JSON body that may be left out (empty): the default when it is.
fn optional_body<T: Default + serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad("body", format!("the body is not the JSON expected: {e}")))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResumeBody {
    /// Raises to run budgets: metric to amount (`wall_time` in milliseconds).
    #[serde(default)]
    budget: std::collections::BTreeMap<String, f64>,
}

/// `POST /v1/runs/{id}/resume` with optional `{"budget": {"tokens": 5000}}`: continues
/// an interrupted or paused run here (202); the raises are journaled with the resume.
#[utoipa::path(post, path = "/v1/runs/{id}/resume", tag = "runs", params(("id" = String, Path, description = "A run id, or a unique start of one")), request_body(content = Option<ResumeBody>), responses((status = 202, description = "Continued on this server", body = Object), (status = 404, description = "No such run", body = ErrorBody), (status = 409, description = "The run has ended, or executes now", body = ErrorBody), (status = 503, description = "The server is stopping", body = ErrorBody), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn resume(
    State(server): State<Arc<Server>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    let ResumeBody { budget } = optional_body(&body)?;
    let answer = resume_as(&server, &caller.identity, &id, budget).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Continues run `id` here, its budgets raised by `budget` as asked by `identity`.
pub(crate) async fn resume_as(
    server: &Arc<Server>,
    identity: &str,
    id: &str,
    budget: std::collections::BTreeMap<String, f64>,
) -> Result<Value, ApiError> {
    let app = server.worker.app();
    let run = app.resolve_run(id).await?;
    let (state, events) = app.state(&run).await?;
    if state.outcome.is_some() {
        let status = tether_types::state::index_status(&events).as_str().to_string();
        return Err(AppError::RunEnded { run: run.to_string(), status }.into());
    }
    let mut raises = Vec::new();
    for (metric, by) in budget {
        if !(by.is_finite() && by > 0.0) {
            return Err(ApiError::bad("budget", format!("budget `{metric}`: raise it by a positive number")));
        }
        if !state.plan.run_budget.raisable(&metric) {
            return Err(ApiError::bad("budget", format!("this run has no `{metric}` budget to raise")));
        }
        raises.push((metric, by));
    }
    if server.worker.stopping() {
        return Err(AppError::Stopping.into());
    }
    if server.worker.executes(&run) || !server.worker.wake_raising(run.clone(), raises, Some(identity.to_string())) {
        return Err(AppError::Busy(format!("run {run} is executing on this server now")).into());
    }
    Ok(json!({ "run_id": run.as_str(), "resumed": true }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsQuery {
    /// Only runs of this workflow.
    workflow: Option<String>,
    /// Only runs started at or after this time (microseconds since the Unix epoch).
    since_us: Option<u64>,
    /// At most this many runs, newest first (1 to 100000, 10000 if not given).
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<u32>,
}

/// `GET /v1/stats?workflow=&since_us=&limit=`: run counts, latencies, gates (as
/// `tether stats --json`).
#[utoipa::path(get, path = "/v1/stats", tag = "runs", params(StatsQuery), responses((status = 200, description = "Run counts, latencies, gates", body = Object), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn stats(
    State(server): State<Arc<Server>>,
    caller: Caller,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let Query(q) = q.map_err(query_error)?;
    // Stats read many runs: their own default and bound (as `tether stats`).
    let limit = match q.limit {
        None => 10_000,
        Some(n) if (1..=100_000).contains(&n) => n,
        Some(n) => return Err(ApiError::bad("limit", format!("limit {n} is outside 1..=100000"))),
    };
    let filter = tether_app::StatsFilter { workflow: q.workflow, since_us: q.since_us, limit };
    let stats = server.worker.app().stats(&filter).await?;
    serde_json::to_value(stats).map(Json).map_err(|e| ApiError::internal(e.to_string()))
}
