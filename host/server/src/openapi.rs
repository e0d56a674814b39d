//! The API's OpenAPI document, generated from the handlers' annotations (utoipa) and
//! served at `/v1/openapi.json`; a property-based tester checks the live server against
//! it in the test suite.

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// A stable name: `unknown_run`, `forbidden`, `stale_decision`, ...
    code: String,
    /// What went wrong, for a person.
    message: String,
    /// The request field at fault, if one is.
    field: Option<String>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "tether", description = "The HTTP API of `tether serve`: runs, approvals, gates, plugins, triggers."),
    paths(
        crate::ready,
        crate::metrics,
        crate::list_workflows,
        crate::runs::list,
        crate::runs::one,
        crate::runs::events,
        crate::runs::submit,
        crate::runs::register,
        crate::runs::cancel,
        crate::runs::resume,
        crate::runs::stats,
        crate::approvals::list,
        crate::approvals::decide,
        crate::plugins::list,
        crate::plugins::deploy,
        crate::plugins::gates,
        crate::triggers::hook,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        crate::runs::SubmitBody,
        crate::runs::CancelBody,
        crate::runs::ResumeBody,
        crate::approvals::DecisionBody
    )),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The document, as JSON.
pub(crate) fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null)
}
