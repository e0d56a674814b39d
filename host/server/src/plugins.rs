//! Plugins and gates: the deployed components, deploying one, and each gate's record.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tether_app::Deploy;
use tether_types::access::Role;
use tether_types::store::PluginAdded;

use crate::auth::Caller;
use crate::error::{query_error, ApiError};
#[allow(unused_imports)]
use crate::openapi::ErrorBody;
use crate::Server;

/// Largest component `POST /v1/plugins` takes (a Python component is tens of MB).
pub const COMPONENT_LIMIT: usize = 128 * 1024 * 1024;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    name: Option<String>,
}

/// `GET /v1/plugins?name=`: deployed plugins (as `tether plugin list --json`).
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", params(ListQuery), responses((status = 200, description = "Deployed plugins", body = Object), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn list(
    State(server): State<Arc<Server>>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let Query(q) = q.map_err(query_error)?;
    let plugins = server.worker.app().plugins(q.name.as_deref()).await?;
    Ok(Json(json!({ "plugins": plugins })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployQuery {
    name: Option<String>,
    version: Option<String>,
}

/// `POST /v1/plugins?name=NAME&version=VERSION` with the component's bytes as the body:
/// checked against the plugin worlds, compiled, and deployed as NAME@VERSION (201; 200
/// if that very component was deployed under it already). The version may come from
/// the component's own metadata instead.
#[utoipa::path(post, path = "/v1/plugins", tag = "plugins", params(DeployQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The component's bytes (a .wasm file; any content type is taken)"), responses((status = 201, description = "Deployed", body = Object), (status = 200, description = "That component was deployed under this name and version already", body = Object), (status = 409, description = "The name and version mean another component", body = ErrorBody), (status = 413, description = "The component is too large", body = ErrorBody), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn deploy(
    State(server): State<Arc<Server>>,
    caller: Caller,
    q: Result<Query<DeployQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    let Query(q) = q.map_err(query_error)?;
    let Some(name) = q.name else {
        return Err(ApiError::bad("name", "name the plugin: POST /v1/plugins?name=NAME&version=VERSION"));
    };
    if body.is_empty() {
        return Err(ApiError::bad("body", "the body must be the component's bytes (.wasm)"));
    }
    let deploy =
        Deploy { wasm: body.to_vec().into(), origin: "the uploaded component".into(), name, version: q.version };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    let deployed = server.worker.app().deploy(deploy, now).await?;
    let status = match deployed.added {
        PluginAdded::Added => StatusCode::CREATED,
        PluginAdded::AlreadyPresent => StatusCode::OK,
    };
    tracing::info!(
        "plugin {}@{} deployed by {} (sha256:{})",
        deployed.record.name,
        deployed.record.version,
        caller.identity,
        deployed.record.digest
    );
    Ok((status, Json(json!({ "plugin": deployed.record }))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatesQuery {
    workflow: Option<String>,
}

/// `GET /v1/gates?workflow=`: each gate's settings, track record and whether it
/// approves by itself now.
#[utoipa::path(get, path = "/v1/gates", tag = "gates", params(GatesQuery), responses((status = 200, description = "Each gate's settings and track record", body = Object), (status = 400, description = "A parameter or the body is wrong", body = ErrorBody), (status = 401, description = "No usable token", body = ErrorBody), (status = 403, description = "The token's role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn gates(
    State(server): State<Arc<Server>>,
    caller: Caller,
    q: Result<Query<GatesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let Query(q) = q.map_err(query_error)?;
    let gates = server.worker.app().gates(q.workflow.as_deref()).await?;
    Ok(Json(json!({ "gates": gates })))
}
