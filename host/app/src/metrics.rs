//! What a server exposes at `/metrics`, in the OpenMetrics text format.
//!
//! Counters count what this process did since it started (runs it ended, steps it ran,
//! fuel and tokens, decisions taken through it, runs it took over); gauges are read from
//! the journal when scraped (runs by status, approvals pending, each gate's override
//! ratio, hosts by heartbeat), so they agree across every process on one journal. Labels are workflows, steps' outcomes, gates and
//! decisions: bounded sets. Run ids are never labels.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tether_types::store::RunIndexStatus;

use crate::{App, AppError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowLabel {
    workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    workflow: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabel {
    gate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    gate: String,
    decision: String,
}

fn step_buckets() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The server's metrics. Cheap to share; recording never blocks.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs_ended: Family<OutcomeLabels, Counter>,
    step_seconds: Family<WorkflowLabel, Histogram, fn() -> Histogram>,
    fuel: Family<WorkflowLabel, Counter>,
    tokens: Family<WorkflowLabel, Counter<f64, AtomicU64>>,
    decisions: Family<DecisionLabels, Counter>,
    in_flight: Gauge,
    runs: Family<StatusLabel, Gauge>,
    approvals_pending: Gauge,
    override_ratio: Family<GateLabel, Gauge<f64, AtomicU64>>,
    gate_decisions: Family<GateLabel, Gauge>,
    taken_over: Counter,
    hosts: Family<HostsLabel, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostsLabel {
    heartbeat: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tether");
        let runs_ended = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "runs_ended",
            "Runs this process executed to an end, by workflow and outcome",
            runs_ended.clone(),
        );
        let step_seconds = Family::<WorkflowLabel, Histogram, fn() -> Histogram>::new_with_constructor(step_buckets);
        registry.register("step_duration_seconds", "Step attempts this process ran, by workflow", step_seconds.clone());
        let fuel = Family::<WorkflowLabel, Counter>::default();
        registry.register("fuel_consumed", "Fuel consumed by steps and their tools, by workflow", fuel.clone());
        let tokens = Family::<WorkflowLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "tokens_consumed",
            "Model tokens steps reported or were charged, by workflow",
            tokens.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("approval_decisions", "Decisions taken through this server, by gate", decisions.clone());
        let in_flight = Gauge::default();
        registry.register("runs_in_flight", "Runs this process executes now or is about to", in_flight.clone());
        let runs = Family::<StatusLabel, Gauge>::default();
        registry.register("runs", "Runs in the journal by status (running, waiting, paused, ...)", runs.clone());
        let approvals_pending = Gauge::default();
        registry.register("approvals_pending", "Approval requests waiting for a decision", approvals_pending.clone());
        let override_ratio = Family::<GateLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "gate_override_ratio",
            "Share of a gate's human decisions that changed or rejected the proposal",
            override_ratio.clone(),
        );
        let gate_decisions = Family::<GateLabel, Gauge>::default();
        registry.register("gate_decisions", "Human decisions recorded at a gate", gate_decisions.clone());
        let taken_over = Counter::default();
        registry.register(
            "runs_taken_over",
            "Interrupted runs this process claimed from a host that stopped or whose heartbeat lapsed",
            taken_over.clone(),
        );
        let hosts = Family::<HostsLabel, Gauge>::default();
        registry.register(
            "hosts",
            "Hosts with a heartbeat on the journal, live or lapsed (their runs go to the next worker)",
            hosts.clone(),
        );
        Metrics {
            registry,
            runs_ended,
            step_seconds,
            fuel,
            tokens,
            decisions,
            in_flight,
            runs,
            approvals_pending,
            override_ratio,
            gate_decisions,
            taken_over,
            hosts,
        }
    }
}

impl Metrics {
    /// A step attempt of `workflow` ended.
    pub fn step_finished(&self, workflow: &str, stats: &tether_types::StepStats) {
        let label = WorkflowLabel { workflow: workflow.to_string() };
        self.step_seconds.get_or_create(&label).observe(stats.wall_us as f64 / 1e6);
        self.fuel.get_or_create(&label).inc_by(stats.total_fuel());
        if let Some(tokens) = stats.usage.get("tokens").filter(|t| t.is_finite() && **t > 0.0) {
            self.tokens.get_or_create(&label).inc_by(*tokens);
        }
    }

    /// A run of `workflow` this process executed stopped with `status`.
    pub fn run_stopped(&self, workflow: &str, status: tether_types::RunStatus) {
        let outcome = serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_string));
        let outcome = outcome.unwrap_or_else(|| "unknown".into());
        self.runs_ended.get_or_create(&OutcomeLabels { workflow: workflow.to_string(), outcome }).inc();
    }

    /// This process claimed an interrupted run.
    pub fn taken_over(&self) {
        self.taken_over.inc();
    }

    /// A decision was taken through this server.
    pub fn decided(&self, gate: &str, approve: bool) {
        let decision = if approve { "approve" } else { "reject" }.to_string();
        self.decisions.get_or_create(&DecisionLabels { gate: gate.to_string(), decision }).inc();
    }

    /// The text exposition: the journal's figures read now, beside this process's counters.
    pub async fn render(&self, app: &App, in_flight: usize) -> Result<String, AppError> {
        self.in_flight.set(in_flight as i64);
        let mut by_status: BTreeMap<&'static str, i64> = BTreeMap::new();
        for summary in app.store().runs(None, 100_000).await? {
            *by_status.entry(summary.status.as_str()).or_default() += 1;
        }
        for status in [RunIndexStatus::Running, RunIndexStatus::Waiting, RunIndexStatus::Paused] {
            by_status.entry(status.as_str()).or_default();
        }
        for (status, n) in by_status {
            self.runs.get_or_create(&StatusLabel { status: status.to_string() }).set(n);
        }
        self.approvals_pending.set(app.inbox().await?.len() as i64);
        let (now_us, hosts) = app.store().hosts().await?;
        let live = hosts.iter().filter(|h| h.expires_us > now_us).count() as i64;
        self.hosts.get_or_create(&HostsLabel { heartbeat: "live".into() }).set(live);
        self.hosts.get_or_create(&HostsLabel { heartbeat: "lapsed".into() }).set(hosts.len() as i64 - live);
        let stats = app.stats(&crate::StatsFilter { limit: 10_000, ..Default::default() }).await?;
        for (gate, g) in &stats.gates {
            let label = GateLabel { gate: gate.clone() };
            self.gate_decisions.get_or_create(&label).set(i64::from(g.decisions));
            if let Some(rate) = g.override_rate {
                self.override_ratio.get_or_create(&label).set(rate);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| AppError::Corrupt(format!("encoding the metrics: {e}")))?;
        Ok(text)
    }
}
