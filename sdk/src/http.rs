//! Outbound HTTP from a step or a tool, over the standard `wasi:http/outgoing-handler`.
//!
//! Nothing is reachable unless the workflow asks for it (`http = [...]` on the step or
//! tool) and, under a policy with identities, the run's identity is granted it. The host
//! sends the request itself: it adds credentials the policy binds to the destination
//! (the guest never holds them), adds an `Idempotency-Key` to a POST or PATCH, refuses
//! private addresses unless a grant names them, does not follow redirects, and journals
//! the exchange, so a resumed or replayed run gets the same answer without sending again.
//!
//! ```ignore
//! let answer = tether_sdk::http::get("https://api.example.com/v1/customers/42")?;
//! let customer: Customer = answer.json()?;
//! let created = tether_sdk::http::Request::post("https://api.example.com/v1/refunds")
//!     .json(&Refund { amount: 20 })?
//!     .send()?;
//! ```

use crate::http_bindings::wasi::http::outgoing_handler;
use crate::http_bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::http_bindings::wasi::io::streams::StreamError;
use crate::Failure;

/// A request to send.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// An answer, whole.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code (a redirect is an answer: it is not followed).
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Failure> {
    Request::get(url).send()
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, url: &str) -> Request {
        Request { method: method.to_ascii_uppercase(), url: url.to_string(), headers: Vec::new(), body: Vec::new() }
    }

    /// A GET request.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// A POST request.
    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json<T: serde::Serialize>(self, value: &T) -> Result<Request, Failure> {
        let body = serde_json::to_vec(value).map_err(|e| Failure::invalid_input(e.to_string()))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Sends it and reads the whole answer. A refusal by the host (no grant, a refused
    /// address, the budget) is a `denied` failure; a network error is `transient`.
    pub fn send(&self) -> Result<Response, Failure> {
        let (scheme, authority, path) = split_url(&self.url)?;
        let fields: Vec<(String, Vec<u8>)> = self.headers.clone();
        let headers = Fields::from_list(&fields)
            .map_err(|e| Failure::invalid_input(format!("header not accepted: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let bad = |what: &str| Failure::invalid_input(format!("{what} of {} is not accepted", self.url));
        request.set_method(&method).map_err(|()| bad("the method"))?;
        request.set_scheme(Some(&scheme)).map_err(|()| bad("the scheme"))?;
        request.set_authority(Some(authority)).map_err(|()| bad("the host"))?;
        request.set_path_with_query(Some(path)).map_err(|()| bad("the path"))?;
        let body = request.body().map_err(|()| Failure::internal("the request body was taken twice"))?;
        // Sent first, so the host reads the body while it is written.
        let pending = outgoing_handler::handle(request, None).map_err(|e| failure(&self.url, e))?;
        write_body(&body, &self.body)?;
        OutgoingBody::finish(body, None).map_err(|e| failure(&self.url, e))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(failure(&self.url, e)),
            Some(Err(())) | None => return Err(Failure::internal("the answer was taken twice")),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| Failure::internal("the answer's body was taken twice"))?;
        let body = read_body(incoming)?;
        Ok(Response { status, headers, body })
    }
}

impl Response {
    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Failure::internal(format!("the answer (status {}) is not the JSON expected: {e}", self.status)))
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), Failure> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body.write().map_err(|()| Failure::internal("the request body stream was taken twice"))?;
    for chunk in bytes.chunks(4096) {
        stream.blocking_write_and_flush(chunk).map_err(|e| Failure::transient(format!("writing the body: {e:?}")))?;
    }
    Ok(())
}

fn read_body(incoming: IncomingBody) -> Result<Vec<u8>, Failure> {
    let stream = incoming.stream().map_err(|()| Failure::internal("the answer's stream was taken twice"))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(Failure::transient(format!("reading the answer: {}", e.to_debug_string())))
            }
        }
    }
    drop(stream);
    let _ = IncomingBody::finish(incoming);
    Ok(body)
}

/// `SCHEME://AUTHORITY/PATH?QUERY` apart.
fn split_url(url: &str) -> Result<(Scheme, &str, &str), Failure> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Failure::invalid_input(format!("`{url}` is not an absolute URL (https://host/path)")))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => return Err(Failure::invalid_input(format!("`{other}` is not http or https"))),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((scheme, authority, path))
}

/// The host's error as a failure: refusals are `denied`, the network `transient`.
fn failure(url: &str, e: ErrorCode) -> Failure {
    match e {
        ErrorCode::HttpRequestDenied => {
            Failure::denied(format!("the host refused {url}: no grant allows it (the run's history says which to add)"))
        }
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
            Failure::invalid_input(format!("{url}: {e:?}"))
        }
        other => Failure::transient(format!("{url}: {other:?}")),
    }
}
