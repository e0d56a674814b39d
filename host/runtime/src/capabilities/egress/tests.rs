use super::*;
use std::time::Duration;
use tether_types::egress::{AddressClass, Scheme};

fn deadline_in(left: Duration) -> Instant {
    Instant::now() + left
}

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

/// A one-shot HTTP server on 127.0.0.1: answers the first request with `answer` and
/// hands back the request it read.
async fn server(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (l, port) = listener().await;
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= head_end + 4 + len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        s.write_all(answer.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        String::from_utf8_lossy(&got).to_string()
    });
    (port, task)
}

fn exchange(port: u16, method: http::Method, path: &str, body: &'static str) -> Exchange {
    Exchange {
        method,
        target: target("127.0.0.1", port),
        path_and_query: path.into(),
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::from_static(body.as_bytes()),
    }
}

#[tokio::test]
async fn an_exchange_is_sent_whole_and_its_answer_read_whole() {
    let (port, seen) = server("HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-id: 7\r\n\r\nhello").await;
    let ex = exchange(port, http::Method::POST, "/v1/refunds?dry=1", "{\"amount\":40}");
    let answer = send(&ex, &[net("127.0.0.1/32")], soon(), 1024).await.unwrap();
    assert_eq!((answer.status, &answer.body[..]), (201, &b"hello"[..]));
    assert_eq!(answer.headers["x-id"], "7");
    let request = seen.await.unwrap();
    assert!(request.starts_with("POST /v1/refunds?dry=1 HTTP/1.1\r\n"), "{request}");
    assert!(request.to_ascii_lowercase().contains(&format!("host: 127.0.0.1:{port}\r\n")), "{request}");
    assert!(request.ends_with("{\"amount\":40}"), "{request}");
}

#[tokio::test]
async fn a_redirect_is_an_answer_not_followed() {
    let (port, seen) =
        server("HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n").await;
    let answer = send(&exchange(port, http::Method::GET, "/", ""), &[net("127.0.0.1/32")], soon(), 1024).await.unwrap();
    assert_eq!(answer.status, 302);
    assert_eq!(answer.headers["location"], "http://169.254.169.254/");
    seen.await.unwrap();
}

#[tokio::test]
async fn an_answer_past_its_cap_is_refused_and_a_silent_server_times_out() {
    let (port, _seen) = server("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789").await;
    let err = send(&exchange(port, http::Method::GET, "/", ""), &[net("127.0.0.1/32")], soon(), 4).await.unwrap_err();
    assert!(matches!(err, ExchangeError::TooLarge { cap: 4, .. }), "{err}");
    // A server that accepts and never answers: the deadline ends the wait.
    let (l, port) = listener().await;
    let hold = tokio::spawn(async move {
        l.accept().await.map(|(s, _)| {
            std::mem::forget(s);
        })
    });
    let t = std::time::Instant::now();
    let deadline = deadline_in(Duration::from_millis(300));
    let err =
        send(&exchange(port, http::Method::GET, "/", ""), &[net("127.0.0.1/32")], deadline, 1024).await.unwrap_err();
    assert!(matches!(err, ExchangeError::Timeout { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2), "waited {:?}", t.elapsed());
    hold.abort();
}
