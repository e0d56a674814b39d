//! Outbound HTTP and model-call overhead. Run: `cargo bench -p tether-tests --bench egress`.
//!
//! Against one loopback HTTP server, back to back in one process, each over several
//! rounds (median of rounds and their spread):
//! - a bare request from the host (a new connection, one HTTP/1.1 GET, the whole
//!   answer read), per request: median and p99;
//! - the same request made by a step through `wasi:http` in a durable run on a real
//!   SQLite journal (`synchronous=FULL`): grant check, the run made durable before it
//!   leaves, the exchange journaled durably before the guest sees it; timed by the
//!   guest, per request: median and p99;
//! - a model call round trip (`model.complete` to a scripted OpenAI-compatible server),
//!   the same way, against a bare POST of the same request from the host;
//! - the disk's fdatasync floor, since a journaled request waits for two commits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tether_runtime::{Driver, Runtime, RuntimeConfig};
use tether_store::{SqliteStore, StoreConfig};
use tether_tests::{artifacts, cache_dir, repo_root};
use tether_types::{RunId, Workflow};

const ROUNDS: usize = 5;
const REQUESTS: usize = 200;
const MODEL_CALLS: usize = 100;

const COMPLETION: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;

/// A loopback server answering every request with `body`; returns its port.
fn serve(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream, body));
        }
    });
    port
}

fn answer(stream: TcpStream, body: &str) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut request_body = vec![0; len];
    let _ = reader.read_exact(&mut request_body);
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(format!("{head}{body}").as_bytes());
}

/// One bare request from the host, in microseconds: connect, send, read the whole answer.
fn bare(port: u16, method: &str, body: &str) -> f64 {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let request = format!(
        "{method} /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    started.elapsed().as_secs_f64() * 1e6
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median_and_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (pct(&v, 0.5), pct(&v, 0.99))
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:.0} (rounds {:.0}..{:.0})", pct(&v, 0.5), v[0], v[v.len() - 1])
}

fn fresh_db(name: &str) -> String {
    let dir = repo_root().join("target").join("bench-journal");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path.display().to_string()
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs a one-step workflow (`workflow` text) with `input` on a durable journal; returns
/// the step's `micros` figures (per request, as the guest timed them).
fn guest_timed(runtime: &Runtime, workflow: &str, input: Value, pick: impl Fn(&Value) -> Vec<f64>) -> Vec<f64> {
    let wf = Workflow::parse("bench.toml", workflow).unwrap();
    let wf = Arc::new(runtime.load_workflow(wf, Path::new("/")).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&StoreConfig::new(fresh_db("egress"))).await.unwrap();
        let driver = Driver::new(runtime.clone(), Arc::new(store));
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = RunId::from_suffix(&format!("egress{n}")).unwrap();
        let report = driver.start(&wf, id, input, "bench", |_| {}).await.unwrap();
        assert!(report.error.is_none(), "{:?}", report.error);
        pick(&report.output)
    })
}

fn main() {
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir()), ..RuntimeConfig::default() }).unwrap();
    let port = serve(r#"{"ok":true}"#);
    let model_port = serve(COMPLETION);
    let url = format!("http://127.0.0.1:{port}/v1/x");
    let http_wf = format!(
        "name = \"egress\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\nhttp = [\"http://127.0.0.1:{port}\"]\nbudget = {{ http_requests = {REQUESTS}, wall_time = \"300s\" }}\n",
        artifacts::HTTP_STEP
    );
    let model_wf = format!(
        "name = \"model\"\n[policy.model]\nurl = \"http://127.0.0.1:{model_port}/v1\"\nmodels = [\"m\"]\n[[steps]]\nname = \"s\"\ncomponent = {:?}\nmodel = true\nbudget = {{ model_calls = {MODEL_CALLS}, wall_time = \"300s\" }}\n",
        artifacts::AGENT_STEP
    );
    let micros_of = |key: &'static str| {
        move |out: &Value| -> Vec<f64> {
            match key {
                "answers" => out["answers"].as_array().unwrap().iter().map(|a| a["micros"].as_f64().unwrap()).collect(),
                _ => out["micros"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect(),
            }
        }
    };
    let model_request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();

    let (mut bare_med, mut bare_p99, mut http_med, mut http_p99) = (vec![], vec![], vec![], vec![]);
    let (mut mbare_med, mut mbare_p99, mut model_med, mut model_p99) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        // Back to back: bare, then journaled, on the same server.
        let (m, p) = median_and_p99((0..REQUESTS).map(|_| bare(port, "GET", "")).collect());
        bare_med.push(m);
        bare_p99.push(p);
        let input = json!({"requests": [{"url": url}], "loop": REQUESTS, "timing": true});
        let (m, p) = median_and_p99(guest_timed(&runtime, &http_wf, input, micros_of("answers")));
        http_med.push(m);
        http_p99.push(p);

        let (m, p) = median_and_p99((0..MODEL_CALLS).map(|_| bare(model_port, "POST", &model_request)).collect());
        mbare_med.push(m);
        mbare_p99.push(p);
        let input = json!({"user": "hi", "ask": {}, "repeat": MODEL_CALLS});
        let (m, p) = median_and_p99(guest_timed(&runtime, &model_wf, input, micros_of("micros")));
        model_med.push(m);
        model_p99.push(p);
    }
    println!("outbound HTTP, {REQUESTS} requests per round, {ROUNDS} rounds, microseconds:");
    println!("  bare request from the host:      median {}, p99 {}", summary(bare_med), summary(bare_p99));
    println!("  journaled request from a step:   median {}, p99 {}", summary(http_med), summary(http_p99));
    println!("model call round trip, {MODEL_CALLS} calls per round, microseconds:");
    println!("  bare POST from the host:         median {}, p99 {}", summary(mbare_med), summary(mbare_p99));
    println!("  journaled model.complete:        median {}, p99 {}", summary(model_med), summary(model_p99));
    let floor = tether_tests::fdatasync_floor_us(&repo_root().join("target").join("bench-journal"));
    println!("  fdatasync floor (a journaled request waits for two commits): {floor:.0} us");
}
