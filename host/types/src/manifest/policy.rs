//! Parsing a policy: a policy file, or a workflow's `[policy]` table (same fields). Every
//! problem is reported at its position, with a hint.
//!
//! ```toml
//! [identities.support-bot]
//! tools = ["customer-lookup", "refund"]
//! env = ["REFUND_API_URL", { name = "REFUND_API_KEY", secret = true }]
//! dirs = [{ host = "data", write = false }]
//! budget = { fuel = 5_000_000_000, wall_time = "30s" }
//!
//! [identities.alice]
//! approves = ["refund"]
//!
//! [gates.refund]
//! approvals = 1
//! deadline = "24h"
//! on_timeout = "reject"
//! relax_after = { decisions = 50, max_override_rate = 0.05 }
//!
//! [[rules]]
//! name = "large-refunds"
//! on = "tool_call"
//! when = "tool == 'refund' && input.amount > 100"
//! verdict = "require_approval"
//! gate = "refund"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::source::{toml_hint, ManifestError, ManifestErrors, Source};
use crate::budget::BudgetSpec;
use crate::expr::Expr;
use crate::names::check_name;
use crate::policy::{
    BudgetCeiling, Checkpoint, Decision, DirAccess, EnvGrant, GateSpec, IdentityGrants, Policy, Relax, Rule, Verdict,
};

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    identities: BTreeMap<Spanned<String>, RawIdentity>,
    #[serde(default)]
    gates: BTreeMap<Spanned<String>, RawGate>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    model: Option<Spanned<crate::model::ModelConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    dirs: Vec<RawDir>,
    #[serde(default)]
    env: Vec<Spanned<RawEnv>>,
    #[serde(default)]
    http: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    model: bool,
    #[serde(default)]
    budget: Option<Spanned<BudgetSpec>>,
    #[serde(default)]
    approves: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: String,
    #[serde(default)]
    write: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawEnv {
    Name(String),
    Grant {
        name: String,
        #[serde(default)]
        secret: bool,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    #[serde(default)]
    approvals: Option<Spanned<u32>>,
    #[serde(default)]
    deadline: Option<Spanned<String>>,
    #[serde(default)]
    on_timeout: Decision,
    #[serde(default)]
    relax_after: Option<Spanned<RawRelax>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelax {
    decisions: u32,
    max_override_rate: f64,
    #[serde(default)]
    per: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    on: Checkpoint,
    #[serde(default)]
    when: Option<Spanned<String>>,
    verdict: Spanned<Verdict>,
    #[serde(default)]
    gate: Option<Spanned<String>>,
}

/// A parsed policy, with what is needed to report references it makes to gates
/// declared elsewhere (a rule in a policy file may use a gate of the workflow).
#[derive(Clone, Debug, Default)]
pub struct ParsedPolicy {
    /// The policy.
    pub policy: Policy,
    /// Gates named by rules, each with the error to report if no such gate is declared.
    pub gate_refs: Vec<(String, ManifestError)>,
}

impl ParsedPolicy {
    /// Parses a policy file. `file` is used only in error messages.
    pub fn parse(file: &str, text: &str) -> Result<ParsedPolicy, ManifestErrors> {
        let source = Source { file: file.to_string(), text: text.to_string() };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ManifestErrors(vec![source.error(span, e.message().trim_end(), toml_hint(e.message()))])
        })?;
        let mut errors = Vec::new();
        let parsed = check(&raw, &source, &mut errors);
        if errors.is_empty() {
            Ok(parsed)
        } else {
            Err(ManifestErrors(errors))
        }
    }

    /// This policy and `other` together. An identity or gate declared in both is an error.
    pub fn merge(mut self, other: ParsedPolicy, other_file: &str) -> Result<ParsedPolicy, String> {
        for (name, grants) in other.policy.identities {
            if self.policy.identities.insert(name.clone(), grants).is_some() {
                return Err(format!("{other_file}: identity `{name}` is also declared in the workflow's [policy]"));
            }
        }
        for (name, gate) in other.policy.gates {
            if self.policy.gates.insert(name.clone(), gate).is_some() {
                return Err(format!("{other_file}: gate `{name}` is also declared in the workflow's [policy]"));
            }
        }
        self.policy.rules.extend(other.policy.rules);
        match (&self.policy.model, other.policy.model) {
            (Some(_), Some(_)) => {
                return Err(format!("{other_file}: [model] is also declared in the workflow's [policy]"));
            }
            (None, model) => self.policy.model = model,
            (Some(_), None) => {}
        }
        self.gate_refs.extend(other.gate_refs);
        Ok(self)
    }

    /// Every reference to a gate that is not declared.
    pub fn missing_gates(&self) -> Vec<ManifestError> {
        self.gate_refs.iter().filter(|(g, _)| !self.policy.gates.contains_key(g)).map(|(_, e)| e.clone()).collect()
    }
}

pub(super) fn check(raw: &RawPolicy, source: &Source, errors: &mut Vec<ManifestError>) -> ParsedPolicy {
    let mut err = |span: Range<usize>, msg: String, hint: Option<&str>| {
        errors.push(source.error(span, &msg, hint.map(str::to_string)));
    };
    let mut parsed = ParsedPolicy::default();
    for (name, id) in &raw.identities {
        if let Err(m) = check_name(name.get_ref()) {
            err(name.span(), format!("identity name {m}"), Some(&crate::names::rename_hint(name.get_ref())));
        } else if crate::policy::RESERVED_IDENTITIES.contains(&name.get_ref().as_str()) {
            err(
                name.span(),
                format!("identity name `{}` is reserved for the host's own decisions", name.get_ref()),
                Some("choose another name"),
            );
        }
        let env = id
            .env
            .iter()
            .map(|e| {
                let grant = match e.get_ref() {
                    RawEnv::Name(name) => EnvGrant { name: name.clone(), secret: false },
                    RawEnv::Grant { name, secret } => EnvGrant { name: name.clone(), secret: *secret },
                };
                if grant.name.is_empty() || !grant.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    err(
                        e.span(),
                        format!("identity `{}`: `{}` is not an environment variable name", name.get_ref(), grant.name),
                        Some("use letters, digits and `_`, for example API_URL"),
                    );
                }
                grant
            })
            .collect();
        let budget = id.budget.as_ref().map(|b| {
            let spec = b.get_ref();
            if spec.output.is_some() {
                err(
                    b.span(),
                    "an identity's budget ceiling takes fuel, wall_time, memory and tool_calls".into(),
                    Some("remove `output` from it"),
                );
            }
            BudgetCeiling {
                fuel: spec.fuel,
                wall_time_ms: spec.wall_time.map(|d| d.as_millis() as u64),
                memory: spec.memory,
                tool_calls: spec.tool_calls,
            }
        });
        let http = super::checks::check_http(&id.http, &format!("identity `{}`", name.get_ref()), true, &mut err);
        let grants = IdentityGrants {
            tools: id.tools.clone(),
            dirs: id.dirs.iter().map(|d| DirAccess { host: d.host.clone(), write: d.write }).collect(),
            env,
            http,
            model: id.model,
            budget,
            approves: id.approves.clone(),
        };
        parsed.policy.identities.insert(name.get_ref().clone(), grants);
    }
    if let Some(model) = &raw.model {
        for problem in model.get_ref().problems() {
            let hint = "for example [model] url = \"https://api.openai.com/v1\", key = \"OPENAI_API_KEY\", models = [\"gpt-4o-mini\"]";
            err(model.span(), format!("[model]: {problem}"), Some(hint));
        }
        parsed.policy.model = Some(model.get_ref().clone());
    }
    for (name, g) in &raw.gates {
        if let Err(m) = check_name(name.get_ref()) {
            err(name.span(), format!("gate name {m}"), Some(&crate::names::rename_hint(name.get_ref())));
        }
        let approvals = g.approvals.as_ref().map_or(1, |a| *a.get_ref());
        if !(1..=2).contains(&approvals) {
            let span = g.approvals.as_ref().map_or(name.span(), Spanned::span);
            err(
                span,
                format!("gate `{}`: `approvals` must be 1 or 2", name.get_ref()),
                Some("write approvals = 1, or 2 for two different approvers"),
            );
        }
        let deadline_ms = g.deadline.as_ref().and_then(|d| match humantime::parse_duration(d.get_ref()) {
            Ok(t) if t.as_millis() > 0 => Some(t.as_millis() as u64),
            _ => {
                err(
                    d.span(),
                    format!("gate `{}`: `{}` is not a duration", name.get_ref(), d.get_ref()),
                    Some("write for example \"30m\", \"24h\" or \"3days\""),
                );
                None
            }
        });
        let relax_after = g.relax_after.as_ref().map(|r| {
            let raw = r.get_ref();
            if !(0.0..=1.0).contains(&raw.max_override_rate) {
                err(
                    r.span(),
                    format!("gate `{}`: `max_override_rate` must be 0 to 1", name.get_ref()),
                    Some("write a fraction, for example 0.05 for 5%"),
                );
            }
            if raw.decisions == 0 {
                err(
                    r.span(),
                    format!("gate `{}`: `decisions` must be at least 1", name.get_ref()),
                    Some("write how many human decisions the gate must see before it relaxes, for example 20"),
                );
            }
            let per = raw.per.as_ref().map(|p| {
                if let Err(e) = Expr::compile(p.get_ref()) {
                    err(
                        p.span(),
                        format!("gate `{}` `per`: {e}", name.get_ref()),
                        Some("`per` is a CEL expression that classes requests, for example proposal.currency"),
                    );
                }
                p.get_ref().clone()
            });
            Relax { decisions: raw.decisions, max_override_rate: raw.max_override_rate, per }
        });
        parsed
            .policy
            .gates
            .insert(name.get_ref().clone(), GateSpec { approvals, deadline_ms, on_timeout: g.on_timeout, relax_after });
    }
    for r in &raw.rules {
        let name = r.name.get_ref();
        if let Some(w) = &r.when {
            if let Err(e) = Expr::compile(w.get_ref()) {
                err(w.span(), format!("rule `{name}` `when`: {e}"), Some("conditions are CEL, as in the workflow"));
            }
        }
        match (r.verdict.get_ref(), &r.gate) {
            (Verdict::RequireApproval, None) => err(
                r.verdict.span(),
                format!("rule `{name}` requires approval but names no `gate`"),
                Some("add gate = \"NAME\" and declare it under [gates.NAME]"),
            ),
            (Verdict::RequireApproval, Some(g)) => parsed.gate_refs.push((
                g.get_ref().clone(),
                source.error(
                    g.span(),
                    &format!("rule `{name}` names gate `{}`, which is not declared", g.get_ref()),
                    Some("declare it under [gates.NAME], in the workflow's [policy] or the policy file".into()),
                ),
            )),
            (_, Some(g)) => {
                err(
                    g.span(),
                    format!("rule `{name}`: only `require_approval` rules take a `gate`"),
                    Some("remove the gate, or make the verdict require_approval"),
                );
            }
            (_, None) => {}
        }
        parsed.policy.rules.push(Rule {
            name: name.clone(),
            on: r.on,
            when: r.when.as_ref().map(|w| w.get_ref().clone()),
            verdict: *r.verdict.get_ref(),
            gate: r.gate.as_ref().map(|g| g.get_ref().clone()),
        });
    }
    parsed
}
