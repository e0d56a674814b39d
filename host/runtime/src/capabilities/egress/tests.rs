use super::*;
use tether_types::egress::{AddressClass, Scheme};

fn target(host: &str, port: u16) -> Target {
    Target { scheme: Scheme::Http, host: host.into(), port }
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn soon() -> Instant {
    deadline_in(Duration::from_secs(5))
}

async fn listener() -> (tokio::net::TcpListener, u16) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[tokio::test]
async fn loopback_is_refused_unless_a_grant_names_it_and_then_it_connects() {
    let (l, port) = listener().await;
    let err = connect(&target("127.0.0.1", port), &[], soon()).await.unwrap_err();
    match &err {
        ConnectError::Refused(r) => assert_eq!(r.class, AddressClass::Loopback),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("a loopback address"), "{err}");
    let c = connect(&target("127.0.0.1", port), &[net("127.0.0.1/32")], soon()).await.unwrap();
    assert_eq!(c.address, SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(c.stream.nodelay().unwrap(), "TCP_NODELAY is set");
    let (_, from) = l.accept().await.unwrap();
    assert_eq!(from, c.stream.local_addr().unwrap(), "the listener got this very connection");
}

#[tokio::test]
async fn a_name_is_checked_on_every_address_it_resolves_to() {
    let (l, port) = listener().await;
    // `localhost` resolves to loopback addresses only: each is refused.
    let err = connect(&target("localhost", port), &[], soon()).await.unwrap_err();
    assert!(matches!(&err, ConnectError::Refused(r) if r.class == AddressClass::Loopback), "{err}");
    // Named, it connects to the one that listens (IPv6 loopback, if listed first, refuses).
    let c = connect(&target("localhost", port), &[net("127.0.0.0/8"), net("::1/128")], soon()).await.unwrap();
    assert_eq!(c.address.ip(), IpAddr::from([127, 0, 0, 1]));
    drop(l);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error_that_names_the_address() {
    let (l, port) = listener().await;
    drop(l);
    let err = connect(&target("127.0.0.1", port), &[net("127.0.0.1/32")], soon()).await.unwrap_err();
    assert!(matches!(err, ConnectError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&format!("could not connect to 127.0.0.1:{port}")), "{err}");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_says_so() {
    let err = connect(&target("no-such-host.invalid", 80), &[], soon()).await.unwrap_err();
    assert!(matches!(err, ConnectError::Resolve { .. }), "{err}");
    assert!(err.to_string().starts_with("http://no-such-host.invalid: the name did not resolve"), "{err}");
}

#[tokio::test]
async fn nothing_is_tried_past_the_deadline() {
    let (_l, port) = listener().await;
    let passed = Instant::now() - Duration::from_millis(1);
    let err = connect(&target("localhost", port), &[net("127.0.0.0/8"), net("::1/128")], passed).await.unwrap_err();
    assert!(matches!(err, ConnectError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("what is left of the attempt's wall time"), "{err}");
}
