//! The host's outbound connector: resolves a request's host itself, checks every address
//! it resolved to against the operator's protection (`tether_types::egress`), and connects
//! to a checked address, never to the name. So there is no window in which the name can be
//! re-resolved somewhere else (DNS rebinding), and no path around the check. Everything it
//! does is bounded by the attempt's deadline: wasmtime-wasi-http's own sender resolves by
//! itself, cannot be asked about addresses, and waits 600 s.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tether_types::egress::{address_allowed, AddressRefused, Scheme, Target};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A connection to a checked address.
#[derive(Debug)]
pub(crate) struct Connected {
    /// The stream, with `TCP_NODELAY` set.
    pub(crate) stream: TcpStream,
    /// The address it is connected to (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) address: SocketAddr,
}

/// Why a request could not be connected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The host name did not resolve.
    #[error("{target}: the name did not resolve: {reason}")]
    Resolve { target: String, reason: String },
    /// Every address the host resolved to is refused.
    #[error(transparent)]
    Refused(AddressRefused),
    /// No allowed address accepted the connection.
    #[error("{target}: could not connect to {address}: {reason}")]
    Connect { target: String, address: SocketAddr, reason: String },
    /// The deadline passed first.
    #[error("{target}: no connection within what is left of the attempt's wall time ({after_ms} ms)")]
    Timeout { target: String, after_ms: u128 },
}

/// Connects to `target`, on an address [`address_allowed`] allows with the explicitly
/// named `networks`, before `deadline`. Addresses are tried in the order the resolver gave
/// them; refused ones are skipped, and if all are refused the first refusal is returned.
pub(crate) async fn connect(target: &Target, networks: &[IpNet], deadline: Instant) -> Result<Connected, ConnectError> {
    let started = Instant::now();
    let timeout = |_| ConnectError::Timeout { target: target.to_string(), after_ms: started.elapsed().as_millis() };
    let addresses = resolve(target, deadline).await?;
    let mut refused = None;
    let mut failed = None;
    for address in addresses {
        if let Err(e) = address_allowed(target, address.ip(), networks) {
            refused.get_or_insert(e);
            continue;
        }
        match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await.map_err(timeout)? {
            Ok(stream) => {
                // Requests are small and answered at once: no waiting to fill a segment.
                let _ = stream.set_nodelay(true);
                return Ok(Connected { stream, address });
            }
            Err(e) => {
                failed.get_or_insert(ConnectError::Connect {
                    target: target.to_string(),
                    address,
                    reason: e.to_string(),
                });
            }
        }
    }
    Err(failed.or(refused.map(ConnectError::Refused)).unwrap_or_else(|| ConnectError::Resolve {
        target: target.to_string(),
        reason: "it resolved to no address".into(),
    }))
}

/// Every address `target`'s host stands for: itself if it is an address, otherwise what
/// the system resolver says, before `deadline`.
async fn resolve(target: &Target, deadline: Instant) -> Result<Vec<SocketAddr>, ConnectError> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let started = Instant::now();
    match tokio::time::timeout_at(deadline, lookup).await {
        Err(_) => Err(ConnectError::Timeout { target: target.to_string(), after_ms: started.elapsed().as_millis() }),
        Ok(Err(e)) => Err(ConnectError::Resolve { target: target.to_string(), reason: e.to_string() }),
        Ok(Ok(addresses)) => Ok(addresses.collect()),
    }
}

/// A request, whole: what the journal records and the guest sent.
#[derive(Clone, Debug)]
pub(crate) struct Exchange {
    /// Its method.
    pub(crate) method: http::Method,
    /// Where it goes.
    pub(crate) target: Target,
    /// Path and query.
    pub(crate) path_and_query: String,
    /// Its headers (the host adds `host`, and credentials, when sending).
    pub(crate) headers: http::HeaderMap,
    /// Its body.
    pub(crate) body: bytes::Bytes,
}

/// A response, whole, read up to a cap.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: bytes::Bytes,
}

/// Why an exchange failed after the connection was made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{target}: {reason}")]
    Http { target: String, reason: String },
    #[error("{target}: TLS failed: {reason}")]
    Tls { target: String, reason: String },
    #[error("{target}: the response body passed its cap of {cap} bytes")]
    TooLarge { target: String, cap: usize },
    #[error("{target}: no answer within what is left of the attempt's wall time")]
    Timeout { target: String },
}

/// Sends `exchange` over a checked connection (HTTP/1.1, over TLS for `https` with the
/// host name as SNI and webpki's roots) and reads the whole answer, at most `cap` body
/// bytes, before `deadline`. Redirects are answers like any other: the guest sees the 3xx.
pub(crate) async fn send(
    exchange: &Exchange,
    networks: &[IpNet],
    deadline: Instant,
    cap: usize,
) -> Result<Answer, ExchangeError> {
    let connected = connect(&exchange.target, networks, deadline).await?;
    match exchange.target.scheme {
        Scheme::Http => over(connected.stream, exchange, deadline, cap).await,
        Scheme::Https => {
            let target = exchange.target.to_string();
            let tls_err =
                |e: &dyn std::fmt::Display| ExchangeError::Tls { target: target.clone(), reason: e.to_string() };
            let name =
                rustls::pki_types::ServerName::try_from(exchange.target.host.clone()).map_err(|e| tls_err(&e))?;
            let stream = tokio::time::timeout_at(deadline, tls_connector().connect(name, connected.stream))
                .await
                .map_err(|_| ExchangeError::Timeout { target: target.clone() })?
                .map_err(|e| tls_err(&e))?;
            over(stream, exchange, deadline, cap).await
        }
    }
}

/// One client configuration for the process: webpki's roots, built once.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        std::sync::Arc::new(config.unwrap_or_else(|_| unreachable!("ring supports the default protocol versions")))
    });
    tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config))
}

/// The exchange over an established stream.
async fn over<S>(stream: S, exchange: &Exchange, deadline: Instant, cap: usize) -> Result<Answer, ExchangeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt, Full, Limited};
    let target = exchange.target.to_string();
    let http_err = |e: &dyn std::fmt::Display| ExchangeError::Http { target: target.clone(), reason: e.to_string() };
    let timeout = |_| ExchangeError::Timeout { target: target.clone() };
    let io = wasmtime_wasi_http::io::TokioIo::new(stream);
    let (mut sender, conn) = tokio::time::timeout_at(deadline, hyper::client::conn::http1::handshake(io))
        .await
        .map_err(timeout)?
        .map_err(|e| http_err(&e))?;
    let driver = tokio::spawn(conn);
    let mut request = http::Request::builder().method(exchange.method.clone()).uri(exchange.path_and_query.as_str());
    for (name, value) in &exchange.headers {
        request = request.header(name, value);
    }
    let host = match exchange.target.port == exchange.target.scheme.default_port() {
        true => exchange.target.host.clone(),
        false => format!("{}:{}", exchange.target.host, exchange.target.port),
    };
    let request =
        request.header(http::header::HOST, host).body(Full::new(exchange.body.clone())).map_err(|e| http_err(&e))?;
    let response = tokio::time::timeout_at(deadline, sender.send_request(request))
        .await
        .map_err(timeout)?
        .map_err(|e| http_err(&e))?;
    let (parts, body) = response.into_parts();
    let body =
        tokio::time::timeout_at(deadline, Limited::new(body, cap).collect()).await.map_err(timeout)?.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ExchangeError::TooLarge { target: target.clone(), cap }
            } else {
                http_err(&e)
            }
        })?;
    driver.abort();
    Ok(Answer { status: parts.status.as_u16(), headers: parts.headers, body: body.to_bytes() })
}

#[cfg(test)]
mod tests;
