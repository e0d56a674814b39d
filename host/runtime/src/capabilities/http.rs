//! `wasi:http/outgoing-handler` for steps and tools, through wasmtime-wasi-http's
//! `send_request` seam. Every request is taken whole (its body collected), then in order:
//!
//! 1. counted against the `http_requests` budget (past it the guest gets an error and
//!    the attempt stops `http_budget_exceeded`);
//! 2. served from the journal when it holds the exchange (resume, replay: no request
//!    leaves, and a request that differs from the recorded one is a divergence);
//! 3. checked against what the step or tool asked for and its identity was granted;
//! 4. sent through the host's own connector (`egress.rs`: every resolved address
//!    checked, redirects not followed, bounded by the attempt's deadline), with an
//!    idempotency key added to a method that is not idempotent, after the run so far is
//!    durable;
//! 5. journaled as one `http_exchanged` event, durable before the guest sees the answer.
//!
//! A request that is not safe to repeat and carries no key leaves after an
//! `http_sending` marker; found alone after a crash, it fails the attempt `in_doubt`.
//!
//! Requests run beside the guest (it may make several before reading any answer), so
//! their events are served by number rather than by position on the tape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use tether_types::egress::{check_request, evasion, named_networks, Credential, HttpGrant, Request, Scheme, Target};
use tether_types::event::EventKind;
use tether_types::exchange::{
    approval_id, idempotency_key, is_idempotent, ExchangeAt, HttpError, HttpOutcome, RecordedBody, RecordedRequest,
    REQUEST_BODY_KEPT,
};
use tether_types::policy::{vars, Checkpoint, RequestAt, Verdict};
use tether_types::state::{Approval, ApprovalOutcome};
use tether_types::FailureClass;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::capabilities::egress::{self, Exchange, ExchangeError};
use crate::durable::tape::{lock, RecordedExchange, SharedTape};
use crate::durable::time::now_us;
use crate::govern::governance::Governance;

/// Largest request body the host takes from a guest.
pub(crate) const REQUEST_BODY_CAP: usize = 8 << 20;

/// Largest answer body one request may read, whatever its budget has left: the whole
/// body goes into one journal event, which must stay well under the journal's largest.
pub(crate) const RESPONSE_BODY_CAP: u64 = 4 << 20;

/// What one step attempt or tool call may reach, and where its exchanges are journaled.
pub(crate) struct HttpScope {
    /// Who asks, as errors name it: "step `fetch`", "tool `lookup`".
    pub(crate) whose: String,
    /// The run, for idempotency keys.
    pub(crate) run_id: String,
    /// The key of the run of the step.
    pub(crate) step: String,
    /// The tool call making the requests, when a tool makes them.
    pub(crate) tool_call: Option<u32>,
    /// What the step or tool asked for in the workflow.
    pub(crate) asked: Vec<HttpGrant>,
    /// The run's identity and what it was granted, when the policy has identities.
    pub(crate) identity: Option<(String, Vec<HttpGrant>)>,
    /// When the attempt's wall time runs out.
    pub(crate) deadline: Instant,
    /// The `http_requests` budget.
    pub(crate) max_requests: u32,
    /// The `http_bytes` budget.
    pub(crate) max_bytes: u64,
    /// The tool making the requests, when a tool makes them (for rules).
    pub(crate) tool: Option<String>,
    /// The run's policy and identity, when it has a policy.
    pub(crate) governance: Option<Arc<Governance>>,
    /// Values of granted secrets: the journal shows `[secret]` in their place, so requests
    /// are compared, and answers given, as the journal holds them.
    pub(crate) secrets: Arc<Vec<String>>,
}

impl HttpScope {
    /// The identity's HTTP grants, when the run's policy has identities (the request
    /// then needs one of them as well as one the workflow asked for).
    pub(crate) fn identity_grants(
        governance: Option<&crate::govern::governance::Governance>,
    ) -> Option<(String, Vec<HttpGrant>)> {
        let g = governance?;
        if g.policy.identities.is_empty() {
            return None;
        }
        let granted = g.policy.identities.get(&g.identity).map(|i| i.http.clone()).unwrap_or_default();
        Some((g.identity.clone(), granted))
    }
}

/// The `wasi:http` hooks of one store: every request goes through [`exchange`].
pub(crate) struct HttpHooks {
    /// `None`: this store may make no request at all (a tool's `describe`).
    scope: Option<Arc<HttpScope>>,
    tape: Option<SharedTape>,
    /// The number the next request gets.
    next: u32,
    /// Response bytes read so far (served ones included), and held by requests in
    /// flight: each claims what it may read before it leaves, so requests made at once
    /// cannot together read past the budget.
    bytes_held: Arc<AtomicU64>,
    /// The step attempt's budget, which its tools' requests draw on too.
    attempt: Arc<AttemptBudget>,
    /// Why the attempt must stop, set by a request (see `SandboxView::over_budget`).
    stop: Arc<Stop>,
}

/// Why the attempt must stop, and the signal that wakes the sandbox to stop it at once
/// (the guest may be blocked waiting for the answer).
#[derive(Default)]
pub(crate) struct Stop {
    why: Mutex<Option<(FailureClass, String)>>,
    signal: Arc<tokio::sync::Notify>,
}

impl Stop {
    fn set(&self, class: FailureClass, msg: String) {
        self.why.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert((class, msg));
        self.signal.notify_one();
    }

    fn get(&self) -> Option<(FailureClass, String)> {
        self.why.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What a step attempt may request and read over HTTP, its tools' requests included,
/// and what it has so far.
#[derive(Default)]
pub(crate) struct AttemptBudget {
    requests: std::sync::atomic::AtomicU32,
    bytes_held: AtomicU64,
    max_requests: u32,
    max_bytes: u64,
}

impl HttpHooks {
    /// Hooks for a step attempt's store, whose requests `scope` governs, journaled on
    /// `tape`; its budget is the attempt's.
    pub(crate) fn new(scope: HttpScope, tape: Option<SharedTape>) -> HttpHooks {
        let attempt =
            AttemptBudget { max_requests: scope.max_requests, max_bytes: scope.max_bytes, ..Default::default() };
        HttpHooks::within(scope, tape, Arc::new(attempt))
    }

    /// Hooks for a tool call's store: its own budget, within what the calling step's
    /// attempt has left (`attempt`).
    pub(crate) fn within(scope: HttpScope, tape: Option<SharedTape>, attempt: Arc<AttemptBudget>) -> HttpHooks {
        HttpHooks {
            scope: Some(Arc::new(scope)),
            tape,
            next: 0,
            bytes_held: Arc::default(),
            attempt,
            stop: Arc::default(),
        }
    }

    /// Hooks that refuse every request.
    pub(crate) fn none() -> HttpHooks {
        HttpHooks {
            scope: None,
            tape: None,
            next: 0,
            bytes_held: Arc::default(),
            attempt: Arc::default(),
            stop: Arc::default(),
        }
    }

    /// The attempt's budget, for the tools the step calls.
    pub(crate) fn attempt(&self) -> Arc<AttemptBudget> {
        Arc::clone(&self.attempt)
    }

    /// Why the attempt must stop, if a request said so.
    pub(crate) fn stopped(&self) -> Option<(FailureClass, String)> {
        self.stop.get()
    }

    /// Notified when a request stops the attempt.
    pub(crate) fn stop_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.stop.signal)
    }
}

type Sent = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for HttpHooks {
    /// The host sets `host` itself, from the checked target.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn std::future::Future<Output = Sent> + Send> {
        let Some(scope) = self.scope.clone() else {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        };
        let at = ExchangeAt { tool_call: scope.tool_call, exchange: self.next };
        self.next = self.next.saturating_add(1);
        let over = if at.exchange >= scope.max_requests {
            Some(format!(
                "{} made more than {} HTTP requests; its http_requests budget is {}",
                scope.whose, scope.max_requests, scope.max_requests
            ))
        } else if self.attempt.requests.fetch_add(1, Ordering::AcqRel) >= self.attempt.max_requests {
            Some(format!(
                "{} made a request past the calling step's http_requests budget of {} (its tools' requests count too)",
                scope.whose, self.attempt.max_requests
            ))
        } else {
            None
        };
        if let Some(msg) = over {
            self.stop.set(FailureClass::HttpBudgetExceeded, msg);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let call = Call {
            scope,
            at,
            tape: self.tape.clone(),
            bytes_held: Arc::clone(&self.bytes_held),
            attempt: Arc::clone(&self.attempt),
            stop: Arc::clone(&self.stop),
        };
        Box::new(async move {
            match call.exchange(request).await {
                Ok(outcome) => Ok((answer_for_guest(outcome)?, Box::new(async { Ok(()) }) as Box<_>)),
                // Waiting for a person: the guest must not see any answer, so none comes;
                // the sandbox is stopped from outside (see `Stop`).
                Err(_) if matches!(call.stop.get(), Some((FailureClass::AwaitingApproval, _))) => {
                    std::future::pending().await
                }
                Err(e) => Err(e),
            }
        })
    }
}

/// One request, with what it needs once it has left the store.
struct Call {
    scope: Arc<HttpScope>,
    at: ExchangeAt,
    tape: Option<SharedTape>,
    bytes_held: Arc<AtomicU64>,
    attempt: Arc<AttemptBudget>,
    stop: Arc<Stop>,
}

/// A request as the guest made it, whole.
struct Taken {
    method: String,
    target: Option<Target>,
    path_and_query: String,
    url: String,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Call {
    /// The request's outcome: served, refused or made, and journaled. `Err` only when
    /// the attempt must stop (a divergence, a journal that cannot be written).
    async fn exchange(&self, request: http::Request<WasiBody>) -> wasmtime_wasi_http::Result<HttpOutcome> {
        let deadline = tokio::time::Instant::from_std(self.scope.deadline);
        let (taken, refused) = match take(request, deadline).await {
            Ok(taken) => (taken, None),
            Err((taken, failed)) => (taken, Some(failed)),
        };
        let recorded_request = as_journaled(&self.record_request(&taken), &self.scope.secrets);
        let event = |outcome: HttpOutcome, wall_us: u64| EventKind::HttpExchanged {
            step: self.scope.step.clone(),
            at: self.at,
            request: recorded_request.clone(),
            outcome,
            wall_us,
        };
        let pending = || event(HttpOutcome::Failed { error: HttpError::Protocol, message: String::new() }, 0);
        match self.recorded(pending)? {
            RecordedExchange::Answered(recorded) => {
                let (seq, recorded) = *recorded;
                let EventKind::HttpExchanged { request, outcome, .. } = &recorded else {
                    return Err(self.halt(FailureClass::HostFault, "the journal holds no exchange here".into()));
                };
                if *request != recorded_request {
                    if let Some(t) = &self.tape {
                        lock(t).exchange_differs((seq, recorded.clone()), pending());
                    }
                    return Err(wasmtime_wasi_http::Error::InternalError(Some("diverged from the journal".into())));
                }
                if let HttpOutcome::Answer { body, .. } = outcome {
                    self.bytes_held.fetch_add(body.bytes, Ordering::Relaxed);
                    self.attempt.bytes_held.fetch_add(body.bytes, Ordering::Relaxed);
                }
                // Its approval, if it had one, is served with it.
                if let Some(t) = &self.tape {
                    lock(t).http_approval(&approval_id(&self.scope.step, self.at));
                }
                return Ok(outcome.clone());
            }
            RecordedExchange::InFlight(seq) => {
                let msg = format!(
                    "{} {} was in flight without an idempotency key when the run's host stopped (event {seq}): \
                     whether it took effect is not known, so it is not sent again; check the server, then \
                     re-run the step",
                    taken.method, taken.url
                );
                return Err(self.halt(FailureClass::InDoubt, msg));
            }
            RecordedExchange::None => {}
        }
        let started = Instant::now();
        let refused = match refused.or_else(|| self.refusal(&taken)) {
            Some(failed) => Some(failed),
            None => self.checkpoint(&taken, &recorded_request).await?,
        };
        let outcome = match refused {
            Some(failed) => failed,
            None => self.send(&taken, &recorded_request).await?,
        };
        let wall_us = started.elapsed().as_micros() as u64;
        self.journal_durably(event(outcome.clone(), wall_us)).await?;
        Ok(outcome)
    }

    fn recorded(&self, actual: impl FnOnce() -> EventKind) -> wasmtime_wasi_http::Result<RecordedExchange> {
        let Some(t) = &self.tape else { return Ok(RecordedExchange::None) };
        let recorded = lock(t).recorded_exchange(self.at, actual);
        recorded.map_err(|()| wasmtime_wasi_http::Error::InternalError(Some("diverged from the journal".into())))
    }

    /// The request as the journal records it, with the idempotency key the host adds.
    fn record_request(&self, taken: &Taken) -> RecordedRequest {
        let mut headers: Vec<(String, String)> = taken
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        if let Some(key) = self.added_key(taken) {
            headers.push(("idempotency-key".into(), key));
        }
        RecordedRequest {
            method: taken.method.clone(),
            url: taken.url.clone(),
            headers,
            body: RecordedBody::of(&taken.body, REQUEST_BODY_KEPT),
            credential: self.credential_for(taken).map(Credential::describe),
        }
    }

    /// The credential the policy binds to the request's destination: the first of the
    /// identity's grants that allows the request and carries one.
    fn credential_for(&self, taken: &Taken) -> Option<&Credential> {
        let target = taken.target.as_ref()?;
        let path = path_of(&taken.path_and_query);
        let (_, granted) = self.scope.identity.as_ref()?;
        granted.iter().filter(|g| g.allows(&taken.method, target, path)).find_map(|g| g.credential.as_ref())
    }

    /// The idempotency key the host adds: to a method that is not idempotent, unless the
    /// guest set one or the grant says the server takes none.
    fn added_key(&self, taken: &Taken) -> Option<String> {
        let needed = !is_idempotent(&taken.method) && !taken.headers.contains_key("idempotency-key");
        (needed && !self.key_refused(taken)).then(|| idempotency_key(&self.scope.run_id, &self.scope.step, self.at))
    }

    /// Whether the grant allowing the request says its server takes no idempotency key.
    fn key_refused(&self, taken: &Taken) -> bool {
        let Some(target) = &taken.target else { return false };
        let request = Request { method: &taken.method, target, path: path_of(&taken.path_and_query) };
        self.scope
            .asked
            .iter()
            .find(|g| g.allows(request.method, request.target, request.path))
            .is_some_and(|g| !g.idempotency_key)
    }

    /// Why the request may not leave, as its outcome.
    fn refusal(&self, taken: &Taken) -> Option<HttpOutcome> {
        let Some(target) = &taken.target else {
            return Some(failed(HttpError::InvalidRequest, format!("{} is not an http or https URL", taken.url)));
        };
        let request = Request { method: &taken.method, target, path: path_of(&taken.path_and_query) };
        let s = &self.scope;
        let identity = s.identity.as_ref().map(|(name, grants)| (name.as_str(), grants.as_slice()));
        if let Err(msg) = check_request(request, &s.whose, &s.asked, identity) {
            return Some(failed(HttpError::Denied, msg));
        }
        if let Some(why) = evasion(&taken.path_and_query, taken.headers.keys().map(|n| n.as_str())) {
            return Some(failed(HttpError::Denied, format!("{request}: {why}")));
        }
        let credential = self.credential_for(taken)?;
        if taken.headers.contains_key(credential.header.as_str()) {
            let msg = format!(
                "{request}: the host adds the `{}` header to this destination ({}); {} may not set it",
                credential.header,
                credential.describe(),
                s.whose
            );
            return Some(failed(HttpError::Denied, msg));
        }
        None
    }

    /// The policy's rules at `http_request`: `None` to go on, or the outcome of a request
    /// a rule denies or a person rejected. A rule that requires approval raises it (once,
    /// durably) and stops the attempt until it is decided; the run waits holding no
    /// sandbox, and the request is made when the attempt runs again, approved. An
    /// approver's edit does not change the request: it is sent as the guest made it.
    async fn checkpoint(
        &self,
        taken: &Taken,
        recorded: &RecordedRequest,
    ) -> wasmtime_wasi_http::Result<Option<HttpOutcome>> {
        let (Some(gov), Some(target)) = (self.scope.governance.as_ref(), taken.target.as_ref()) else {
            return Ok(None);
        };
        if !gov.rules.any_at(Checkpoint::HttpRequest) {
            return Ok(None);
        }
        let request = Request { method: &taken.method, target, path: path_of(&taken.path_and_query) };
        let step = tether_types::flow::step_of(&self.scope.step).to_string();
        let vars = vars(&[
            ("identity", Value::String(gov.identity.clone())),
            ("step", Value::String(step)),
            ("tool", Value::String(self.scope.tool.clone().unwrap_or_default())),
            ("method", Value::String(request.method.to_string())),
            ("url", Value::String(format!("{target}{}", request.path))),
            ("scheme", Value::String(target.scheme.to_string())),
            ("host", Value::String(target.host.clone())),
            ("port", Value::from(target.port)),
            ("path", Value::String(request.path.to_string())),
            ("run", serde_json::json!({"workflow": gov.workflow, "input": gov.run_input})),
        ]);
        let ruling = gov.rules.decide(Checkpoint::HttpRequest, &vars);
        let rule = ruling.rule.unwrap_or_default();
        match ruling.verdict {
            Verdict::Allow => Ok(None),
            Verdict::Deny => {
                let msg = format!("{request}: denied by rule `{rule}` at the `http_request` checkpoint");
                Ok(Some(failed(HttpError::Denied, msg)))
            }
            Verdict::RequireApproval => {
                let gate = ruling.gate.unwrap_or_default();
                // What a person approves is this request exactly: its digest is checked
                // when the attempt runs again, so another request cannot ride on it.
                let proposal = serde_json::json!({
                    "method": recorded.method,
                    "url": recorded.url,
                    "body": recorded.body.text.as_deref().map(|t| t.chars().take(1024).collect::<String>()),
                    "body_bytes": recorded.body.bytes,
                    "request_sha256": request_digest(recorded),
                });
                self.approval(gov, &gate, request, proposal, &vars).await
            }
        }
    }

    /// The approval of this request at `gate`: recorded, or raised now; decided by
    /// people (recorded), or by the gate itself once its record earned it.
    async fn approval(
        &self,
        gov: &Governance,
        gate: &str,
        request: Request<'_>,
        proposal: Value,
        vars: &serde_json::Map<String, Value>,
    ) -> wasmtime_wasi_http::Result<Option<HttpOutcome>> {
        let id = approval_id(&self.scope.step, self.at);
        let recorded = self.tape.as_ref().map(|t| lock(t).http_approval(&id)).unwrap_or_default();
        let mut recorded = recorded.into_iter();
        let requested = match recorded.next() {
            Some(r @ EventKind::ApprovalRequested { .. }) => r,
            Some(_) => {
                return Err(
                    self.halt(FailureClass::HostFault, format!("the journal holds {id} decided but never requested"))
                )
            }
            None => {
                let at =
                    RequestAt { step: &self.scope.step, call: Some(self.at.exchange), on: Checkpoint::HttpRequest };
                let mut r = gov.policy.request(gate, at, proposal.clone(), vars, now_us());
                if let EventKind::ApprovalRequested { id: own, .. } = &mut r {
                    own.clone_from(&id);
                }
                self.journal_durably(r.clone()).await?;
                r
            }
        };
        let Some(mut pending) = Approval::requested(&requested) else {
            return Err(self.halt(FailureClass::HostFault, format!("the journal's request {id} cannot be read")));
        };
        if pending.proposal["request_sha256"] != proposal["request_sha256"] {
            let msg = format!("{request} is not the request approved as {id}: the component is not deterministic");
            return Err(self.halt(FailureClass::HostFault, msg));
        }
        for decided in recorded {
            pending.decide(&decided);
        }
        if pending.outcome.is_none() {
            if let Some(decided) = gov.auto_decision(&requested) {
                self.journal_durably(decided.clone()).await?;
                pending.decide(&decided);
            }
        }
        match pending.outcome {
            Some(ApprovalOutcome::Approved(payload)) if payload == proposal => Ok(None),
            Some(ApprovalOutcome::Approved(_)) => Ok(Some(failed(
                HttpError::Denied,
                format!(
                    "{request}: approved at gate `{gate}` with an edit; a request is sent only as the step made \
                     it, so an edited approval refuses it (approve it unedited, or reject it)"
                ),
            ))),
            Some(ApprovalOutcome::Rejected { by, comment }) => {
                let why = comment.map(|c| format!(": {c}")).unwrap_or_default();
                Ok(Some(failed(HttpError::Denied, format!("{request}: rejected by {by} at gate `{gate}`{why}"))))
            }
            None => Err(self.halt(FailureClass::AwaitingApproval, format!("waiting for approval of {id}"))),
        }
    }

    /// Sends the request, durable first, and reads its answer within the budget.
    async fn send(&self, taken: &Taken, recorded: &RecordedRequest) -> wasmtime_wasi_http::Result<HttpOutcome> {
        let Some(target) = taken.target.clone() else {
            return Ok(failed(HttpError::InvalidRequest, "no target".into()));
        };
        let request = Request { method: &taken.method, target: &target, path: path_of(&taken.path_and_query) };
        let networks = match &self.scope.identity {
            Some((_, granted)) => named_networks(request, granted),
            None => named_networks(request, &self.scope.asked),
        };
        if !is_idempotent(&taken.method) && !recorded.headers.iter().any(|(n, _)| n == "idempotency-key") {
            let marker = EventKind::HttpSending {
                step: self.scope.step.clone(),
                at: self.at,
                method: taken.method.clone(),
                url: taken.url.clone(),
            };
            self.journal_live(marker);
        }
        // The request may act on the world: the run up to it is durable first.
        self.sync().await?;
        let mut headers = taken.headers.clone();
        if let Some((_, key)) = recorded.headers.iter().find(|(n, _)| n == "idempotency-key") {
            if let Ok(value) = http::HeaderValue::from_str(key) {
                headers.insert("idempotency-key", value);
            }
        }
        // The secret is read now, added to this request alone, and kept from the answer.
        let mut secret = None;
        if let Some(credential) = self.credential_for(taken) {
            let value = match std::env::var(&credential.secret) {
                Ok(v) if !v.is_empty() => v,
                _ => {
                    let msg = format!(
                        "{request}: the credential {} cannot be added: `{}` is not set in tether's environment; \
                         set it where tether runs",
                        credential.describe(),
                        credential.secret
                    );
                    return Ok(failed(HttpError::Denied, msg));
                }
            };
            let header = http::HeaderName::from_bytes(credential.header.as_bytes());
            let header_value = http::HeaderValue::from_str(&credential.header_value(&value));
            let (Ok(name), Ok(mut header_value)) = (header, header_value) else {
                let msg = format!("{request}: the credential {} is not a valid header", credential.describe());
                return Ok(failed(HttpError::Denied, msg));
            };
            header_value.set_sensitive(true);
            headers.insert(name, header_value);
            // An answer that echoes the credential must not bring it back hidden from the
            // scrub below: not compressed, not in pieces.
            headers.remove(http::header::RANGE);
            headers.remove(http::header::IF_RANGE);
            headers.insert(http::header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));
            secret = Some((value, credential.secret.clone()));
        }
        let Ok(method) = http::Method::from_bytes(taken.method.as_bytes()) else {
            return Ok(failed(HttpError::InvalidRequest, format!("`{}` is not an HTTP method", taken.method)));
        };
        let exchange = Exchange {
            method,
            target: target.clone(),
            path_and_query: taken.path_and_query.clone(),
            headers,
            body: taken.body.clone(),
        };
        let deadline = tokio::time::Instant::from_std(self.scope.deadline);
        let claimed = self.claim_bytes();
        let sent = egress::send(&exchange, &networks, deadline, usize::try_from(claimed).unwrap_or(usize::MAX)).await;
        let outcome = match sent {
            Ok(answer) => {
                let encoded =
                    answer.headers.get(http::header::CONTENT_ENCODING).filter(|e| e.as_bytes() != b"identity");
                match (&secret, encoded) {
                    (Some(_), Some(e)) => failed(
                        HttpError::Protocol,
                        format!(
                            "{request}: the answer came {} although the host asked for it plain; it is refused, \
                             since it could carry the credential back hidden",
                            String::from_utf8_lossy(e.as_bytes())
                        ),
                    ),
                    _ => self.answer(answer, secret.as_ref()),
                }
            }
            Err(e) => {
                let after_connect = matches!(e, ExchangeError::Timeout { .. } | ExchangeError::Http { .. });
                let unkeyed =
                    !is_idempotent(&taken.method) && !recorded.headers.iter().any(|(n, _)| n == "idempotency-key");
                if unkeyed && after_connect {
                    // It may have taken effect: never sent again, by a retry or anyone.
                    let msg = format!(
                        "{request} was sent without an idempotency key and got no answer ({e}): whether it \
                         took effect is not known, so it is not sent again; check the server"
                    );
                    let outcome = failed(error_class(&e), msg.clone());
                    self.release_bytes(claimed, &outcome);
                    return Err(self.halt(FailureClass::InDoubt, msg));
                }
                failed(error_class(&e), e.to_string())
            }
        };
        self.release_bytes(claimed, &outcome);
        Ok(outcome)
    }

    /// Claims what this request may read of its `http_bytes` budget and of the step
    /// attempt's (at most [`RESPONSE_BODY_CAP`]).
    fn claim_bytes(&self) -> u64 {
        let claim = |held: &AtomicU64, max: u64, cap: u64| {
            let mut claimed = 0;
            let _ = held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                claimed = max.saturating_sub(h).min(cap);
                Some(h.saturating_add(claimed))
            });
            claimed
        };
        let own = claim(&self.bytes_held, self.scope.max_bytes, RESPONSE_BODY_CAP);
        let claimed = claim(&self.attempt.bytes_held, self.attempt.max_bytes, own);
        // What the attempt could not give back to this request's own claim.
        self.bytes_held.fetch_sub(own - claimed, Ordering::AcqRel);
        claimed
    }

    /// Gives back what a request claimed, and counts what its answer holds as recorded
    /// (as a served answer is counted).
    fn release_bytes(&self, claimed: u64, outcome: &HttpOutcome) {
        let read = match outcome {
            HttpOutcome::Answer { body, .. } => body.bytes,
            HttpOutcome::Failed { .. } => 0,
        };
        for held in [&self.bytes_held, &self.attempt.bytes_held] {
            let _ = held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(claimed).saturating_add(read))
            });
        }
    }

    /// The answer as the journal holds it and the guest gets it: the credential the host
    /// added, if the server echoes it, replaced by `[secret NAME]`; granted secrets by
    /// `[secret]`.
    fn answer(&self, answer: egress::Answer, secret: Option<&(String, String)>) -> HttpOutcome {
        let mut headers = header_pairs(&answer.headers);
        let mut body = answer.body.to_vec();
        let mut marks: Vec<(&str, String)> = Vec::new();
        if let Some((value, name)) = secret {
            marks.push((value.as_str(), format!("[secret {name}]")));
        }
        for value in self.scope.secrets.iter().filter(|v| !v.is_empty()) {
            marks.push((value.as_str(), crate::redact::REDACTED.to_string()));
        }
        for (value, mark) in &marks {
            for (_, v) in &mut headers {
                if v.contains(value) {
                    *v = v.replace(value, mark);
                }
            }
            if memchr::memmem::find(&body, value.as_bytes()).is_some() {
                body = replace_bytes(&body, value.as_bytes(), mark.as_bytes());
            }
        }
        HttpOutcome::Answer { status: answer.status, headers, body: RecordedBody::of(&body, usize::MAX) }
    }

    fn journal_live(&self, event: EventKind) {
        if let Some(t) = &self.tape {
            lock(t).emit_live(&event);
        }
    }

    async fn sync(&self) -> wasmtime_wasi_http::Result<()> {
        let journal = self.tape.as_ref().and_then(|t| lock(t).journal());
        if let Some(journal) = journal {
            if let Err(e) = journal.sync().await {
                return Err(self.halt(FailureClass::HostFault, format!("cannot journal the HTTP request: {e}")));
            }
        }
        Ok(())
    }

    async fn journal_durably(&self, event: EventKind) -> wasmtime_wasi_http::Result<()> {
        self.journal_live(event);
        self.sync().await
    }

    /// Stops the attempt with `class`; the guest's request fails meanwhile.
    fn halt(&self, class: FailureClass, msg: String) -> wasmtime_wasi_http::Error {
        self.stop.set(class, msg.clone());
        wasmtime_wasi_http::Error::InternalError(Some(msg))
    }
}

/// The request's parts and its whole body (at most [`REQUEST_BODY_CAP`] bytes, read
/// before `deadline`); `Err` holds what was taken and the outcome to record instead.
async fn take(request: http::Request<WasiBody>, deadline: tokio::time::Instant) -> Result<Taken, (Taken, HttpOutcome)> {
    let (parts, body) = request.into_parts();
    let uri = &parts.uri;
    let scheme = match uri.scheme_str() {
        Some("http") => Some(Scheme::Http),
        Some("https") => Some(Scheme::Https),
        _ => None,
    };
    let target = match (scheme, uri.host()) {
        (Some(scheme), Some(host)) => Some(Target {
            scheme,
            host: host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(scheme.default_port()),
        }),
        _ => None,
    };
    let path_and_query = uri.path_and_query().map_or("/".to_string(), |p| p.as_str().to_string());
    let mut taken = Taken {
        method: parts.method.as_str().to_ascii_uppercase(),
        url: uri.to_string(),
        target,
        path_and_query,
        headers: parts.headers,
        body: Bytes::new(),
    };
    let collected = tokio::time::timeout_at(deadline, Limited::new(body, REQUEST_BODY_CAP).collect()).await;
    match collected {
        Ok(Ok(body)) => {
            taken.body = body.to_bytes();
            Ok(taken)
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            let msg = format!("{} {}: the request body is over {REQUEST_BODY_CAP} bytes", taken.method, taken.url);
            Err((taken, failed(HttpError::RequestTooLarge, msg)))
        }
        Ok(Err(e)) => {
            let msg = format!("{} {}: the request body could not be read: {e}", taken.method, taken.url);
            Err((taken, failed(HttpError::Protocol, msg)))
        }
        Err(_) => {
            let msg =
                format!("{} {}: the body was not finished within the attempt's wall time", taken.method, taken.url);
            Err((taken, failed(HttpError::Timeout, msg)))
        }
    }
}

/// `haystack` with every `needle` replaced (a server that echoes a credential back must
/// not hand it to the guest, nor to the journal). Linear in the haystack.
fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut last = 0;
    for at in memchr::memmem::find_iter(haystack, needle) {
        if at < last {
            continue;
        }
        out.extend_from_slice(&haystack[last..at]);
        out.extend_from_slice(with);
        last = at + needle.len();
    }
    out.extend_from_slice(&haystack[last..]);
    out
}

/// `value` as the journal will hold it: granted secrets replaced by `[secret]`, as the
/// journal does when it seals an event. A live request is compared with a recorded one
/// in this form.
fn as_journaled<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(value: &T, secrets: &[String]) -> T {
    let Ok(text) = serde_json::to_string(value) else { return value.clone() };
    match crate::redact::redact(&text, secrets) {
        Some(clean) => serde_json::from_str(&clean).unwrap_or_else(|_| value.clone()),
        None => value.clone(),
    }
}

/// sha256 of a request as journaled, hex: what an approval approves.
fn request_digest(request: &RecordedRequest) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(serde_json::to_vec(request).unwrap_or_default()))
}

fn path_of(path_and_query: &str) -> &str {
    path_and_query.split_once('?').map_or(path_and_query, |(p, _)| p)
}

fn failed(error: HttpError, message: String) -> HttpOutcome {
    HttpOutcome::Failed { error, message }
}

fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

fn error_class(e: &ExchangeError) -> HttpError {
    use crate::capabilities::egress::ConnectError;
    match e {
        ExchangeError::Connect(ConnectError::Resolve { .. }) => HttpError::Dns,
        ExchangeError::Connect(ConnectError::Refused(_)) => HttpError::Denied,
        ExchangeError::Connect(ConnectError::Connect { .. }) => HttpError::ConnectionRefused,
        ExchangeError::Connect(ConnectError::Timeout { .. }) | ExchangeError::Timeout { .. } => HttpError::Timeout,
        ExchangeError::Tls { .. } => HttpError::Tls,
        ExchangeError::Http { .. } => HttpError::Protocol,
        ExchangeError::TooLarge { .. } => HttpError::ResponseTooLarge,
    }
}

/// The outcome as the guest receives it: the answer, or the `wasi:http` error code.
fn answer_for_guest(outcome: HttpOutcome) -> wasmtime_wasi_http::Result<http::Response<WasiBody>> {
    use wasmtime_wasi_http::Error as E;
    match outcome {
        HttpOutcome::Answer { status, headers, body } => {
            let bytes = body.whole().map_err(|e| E::InternalError(Some(e)))?;
            let mut response = http::Response::builder().status(status);
            for (name, value) in &headers {
                response = response.header(name.as_str(), value.as_str());
            }
            let body = Full::new(Bytes::from(bytes)).map_err(|never| match never {}).boxed_unsync();
            response.body(body).map_err(|e| E::InternalError(Some(e.to_string())))
        }
        HttpOutcome::Failed { error, message } => Err(match error {
            HttpError::Denied => E::HttpRequestDenied,
            HttpError::Dns => E::DnsError { rcode: Some(message), info_code: None },
            HttpError::ConnectionRefused => E::ConnectionRefused,
            HttpError::Timeout => E::ConnectionReadTimeout,
            HttpError::Tls => E::TlsProtocolError,
            HttpError::Protocol => E::HttpProtocolError,
            HttpError::InvalidRequest => E::HttpRequestUriInvalid,
            HttpError::RequestTooLarge => E::HttpRequestBodySize(None),
            HttpError::ResponseTooLarge => E::HttpResponseBodySize(None),
        }),
    }
}
