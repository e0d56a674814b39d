//! The host's outbound connector: resolves a request's host itself, checks every address
//! it resolved to against the operator's protection (`tether_types::egress`), and connects
//! to a checked address, never to the name. So there is no window in which the name can be
//! re-resolved somewhere else (DNS rebinding), and no path around the check. Everything it
//! does is bounded by the attempt's deadline: wasmtime-wasi-http's own sender resolves by
//! itself, cannot be asked about addresses, and waits 600 s.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tether_types::egress::{address_allowed, AddressRefused, Target};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A connection to a checked address.
#[derive(Debug)]
pub(crate) struct Connected {
    /// The stream, with `TCP_NODELAY` set.
    pub(crate) stream: TcpStream,
    /// The address it is connected to.
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

/// A deadline `left` from now.
pub(crate) fn deadline_in(left: Duration) -> Instant {
    Instant::now() + left
}

#[cfg(test)]
mod tests;
