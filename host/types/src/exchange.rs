//! An outbound HTTP exchange as the journal records it: the request as the guest made it
//! (credentials named, never their values), and the answer it got or why it got none.
//! One event holds both, written before the guest sees the answer; resume and replay
//! serve the answer from it, and compare the request the guest makes with the recorded
//! one.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of a request body the journal keeps (its digest and length are always kept).
pub const REQUEST_BODY_KEPT: usize = 64 << 10;

/// Which exchange of an attempt: its number among the requests the step (or, during a
/// tool call, that call's tool) made, in the order the guest made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExchangeAt {
    /// The tool call that made it, when a tool made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<u32>,
    /// Its number, from 0.
    pub exchange: u32,
}

impl std::fmt::Display for ExchangeAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tool_call {
            Some(call) => write!(f, "tool call {call}, request {}", self.exchange),
            None => write!(f, "request {}", self.exchange),
        }
    }
}

/// A body, whole or in part: its length and digest always, its bytes as text when they
/// are UTF-8, otherwise in base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedBody {
    /// Its length in bytes.
    pub bytes: u64,
    /// sha256 of all of it, hex.
    pub sha256: String,
    /// Its bytes (the first [`REQUEST_BODY_KEPT`] of a request's), when they are UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Its bytes (as above) in base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

impl RecordedBody {
    /// `body`, keeping at most `kept` of its bytes (cut on a character boundary). Text
    /// whose JSON escapes would make it larger than base64 is kept as base64, so an
    /// event's size stays within a third more than the body's.
    pub fn of(body: &[u8], kept: usize) -> RecordedBody {
        let sha256 = hex::encode(Sha256::digest(body));
        let mut part = &body[..body.len().min(kept)];
        // What JSON's escapes add to a text: `\"`, `\\`, `\n` one byte, `\u00XX` five.
        let escaped = |t: &str| -> usize {
            t.bytes()
                .map(|b| match b {
                    b'"' | b'\\' | b'\n' | b'\r' | b'\t' => 1,
                    0..=0x1f => 5,
                    _ => 0,
                })
                .sum()
        };
        let (text, base64) = match std::str::from_utf8(part) {
            Ok(t) if escaped(t) > t.len() / 3 => (None, Some(base64::engine::general_purpose::STANDARD.encode(part))),
            Ok(t) => (Some(t.to_string()), None),
            Err(e) if part.len() < body.len() && e.error_len().is_none() => {
                // Cut inside a character: keep the text up to it.
                part = &part[..e.valid_up_to()];
                (Some(String::from_utf8_lossy(part).into_owned()), None)
            }
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(part))),
        };
        RecordedBody { bytes: body.len() as u64, sha256, text, base64 }
    }

    /// The bytes it holds; `Err` if they are not all there or do not match the digest,
    /// so an answer is never served from a record that cannot be read whole.
    pub fn whole(&self) -> Result<Vec<u8>, String> {
        let bytes = match (&self.text, &self.base64) {
            (Some(t), None) => t.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("the recorded body is not base64: {e}"))?,
            (None, None) if self.bytes == 0 => Vec::new(),
            _ => return Err("the recorded body holds neither text nor base64, or both".into()),
        };
        if bytes.len() as u64 != self.bytes || hex::encode(Sha256::digest(&bytes)) != self.sha256 {
            return Err(format!("the recorded body is not the {} bytes its digest names", self.bytes));
        }
        Ok(bytes)
    }
}

/// A request as the journal records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Its method, upper case.
    pub method: String,
    /// Its URL.
    pub url: String,
    /// Its headers as the guest set them, with the idempotency key the host added.
    pub headers: Vec<(String, String)>,
    /// Its body (up to [`REQUEST_BODY_KEPT`] bytes of it).
    pub body: RecordedBody,
    /// The credential the host added on the way out: `HEADER from SECRET`, never a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What a request got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HttpOutcome {
    /// An answer, whole (redirects included: they are not followed).
    Answer {
        /// Its status code.
        status: u16,
        /// Its headers.
        headers: Vec<(String, String)>,
        /// Its body, whole.
        body: RecordedBody,
    },
    /// No answer: the guest got this error.
    Failed {
        /// Which error.
        error: HttpError,
        /// Why, for people: names the request and what would allow it.
        message: String,
    },
}

/// Why a request got no answer; each is a `wasi:http` error code for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpError {
    /// No grant allows it, its address is refused, or the policy said no.
    Denied,
    /// Its host name did not resolve.
    Dns,
    /// No address accepted a connection.
    ConnectionRefused,
    /// No answer within what was left of the attempt's wall time.
    Timeout,
    /// TLS could not be set up (for example the certificate is not valid for the name).
    Tls,
    /// The request or the answer was not valid HTTP, or the connection broke.
    Protocol,
    /// The request was not one the host can send (a URL or header it cannot take).
    InvalidRequest,
    /// Its body was larger than the host takes.
    RequestTooLarge,
    /// The answer's body was larger than the budget had left.
    ResponseTooLarge,
}

impl HttpError {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpError::Denied => "denied",
            HttpError::Dns => "dns",
            HttpError::ConnectionRefused => "connection_refused",
            HttpError::Timeout => "timeout",
            HttpError::Tls => "tls",
            HttpError::Protocol => "protocol",
            HttpError::InvalidRequest => "invalid_request",
            HttpError::RequestTooLarge => "request_too_large",
            HttpError::ResponseTooLarge => "response_too_large",
        }
    }
}

/// The suffix of the id of every approval of an HTTP request.
pub const APPROVAL_SUFFIX: &str = "@http_request";

/// The id of the approval of request `at` of the run of step `step`:
/// `STEP/http/N@http_request`, or `STEP/CALL/http/N@http_request` for a tool's.
pub fn approval_id(step: &str, at: ExchangeAt) -> String {
    match at.tool_call {
        Some(call) => format!("{step}/{call}/http/{}{APPROVAL_SUFFIX}", at.exchange),
        None => format!("{step}/http/{}{APPROVAL_SUFFIX}", at.exchange),
    }
}

/// Methods a server may receive twice with the effect of once (RFC 9110, 9.2.2): a
/// request with one of them that was in flight at a crash is sent again.
pub fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

/// The idempotency key the host adds to a request whose method is not idempotent: the
/// same for this request across resumes, replays and retries of the step, different for
/// every other request.
pub fn idempotency_key(run: &str, step: &str, at: ExchangeAt) -> String {
    match at.tool_call {
        Some(call) => format!("{run}/{step}/{call}/http/{}", at.exchange),
        None => format!("{run}/{step}/http/{}", at.exchange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_as_text_or_base64_and_a_damaged_record_is_refused() {
        for body in [&b"{\"ok\":true}"[..], &[0xff, 0x00, 0x80][..], b""] {
            let recorded = RecordedBody::of(body, usize::MAX);
            assert_eq!(recorded.whole().unwrap(), body);
        }
        assert!(RecordedBody::of(b"hello", usize::MAX).text.is_some());
        assert!(RecordedBody::of(&[0xff], usize::MAX).base64.is_some());
        let mut damaged = RecordedBody::of(b"hello", usize::MAX);
        damaged.text = Some("hellO".into());
        assert!(damaged.whole().unwrap_err().contains("5 bytes"));
    }

    #[test]
    fn text_that_escapes_heavily_is_kept_as_base64() {
        let quotes = "\"".repeat(3000);
        let recorded = RecordedBody::of(quotes.as_bytes(), usize::MAX);
        assert!(recorded.base64.is_some());
        let event_bytes = serde_json::to_string(&recorded).unwrap().len();
        assert!(event_bytes < 3000 * 4 / 3 + 200, "{event_bytes}");
        assert_eq!(recorded.whole().unwrap(), quotes.as_bytes());
        assert!(RecordedBody::of(b"{\"a\": \"plain json\"}", usize::MAX).text.is_some());
    }

    #[test]
    fn a_kept_part_is_cut_on_a_character_boundary_and_keeps_the_whole_digest() {
        let body = "aé".repeat(10);
        let part = RecordedBody::of(body.as_bytes(), 4);
        assert_eq!(part.text.as_deref(), Some("aéa"));
        assert_eq!(part.bytes, body.len() as u64);
        assert_eq!(part.sha256, RecordedBody::of(body.as_bytes(), usize::MAX).sha256);
        // Not whole: never served as an answer.
        assert!(part.whole().is_err());
    }

    #[test]
    fn idempotency_keys_differ_per_request_and_per_tool_call() {
        let a = idempotency_key("r", "s", ExchangeAt { tool_call: None, exchange: 0 });
        let b = idempotency_key("r", "s", ExchangeAt { tool_call: None, exchange: 1 });
        let c = idempotency_key("r", "s", ExchangeAt { tool_call: Some(0), exchange: 0 });
        assert!(a != b && a != c && b != c);
        assert!(is_idempotent("PUT") && !is_idempotent("POST") && !is_idempotent("PATCH"));
    }

    #[test]
    fn an_exchange_event_reads_back_as_written() {
        use crate::event::EventKind;
        let request = RecordedRequest {
            method: "POST".into(),
            url: "http://127.0.0.1:8080/v1/refunds".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: RecordedBody::of(b"{}", REQUEST_BODY_KEPT),
            credential: Some("authorization from PAYMENTS_KEY".into()),
        };
        for outcome in [
            HttpOutcome::Answer { status: 201, headers: vec![], body: RecordedBody::of(b"ok", usize::MAX) },
            HttpOutcome::Failed { error: HttpError::Denied, message: "no".into() },
        ] {
            let event = EventKind::HttpExchanged {
                step: "s".into(),
                at: ExchangeAt { tool_call: Some(2), exchange: 1 },
                request: request.clone(),
                outcome,
                wall_us: 5,
            };
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<EventKind>(&text).unwrap(), event, "{text}");
        }
    }
}
