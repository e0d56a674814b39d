//! The `{{name}}` tool: a tether tool in Rust that calls an HTTP API.
//!
//! It GETs `API_URL` + the `path` of its input over the standard `wasi:http` and returns
//! the status and the JSON answer. It never holds a credential: the policy binds the
//! API's token to the API's address, and the host adds it to each request on the way out
//! (see README.md). The host also checks every request against the grants, refuses private
//! addresses unless a grant names them, and journals the exchange, so a resumed or
//! replayed run gets the same answer without calling the API again.

wit_bindgen::generate!({ path: "wit", world: "tool-plugin-http", generate_all });

use exports::tether::plugin::tool::Guest;
use serde_json::{json, Value};
use tether::plugin::tool_host;
use tether::plugin::types::{Descriptor, Effect, Failure, FailureKind, Level};
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

struct Tool;

impl Guest for Tool {
    fn describe() -> Descriptor {
        Descriptor {
            name: "{{name}}".into(),
            description: "Reads a resource of the API at API_URL.".into(),
            input_schema: json!({"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}})
                .to_string(),
            output_schema: json!({"type": "object", "properties": {"status": {"type": "integer"}, "body": {}}})
                .to_string(),
            effect: Effect::ReadOnly,
        }
    }

    fn call(input: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
        let Some(path) = input.get("path").and_then(Value::as_str) else {
            return Err(failure(FailureKind::InvalidInput, "expected {\"path\": \"/...\"}".into()));
        };
        // A granted environment variable: `env = ["API_URL"]` on the tool and its identity.
        let base = std::env::var("API_URL")
            .map_err(|_| failure(FailureKind::Internal, "API_URL is not granted to this tool".into()))?;
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let (status, body) = get(&url)?;
        tool_host::log(Level::Info, &format!("GET {url}: {status}"));
        let body: Value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
        Ok(json!({ "status": status, "body": body }).to_string())
    }
}

/// One GET over wasi:http: the whole answer, or the host's refusal as `denied`.
fn get(url: &str) -> Result<(u16, Vec<u8>), Failure> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| failure(FailureKind::InvalidInput, format!("{url} is not a URL")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let bad = |_| failure(FailureKind::InvalidInput, format!("{url} cannot be requested"));
    request.set_method(&Method::Get).map_err(bad)?;
    request.set_scheme(Some(&if scheme == "http" { Scheme::Http } else { Scheme::Https })).map_err(bad)?;
    request.set_authority(Some(authority)).map_err(bad)?;
    request.set_path_with_query(Some(path)).map_err(bad)?;
    let body = request.body().map_err(bad)?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| refused(url, e))?;
    OutgoingBody::finish(body, None).map_err(|e| refused(url, e))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(refused(url, e)),
        _ => return Err(failure(FailureKind::Internal, "the answer was taken twice".into())),
    };
    let status = response.status();
    let incoming = response.consume().map_err(bad)?;
    let stream = incoming.stream().map_err(bad)?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => bytes.extend(chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(failure(FailureKind::Transient, format!("{url}: {e:?}"))),
        }
    }
    Ok((status, bytes))
}

fn refused(url: &str, e: ErrorCode) -> Failure {
    match e {
        ErrorCode::HttpRequestDenied => failure(FailureKind::Denied, format!("the host refused {url}: grant it in the workflow and the policy")),
        other => failure(FailureKind::Transient, format!("{url}: {other:?}")),
    }
}

fn failure(kind: FailureKind, message: String) -> Failure {
    Failure { kind, message }
}

export!(Tool);
