//! What the serve and UI benches share: a real `tether serve` process on 127.0.0.1 with an
//! admin token, plain HTTP/1.1 requests to it, and percentiles.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use tether_tests::cache_dir;

/// The `tether` binary this bench was built with, on `dir`'s journal.
pub fn tether(dir: &Path) -> Command {
    tether_on(&dir.join("journal.db").display().to_string())
}

/// The `tether` binary this bench was built with, on the journal `url` (a path or URL).
pub fn tether_on(url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tether"));
    c.env("TETHER_CACHE_DIR", cache_dir()).env("TETHER_DATABASE_URL", url).env_remove("RUST_BACKTRACE");
    c
}

/// A `tether serve` process on 127.0.0.1, with an admin token.
pub struct Server {
    pub child: Child,
    pub address: String,
    pub token: String,
}

impl Server {
    pub fn start(dir: &Path, concurrency: usize) -> Server {
        Server::start_on(&dir.join("journal.db").display().to_string(), dir, concurrency, &[])
    }

    /// A server on the journal `url`, serving `dir/workflows`, with `env` set.
    pub fn start_on(url: &str, dir: &Path, concurrency: usize, env: &[(&str, &str)]) -> Server {
        let tether = |_: &Path| {
            let mut c = tether_on(url);
            c.envs(env.iter().copied());
            c
        };
        let o = {
            // A token of its own per server started on the journal.
            static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let name =
                format!("bench-{}-{}", std::process::id(), STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            tether(dir).args(["token", "create", &name, "--identity", "bench", "--role", "admin"]).output().unwrap()
        };
        let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
        let workflows = dir.join("workflows").display().to_string();
        let concurrency = concurrency.to_string();
        let mut child = tether(dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--workflows", &workflows, "--concurrency", &concurrency])
            .env("TETHER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.trim().strip_prefix("listening on http://").unwrap().to_string();
        Server { child, address, token }
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>, accept: &str) -> (u16, String) {
        let auth =
            format!("authorization: Bearer {}\r\naccept: {accept}\r\ncontent-type: application/json\r\n", self.token);
        let (status, _, body) = self.send(method, path, &auth, body.unwrap_or(""));
        (status, body)
    }

    /// One request with `headers` (lines ending in CRLF): status, head and body.
    pub fn send(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.address).unwrap();
        s.set_nodelay(true).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n{headers}content-length: {}\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw);
        let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
        (head.split_whitespace().nth(1).unwrap().parse().unwrap(), head.to_string(), rest.to_string())
    }

    /// Submits a run of `workflow`: its id.
    pub fn submit(&self, workflow: &str) -> String {
        let (status, body) = self.request("POST", "/v1/runs", Some(&json!({"workflow": workflow}).to_string()), "*/*");
        assert_eq!(status, 201, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["run_id"].as_str().unwrap().to_string()
    }

    /// Follows a run's events until its `end`; its final status.
    pub fn follow(&self, run: &str) -> String {
        let (status, stream) = self.request("GET", &format!("/v1/runs/{run}/events"), None, "text/event-stream");
        assert_eq!(status, 200);
        let end = stream.split("event: end").nth(1).expect("the stream ends with the run");
        end.split("\"status\":\"").nth(1).unwrap().split('"').next().unwrap().to_string()
    }

    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb / 1024.0
    }

    pub fn count(&self, status: &str) -> usize {
        let (_, body) = self.request("GET", &format!("/v1/runs?status={status}&limit=1000"), None, "*/*");
        serde_json::from_str::<Value>(&body).unwrap()["runs"].as_array().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value at fraction `p` of `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// p50, p99, min and max.
pub fn summary(mut v: Vec<f64>) -> (f64, f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99), v[0], v[v.len() - 1])
}
