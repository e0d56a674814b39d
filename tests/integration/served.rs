//! A real `tether serve` process on an ephemeral port, and a small HTTP/1.1 client for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::tether_cmd;

/// A running `tether serve`, its address, and where its stderr goes.
pub struct Served {
    pub child: Child,
    pub address: String,
    pub log: PathBuf,
}

impl Served {
    /// Starts `tether serve` on `db` with `extra` arguments; returns once it listens.
    pub fn start(db: &Path, extra: &[&str]) -> Served {
        Served::start_with(db, unique(db), &[], extra)
    }

    /// Starts `tether serve` on the journal `db` (a path or a URL) with `env` and `extra`
    /// arguments, its stderr to `log`; returns once it listens.
    pub fn start_with(db: &Path, log: PathBuf, env: &[(&str, &str)], extra: &[&str]) -> Served {
        let mut child = tether_cmd(db)
            .envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{line}{}", std::fs::read_to_string(&log).unwrap_or_default()))
            .to_string();
        Served { child, address, log }
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` without a token.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None, None, &[])
    }

    /// GET `path` with `token`.
    pub fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None, &[])
    }

    /// POST JSON `body` to `path` with `token`.
    pub fn post_as(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(token), Some(&body.to_string()), &[])
    }

    /// One request with a JSON body: (status, JSON body, or the text as a JSON string).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut all = headers.to_vec();
        if body.is_some() {
            all.push(("content-type", "application/json"));
        }
        self.send(method, path, token, body.map(str::as_bytes), &all)
    }

    /// One request with any body and headers.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut s = TcpStream::connect(&self.address).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n", self.address);
        if let Some(t) = token {
            head.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!("content-length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        if let Some(b) = body {
            // A server that refuses a large body early may close before it is all sent.
            let _ = s.write_all(b);
        }
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {raw:?}"));
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string())))
    }

    /// Polls `GET /v1/runs/{run}` until its status is `status`; the run's view.
    pub fn wait_status(&self, token: &str, run: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (code, view) = self.get_as(token, &format!("/v1/runs/{run}"));
            if code == 200 && view["status"] == status {
                return view;
            }
            assert!(Instant::now() < deadline, "run {run} is not {status} after {within:?}: {view}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit; its code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "tether serve did not stop on SIGTERM\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unique(path: &Path) -> PathBuf {
    (0..).map(|n| path.with_extension(format!("serve-{n}.log"))).find(|p| !p.exists()).unwrap()
}

/// `tether token create NAME --identity ID --role ROLE...` on `db`: the token.
pub fn token(db: &Path, name: &str, identity: &str, roles: &[&str]) -> String {
    let mut args = vec!["token", "create", name, "--identity", identity];
    for r in roles {
        args.extend(["--role", r]);
    }
    let o = tether_cmd(db).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", crate::support::output(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}
