//! Who is asking: every `/v1` request carries `Authorization: Bearer TOKEN`; the token's
//! identity is who acts, and its roles what it may do. No token, an unknown one, or a
//! revoked or expired one is 401; a role that does not allow the endpoint is 403.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use tether_app::Refused;
use tether_types::access::{allowed, Role};

use crate::error::ApiError;
use crate::Server;

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's name.
    pub token: String,
    /// Who it acts as.
    pub identity: String,
    /// What it may do.
    pub roles: Vec<Role>,
}

impl Caller {
    /// `Ok` if the caller's roles allow `needed`, else 403 naming what is missing.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if allowed(&self.roles, needed) {
            return Ok(());
        }
        let held: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token `{}` ({}) may not do this: it needs the `{needed}` role (or operator or admin)",
                self.token,
                held.join(", ")
            ),
        ))
    }
}

impl FromRequestParts<Arc<Server>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, server: &Arc<Server>) -> Result<Caller, ApiError> {
        let unauthenticated = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m.to_string());
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthenticated(
                "this endpoint needs `Authorization: Bearer TOKEN` (make one with `tether token create`)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer TOKEN`"))?;
        match server.worker.app().authenticate(token).await? {
            Ok(record) => Ok(Caller { token: record.name, identity: record.identity, roles: record.roles }),
            Err(Refused::Unknown) => Err(unauthenticated("the token is not known")),
            Err(Refused::Unusable(why)) => Err(unauthenticated(&format!("the token is {why}"))),
        }
    }
}
