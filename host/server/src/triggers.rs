//! What starts runs besides `POST /v1/runs`: cron schedules, fired by the server on
//! time, and webhooks, signed POSTs from other systems. Each tick and each delivery has
//! its own run id, so it is one run however often it arrives or is fired (a restart
//! around a tick, several servers on one journal, a sender that retries).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tether_app::schedule::{Overlap, Schedule};
use tether_app::{AppError, StartRequest, Submitted};
use tether_types::{Origin, RunId};

use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::ErrorBody;
use crate::Server;

/// Fires `schedules` until the server stops: at start, the latest tick missed within
/// each schedule's catch-up window; then each tick on time.
pub async fn run_schedules(server: Arc<Server>, schedules: Vec<Schedule>) {
    if schedules.is_empty() {
        return;
    }
    let now = tether_app::schedule::now();
    for schedule in &schedules {
        if let Some(missed) = schedule.latest_at_or_before(now, schedule.catch_up) {
            fire(&server, schedule, missed).await;
        }
    }
    let mut next: Vec<_> = schedules.iter().map(|s| s.next_after(now)).collect();
    loop {
        let Some(soonest) = next.iter().flatten().min().copied() else { return };
        let wait = (soonest - tether_app::schedule::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = server.worker.stopped() => return,
        }
        let now = tether_app::schedule::now();
        for (schedule, tick) in schedules.iter().zip(next.iter_mut()) {
            if let Some(due) = tick.filter(|t| *t <= now) {
                fire(&server, schedule, due).await;
                *tick = schedule.next_after(due);
            }
        }
    }
}

/// Starts the run a tick stands for, unless it exists, or the schedule skips overlaps
/// and its previous run has not ended.
async fn fire(server: &Arc<Server>, schedule: &Schedule, tick: chrono::DateTime<chrono::Utc>) {
    let name = &schedule.spec.name;
    let key = schedule.tick_key(tick);
    let app = server.worker.app();
    if schedule.spec.overlap == Overlap::Skip {
        if let Some(previous) = schedule.previous(tick) {
            let prev = schedule.run_id(previous);
            if let Ok(view) = app.show(&prev).await {
                let status = serde_json::to_value(&view).ok().and_then(|v| v["status"].as_str().map(str::to_string));
                let over = status
                    .as_deref()
                    .and_then(tether_types::store::RunIndexStatus::parse)
                    .is_some_and(|s| s.is_final());
                if !over {
                    tracing::info!(
                        "schedule {name}: tick {key} skipped: run {prev} of the previous tick has not ended"
                    );
                    return;
                }
            }
        }
    }
    let origin = Origin { via: "schedule".into(), by: None, key: Some(key.clone()) };
    let workflow = schedule.spec.workflow.clone();
    match start(server, &workflow, schedule.spec.input.clone(), Some(schedule.run_id(tick)), origin, None).await {
        Ok(Submitted::Started(run)) => tracing::info!("schedule {name}: tick {key} started run {run}"),
        Ok(Submitted::Existing(_)) => {}
        Err(e) => tracing::warn!("schedule {name}: tick {key}: {e}"),
    }
}

/// Prepares and submits a run of a registered workflow. It acts as the workflow's
/// identity, else `acting_as`, else `local`.
async fn start(
    server: &Arc<Server>,
    workflow: &str,
    input: Value,
    run_id: Option<RunId>,
    origin: Origin,
    acting_as: Option<String>,
) -> Result<Submitted, ApiError> {
    let Some(registered) = server.workflows.get(workflow) else {
        return Err(ApiError::not_found("unknown_workflow", format!("no workflow `{workflow}` is registered")));
    };
    let app = server.worker.app();
    if let Some(id) = &run_id {
        if app.store().run_record(id.as_str()).await.map_err(AppError::from)?.index_status.is_some() {
            return Ok(Submitted::Existing(id.clone()));
        }
    }
    let identity = registered.workflow.identity.clone().or(acting_as);
    let request = StartRequest {
        workflow: registered.workflow.clone(),
        base: registered.base.clone(),
        policy_file: None,
        identity,
        input,
        run_id,
    };
    let prepared = app.prepare(request).await?;
    Ok(server.worker.submit(prepared, origin).await?)
}

/// `POST /hooks/{name}`: a delivery from another system, signed with the hook's secret
/// (`X-Tether-Signature: sha256=HEX`, the HMAC-SHA256 of the body). Its JSON body is the
/// run's input; 202 with the run id. A delivery id seen before (`X-Tether-Delivery`)
/// starts nothing new. Needs no API token: the signature is the caller's proof.
#[utoipa::path(post, path = "/hooks/{name}", tag = "triggers", params(("name" = String, Path, description = "The webhook's name"), ("X-Tether-Signature" = Option<String>, Header, description = "sha256=HEX: the HMAC-SHA256 of the body"), ("X-Tether-Delivery" = Option<String>, Header, description = "A delivery id seen before starts nothing new")), request_body = Object, responses((status = 202, description = "The run the delivery started (or started before)", body = Object), (status = 400, description = "The body is not JSON", body = ErrorBody), (status = 401, description = "The signature is missing or wrong", body = ErrorBody), (status = 404, description = "No such webhook", body = ErrorBody), (status = 503, description = "The server is stopping", body = ErrorBody)))]
pub(crate) async fn hook(
    State(server): State<Arc<Server>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(hook) = server.hooks.get(&name) else {
        return Err(ApiError::not_found("unknown_hook", format!("no webhook `{name}` is configured")));
    };
    if server.worker.stopping() {
        return Err(AppError::Stopping.into());
    }
    let refused = |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", why.to_string());
    let secret = std::env::var(&hook.secret).map_err(|_| ApiError::internal("the webhook's secret is not set"))?;
    let header = hook.signature_header();
    let signature = headers
        .get(header.as_str())
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused(&format!("the delivery carries no `{header}` header")))?;
    let hex_sig = signature.strip_prefix("sha256=").unwrap_or(signature);
    let given = hex::decode(hex_sig.trim()).map_err(|_| refused("the signature is not hex"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| ApiError::internal(e.to_string()))?;
    mac.update(&body);
    // Compared in constant time.
    mac.verify_slice(&given).map_err(|_| refused("the signature does not match the body"))?;
    let input: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("body", format!("the delivery's body is not JSON: {e}")))?;
    let delivery = headers.get(hook.delivery_header().as_str()).and_then(|v| v.to_str().ok()).map(str::to_string);
    if delivery.as_ref().is_some_and(|d| d.is_empty() || d.len() > 255) {
        return Err(ApiError::bad("delivery", "a delivery id has 1 to 255 characters"));
    }
    let run_id = delivery.as_ref().map(|d| {
        let digest = Sha256::digest(format!("webhook\0{name}\0{d}").as_bytes());
        RunId::from_suffix(&hex::encode(&digest[..16])).expect("hex is a valid run id suffix")
    });
    let origin = Origin { via: "webhook".into(), by: Some(format!("hook:{name}")), key: delivery };
    let acting_as = Some(format!("hook:{name}"));
    let (created, run) = match start(&server, &hook.workflow, input, run_id, origin, acting_as).await? {
        Submitted::Started(run) => (true, run),
        Submitted::Existing(run) => (false, run),
    };
    Ok((StatusCode::ACCEPTED, Json(json!({ "run_id": run.as_str(), "created": created }))).into_response())
}
