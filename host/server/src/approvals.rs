//! Approvals: the pending requests, and decisions on them made as the caller's identity.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tether_app::DecisionRequest;
use tether_types::access::Role;
use tether_types::policy::Decision;

use crate::auth::Caller;
use crate::error::{body_error, query_error, ApiError};
#[allow(unused_imports)]
use crate::openapi::ErrorBody;
use crate::Server;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only `pending` is listed.
    #[param(pattern = "^pending$")]
    state: Option<String>,
}

/// `GET /v1/approvals?state=pending`: the requests waiting for a decision, oldest first
/// (as `tether inbox --json`), each with its `id` and the path its decision is posted
/// to (`decide`: the id percent-encoded, as request ids hold `/`).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ListQuery), responses((status = 200, description = "Requests waiting for a decision, oldest first", body = Object), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn list(
    State(server): State<Arc<Server>>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let Query(q) = q.map_err(query_error)?;
    if let Some(state) = q.state.as_deref().filter(|s| *s != "pending") {
        return Err(ApiError::bad("state", format!("state `{state}`: only `pending` is listed")));
    }
    let pending: Vec<Value> = server
        .worker
        .app()
        .inbox()
        .await?
        .iter()
        .map(|p| {
            let mut v = p.to_json();
            let id = format!("{}:{}", p.run_id, p.approval.id);
            v["decide"] = Value::from(format!("/v1/approvals/{}/decision", crate::path_segment(&id)));
            v["id"] = Value::from(id);
            v
        })
        .collect();
    Ok(Json(json!({ "approvals": pending })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    /// `approve` or `reject`.
    #[schema(pattern = "^(approve|reject)$")]
    pub(crate) decision: String,
    /// An edited proposal (approvals only).
    pub(crate) payload: Option<Value>,
    /// Why, for the record.
    pub(crate) comment: Option<String>,
    /// The request's `version` the decider saw: refused (409) if it changed since.
    pub(crate) version: Option<u64>,
}

/// `POST /v1/approvals/{RUN:REQUEST}/decision` with `{"decision": "approve" | "reject",
/// "payload"?, "comment"?, "version"?}`, decided as the caller's identity (the run's
/// policy says whether that identity may decide the gate). When the request is settled
/// the run continues here.
#[utoipa::path(post, path = "/v1/approvals/{id}/decision", tag = "approvals", params(("id" = String, Path, description = "RUN_ID:REQUEST, percent-encoded")), request_body = DecisionBody, responses((status = 200, description = "Recorded as the token's identity", body = Object), (status = 404, description = "No such run or request", body = ErrorBody), (status = 409, description = "Decided already, stale, or the run ended", body = ErrorBody), (status = 413, description = "The body is too large", body = ErrorBody), (status = 415, description = "The body is not JSON", body = ErrorBody), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn decide(
    State(server): State<Arc<Server>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Approver)?;
    let Json(body) = body.map_err(body_error)?;
    decide_as(&server, &caller.identity, &id, body).await.map(Json)
}

/// A decision on request `id` (`RUN:REQUEST`) made as `identity`: recorded under the
/// run's lease, and the run continued here once the request is settled.
pub(crate) async fn decide_as(
    server: &Arc<Server>,
    identity: &str,
    id: &str,
    body: DecisionBody,
) -> Result<Value, ApiError> {
    let decision = match body.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        other => return Err(ApiError::bad("decision", format!("`{other}`: decide `approve` or `reject`"))),
    };
    if decision == Decision::Reject && body.payload.is_some() {
        return Err(ApiError::bad("payload", "only an approval carries an edited proposal"));
    }
    let Some((run, request)) = id.split_once(':') else {
        return Err(ApiError::not_found("no_request", format!("`{id}` is not an approval id (RUN_ID:REQUEST)")));
    };
    let app = server.worker.app();
    let run_id = app.resolve_run(run).await?;
    let request = DecisionRequest {
        run: run_id.to_string(),
        gate: request.to_string(),
        identity: identity.to_string(),
        decision,
        payload: body.payload,
        comment: body.comment,
        version: body.version,
    };
    let decided = server.worker.exclusive(&run_id, app.decide(request)).await?;
    server.worker.metrics().decided(&decided.after.gate, decision == Decision::Approve);
    let continues = decided.settles();
    if continues {
        server.worker.wake(run_id.clone(), Vec::new());
    }
    let after = &decided.after;
    Ok(json!({
        "run_id": run_id.as_str(), "request": after.id, "gate": after.gate, "by": identity,
        "decision": body.decision, "approved_by": after.approvers, "approvals_needed": after.needed,
        "settled": after.outcome.is_some(), "continues": continues,
    }))
}
