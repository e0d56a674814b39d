//! The CLI as a client of `tether serve`: with `--server URL` (or `TETHER_SERVER`) and
//! `TETHER_TOKEN`, commands ask the server instead of opening a journal, and print
//! exactly what they print over a local journal. Errors the server answers keep their
//! meaning: its 4xx are usage errors (exit 2), `busy` is exit 4, the rest exit 1.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

use crate::Failure;

/// A server to ask, and the token to ask with.
pub(crate) struct Remote {
    https: bool,
    host: String,
    port: u16,
    /// The URL's path, without a trailing `/` (a server behind a path prefix).
    prefix: String,
    token: String,
    shown: String,
}

impl Remote {
    /// The server named by `--server` or `TETHER_SERVER`, if any; it needs `TETHER_TOKEN`.
    pub(crate) fn from(flag: Option<&str>) -> Result<Option<Remote>, Failure> {
        let url = match flag.map(str::to_string).or_else(|| std::env::var("TETHER_SERVER").ok()) {
            Some(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => return Ok(None),
        };
        let bad = || Failure::usage(format!("--server `{url}`: write http://HOST:PORT or https://HOST[:PORT]"));
        let (https, rest) = match url.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            _ => return Err(bad()),
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_string()),
            None => (rest, String::new()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().map_err(|_| bad())?),
            _ => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let token = std::env::var("TETHER_TOKEN").ok().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            Failure::usage(format!(
                "talking to {url} needs an API token in TETHER_TOKEN (made with `tether token create` on the server's journal)"
            ))
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(Some(Remote { https, host, port, prefix, token: token.trim().to_string(), shown: url }))
    }

    /// GET `path` (with its query): the answer's JSON.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call("GET", path, None).await
    }

    /// POST JSON to `path`: the answer's JSON.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.call("POST", path, Some(body.to_string())).await
    }

    async fn call(&self, method: &str, path: &str, body: Option<String>) -> Result<Value, Failure> {
        let unreachable =
            |e: &dyn std::fmt::Display| Failure::Internal(format!("cannot reach the server at {}: {e}", self.shown));
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| unreachable(&e))?;
        let _ = tcp.set_nodelay(true);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, format!("{}:{}", self.host, self.port))
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Failure::Internal(e.to_string()))?;
        let (status, bytes) = if self.https {
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| Failure::usage(format!("--server: {e}")))?;
            let tls = tls_connector().connect(name, tcp).await.map_err(|e| unreachable(&e))?;
            exchange(tls, request).await.map_err(|e| unreachable(&e))?
        } else {
            exchange(tcp, request).await.map_err(|e| unreachable(&e))?
        };
        let doc: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        if status.is_success() {
            return Ok(doc);
        }
        let code = doc["error"]["code"].as_str().unwrap_or("").to_string();
        let message = doc["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| doc.to_string());
        Err(match status.as_u16() {
            401 => Failure::usage(format!("the server refused the token: {message}")),
            409 if code == "busy" => Failure::Busy(message),
            503 => Failure::Busy(message),
            400..=499 => Failure::usage(message),
            _ => Failure::Internal(format!("the server failed: {message}")),
        })
    }
}

async fn exchange<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(hyper::StatusCode, Bytes), Box<dyn std::error::Error + Send + Sync>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
