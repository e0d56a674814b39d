//! Who is looking at the UI: a session made by logging in with an API token. The
//! session id lives in a cookie (HttpOnly, SameSite=Strict, Secure behind TLS); the
//! token is checked again on every request, so revoking it ends its sessions at once.
//! Every form carries the session's CSRF token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use tether_types::access::{allowed, token_hash, Role};

use crate::Server;

/// How long a session lasts without a new login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The session cookie's name.
pub(crate) const COOKIE: &str = "tether_session";

#[derive(Clone, Debug)]
struct Session {
    token_hash: String,
    csrf: String,
    expires: Instant,
}

/// Open sessions, in memory: a restarted server asks everyone to log in again.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The person using the UI, as their token says.
#[derive(Clone, Debug)]
pub(crate) struct Viewer {
    pub(crate) identity: String,
    pub(crate) token: String,
    pub(crate) roles: Vec<Role>,
    pub(crate) csrf: String,
}

impl Viewer {
    pub(crate) fn may(&self, role: Role) -> bool {
        allowed(&self.roles, role)
    }

    /// Whether `csrf` is this session's token.
    pub(crate) fn csrf_ok(&self, csrf: &str) -> bool {
        constant_time_eq(csrf.as_bytes(), self.csrf.as_bytes())
    }
}

/// The answer to a form without this session's CSRF token.
pub(crate) fn csrf_refused() -> Response {
    (StatusCode::FORBIDDEN, "the form is stale or was not sent from this page; reload it").into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex() -> String {
    let mut bytes = [0u8; 24];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: no session can be made safely.
        return String::new();
    }
    hex::encode(bytes)
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == COOKIE).then(|| value.to_string())
    })
}

impl FromRequestParts<Arc<Server>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, server: &Arc<Server>) -> Result<Viewer, Response> {
        let to_login = || {
            let next = parts.uri.path_and_query().map_or("/ui/runs", |p| p.as_str());
            let next = if next.starts_with("/ui/") { next } else { "/ui/runs" };
            Redirect::to(&format!("/ui/login?next={}", crate::ui::url_encode(next))).into_response()
        };
        let Some(id) = cookie_value(&parts.headers) else { return Err(to_login()) };
        let session = {
            let mut open = server.sessions.lock();
            match open.get(&id) {
                Some(s) if s.expires > Instant::now() => s.clone(),
                Some(_) => {
                    open.remove(&id);
                    return Err(to_login());
                }
                None => return Err(to_login()),
            }
        };
        let store = server.worker.app().store();
        let record = store
            .token_by_hash(&session.token_hash)
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        match record {
            Some(r) if r.usable(now).is_ok() => {
                Ok(Viewer { identity: r.identity, token: r.name, roles: r.roles, csrf: session.csrf })
            }
            _ => {
                server.sessions.lock().remove(&id);
                Err(to_login())
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// `GET /ui/login`: the token form.
pub(crate) async fn login_page(axum::extract::Query(q): axum::extract::Query<LoginQuery>) -> Response {
    let next = q.next.filter(|n| n.starts_with("/ui/")).unwrap_or_else(|| "/ui/runs".into());
    crate::ui::pages::login(&next, q.failed.as_deref()).into_response()
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /ui/login`: a usable token opens a session.
pub(crate) async fn login(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = form.next.filter(|n| n.starts_with("/ui/") && !n.starts_with("//")).unwrap_or_else(|| "/ui/runs".into());
    let refused = |why: &str| {
        Redirect::to(&format!("/ui/login?failed={}&next={}", crate::ui::url_encode(why), crate::ui::url_encode(&next)))
            .into_response()
    };
    match server.worker.app().authenticate(form.token.trim()).await {
        Ok(Ok(_)) => {}
        Ok(Err(tether_app::Refused::Unusable(why))) => return refused(&format!("that token is {why}")),
        Ok(Err(tether_app::Refused::Unknown)) => return refused("that token is not known"),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
    let (id, csrf) = (random_hex(), random_hex());
    if id.is_empty() || csrf.is_empty() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness for a session").into_response();
    }
    let session = Session { token_hash: token_hash(form.token.trim()), csrf, expires: Instant::now() + SESSION_TTL };
    {
        let mut open = server.sessions.lock();
        open.retain(|_, s| s.expires > Instant::now());
        open.insert(id.clone(), session);
    }
    let secure = headers.get("x-forwarded-proto").is_some_and(|p| p == "https");
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

/// `POST /ui/logout`: the session ends.
pub(crate) async fn logout(
    State(server): State<Arc<Server>>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !viewer.csrf_ok(&form.csrf) {
        return csrf_refused();
    }
    if let Some(id) = cookie_value(&headers) {
        server.sessions.lock().remove(&id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    let gone = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}
