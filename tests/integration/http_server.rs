//! A real HTTP/1.1 server on 127.0.0.1 for the tests: it answers each path as scripted
//! (status, headers, body, an optional delay before answering) and keeps every request
//! it received, so a test can count what reached it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A scripted answer (status 0: close the connection without answering).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Answer {
    pub fn json(status: u16, body: &serde_json::Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

/// Answers a request from what it holds.
type Responder = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

#[derive(Default)]
struct Shared {
    /// Answers computed from the request, before scripts and routes.
    responders: HashMap<String, Responder>,
    routes: HashMap<String, Answer>,
    /// Answers given in turn, before `routes` (the last one stays).
    scripts: HashMap<String, Vec<Answer>>,
    received: Vec<Received>,
}

/// The server; it stops answering when dropped (the listener thread then exits at its
/// next connection, which `Drop` makes).
pub struct Server {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Server {
    /// Starts a server on a free port of 127.0.0.1.
    pub fn start() -> Server {
        Server::on(0)
    }

    /// Starts a server on `port` of 127.0.0.1 (0: a free one).
    pub fn on(port: u16) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, stop) = (Arc::clone(&shared), Arc::clone(&stopped));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let s = Arc::clone(&s);
                    std::thread::spawn(move || serve(stream, &s));
                }
            }
        });
        Server { port, shared, stopped }
    }

    /// Answers `path` (without its query) with `answer`.
    pub fn route(&self, path: &str, answer: Answer) -> &Server {
        self.shared.lock().unwrap().routes.insert(path.to_string(), answer);
        self
    }

    /// Answers `path` with each of `answers` in turn, then with the last one.
    pub fn script(&self, path: &str, answers: Vec<Answer>) -> &Server {
        self.shared.lock().unwrap().scripts.insert(path.to_string(), answers);
        self
    }

    /// Answers `path` with what `respond` makes of each request.
    pub fn respond(&self, path: &str, respond: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> &Server {
        self.shared.lock().unwrap().responders.insert(path.to_string(), Arc::new(respond));
        self
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, shared: &Mutex<Shared>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0usize);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let path = target.split('?').next().unwrap_or_default().to_string();
    let answer = {
        let mut s = shared.lock().unwrap();
        let received = Received { method, path: target.clone(), headers, body };
        let responder = s.responders.get(&path).cloned();
        s.received.push(received.clone());
        if let Some(respond) = responder {
            drop(s);
            Some(respond(&received))
        } else {
            match s.scripts.get_mut(&path) {
                Some(script) if script.len() > 1 => Some(script.remove(0)),
                Some(script) => script.first().cloned(),
                None => s.routes.get(&path).cloned(),
            }
        }
    };
    let answer = answer.unwrap_or(Answer {
        status: 404,
        headers: Vec::new(),
        body: b"no such route".to_vec(),
        delay: Duration::ZERO,
    });
    std::thread::sleep(answer.delay);
    if answer.status == 0 {
        // Closes without answering: the request arrived, its fate unknown to the client.
        return;
    }
    let mut out =
        format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n", answer.status, answer.body.len());
    for (n, v) in &answer.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(&answer.body);
}
