//! The workflow manifest (TOML), parsed strictly: unknown fields are rejected and every
//! error names the file, line and column, with a hint on what to do.
//!
//! ```toml
//! name = "support-triage"
//! version = "0.1.0"
//!
//! [defaults]
//! budget = { fuel = 2_000_000_000, wall_time = "10s", memory = "64MiB" }
//!
//! [tools.customer-lookup]
//! component = "plugins/customer_lookup.wasm"
//!
//! [[steps]]
//! name = "classify"
//! component = "plugins/classify.wasm"
//!
//! [[steps]]
//! name = "draft"
//! component = "plugins/draft_reply.wasm"
//! tools = ["customer-lookup"]
//! budget = { tool_calls = 4 }
//! ```
//!
//! A step needs the step written before it unless it says otherwise (`needs = [...]`,
//! `needs = []` for none); steps whose needs are met run concurrently. The flow
//! fields (`needs`, `input`, `when`, `for_each`, `route`, `loop`, `[loops.NAME]`,
//! `[run] output`) are checked in [`flow`]; the README documents the language.

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use toml::Spanned;

use crate::budget::{StepBudget, ToolBudget};
use crate::expr::Expr;
pub(crate) use crate::names::check_name;

mod checks;
mod flow;
mod policy;
mod raw;
mod source;

pub use policy::ParsedPolicy;
pub use source::{ManifestError, ManifestErrors};

use checks::{check_budget, check_dirs, check_env, check_http, component_ref, step_only_field};
use raw::{RawCompensate, RawWorkflow};
use source::{toml_hint, Source};

/// Largest memory budget a manifest may ask for; the host reserves address space for it.
pub const MAX_MEMORY: u64 = 4 << 30;

/// A validated workflow: names checked, references resolved, budgets complete.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// The workflow's name.
    pub name: String,
    /// Its version, if given.
    pub version: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// The identity runs execute as unless `tether run --as` says otherwise.
    pub identity: Option<String>,
    /// Declared tools, by name.
    pub tools: BTreeMap<String, ToolSpec>,
    /// Steps, in execution order.
    pub steps: Vec<StepSpec>,
    /// Totals across the whole run.
    pub run_budget: crate::run_budget::RunBudget,
    /// Loops, by name.
    pub loops: BTreeMap<String, LoopSpec>,
    /// What the run outputs; by default, the output of the last step written.
    pub output: Option<Expr>,
    /// The `[policy]` table (empty if none), with the gates step approvals refer to.
    pub policy: ParsedPolicy,
    /// `policy_file`, as written (relative to the manifest's directory).
    pub policy_file: Option<String>,
    source: Source,
}

/// A step's approval gate: its output waits for a human when `when` holds.
#[derive(Clone, Debug)]
pub struct StepApproval {
    /// The gate (declared under `[policy.gates]` or in the policy file).
    pub gate: String,
    /// CEL over `input` and `output` (and `identity`, `step`); none means always.
    pub when: Option<Expr>,
}

/// A loop: its steps run again, in order of their needs, until `until` holds.
#[derive(Clone, Debug)]
pub struct LoopSpec {
    /// Checked after each iteration, with that iteration's outputs in `steps`.
    pub until: Expr,
    /// The most iterations it runs.
    pub max_iterations: u32,
    /// What happens when the last iteration ends without `until` holding.
    pub on_exhausted: crate::plan::OnExhausted,
}

/// A step that fans out over a list.
#[derive(Clone, Debug)]
pub struct ForEach {
    /// Gives the list; each element runs the step once, as `item` (with `index`).
    pub items: Expr,
    /// How many items run at once.
    pub concurrency: u32,
}

/// One case of a route: the first whose `when` holds (or that has none) is taken.
#[derive(Clone, Debug)]
pub struct RouteCase {
    /// The condition; none for the default case.
    pub when: Option<Expr>,
    /// The step that runs when this case is taken.
    pub to: String,
}

/// A tool declared in the manifest.
#[derive(Clone, Debug)]
pub struct ToolSpec {
    /// The name steps call it by.
    pub name: String,
    /// Where its component is.
    pub component: ComponentRef,
    /// The budget of each call.
    pub budget: ToolBudget,
    /// Host directories the tool may see.
    pub dirs: Vec<DirSpec>,
    /// Environment variables the tool may read (when its identity is granted them).
    pub env: Vec<String>,
    /// Outbound HTTP the tool asks for (allowed where its identity is granted it too).
    pub http: Vec<crate::egress::HttpGrant>,
}

/// A host directory granted to a tool, as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSpec {
    /// Host path; relative paths start at the manifest's directory.
    pub host: String,
    /// The absolute path the guest sees.
    pub guest: String,
    /// Whether the guest may write (default: read-only).
    #[serde(default)]
    pub write: bool,
}

/// A step declared in the manifest.
#[derive(Clone, Debug)]
pub struct StepSpec {
    /// The step's name, unique in the workflow.
    pub name: String,
    /// Where its component is; `None` for a route, which runs no component.
    pub component: Option<ComponentRef>,
    /// Where the step sits in the flow: what it needs, when it runs, how it fans out.
    pub flow: StepFlow,
    /// Tools the step may call; any other call is denied.
    pub tools: Vec<String>,
    /// The budget of each attempt.
    pub budget: StepBudget,
    /// When and how failed attempts are retried.
    pub retry: crate::retry::RetryPolicy,
    /// What undoes this step if the run fails after it completed.
    pub compensate: Option<Compensation>,
    /// Host directories the step may see.
    pub dirs: Vec<DirSpec>,
    /// Environment variables the step may read (when its identity is granted them).
    pub env: Vec<String>,
    /// Outbound HTTP the step asks for (allowed where its identity is granted it too).
    pub http: Vec<crate::egress::HttpGrant>,
    /// Whether it asks for the operator's model (`model = true`).
    pub model: bool,
    /// The gate its output must pass, if any.
    pub approval: Option<StepApproval>,
}

/// A step's place in the flow, filled in by the flow checks ([`flow`]). Empty for the
/// specs of a recorded plan, whose flow is read from the plan itself.
#[derive(Clone, Debug, Default)]
pub struct StepFlow {
    /// Steps that must finish (complete or be skipped) before this one starts.
    pub needs: Vec<String>,
    /// Builds the step's input; by default the output of its one need, an object of its
    /// needs' outputs when it has several, or the run input when it has none.
    pub input: Option<Expr>,
    /// The step is skipped unless this holds.
    pub when: Option<Expr>,
    /// Runs the step once per item of a list.
    pub for_each: Option<ForEach>,
    /// Makes the step a route: it picks one of its targets, and the others are skipped.
    pub route: Option<Vec<RouteCase>>,
    /// The loop the step belongs to.
    pub in_loop: Option<String>,
}

/// How a completed step is undone when the run fails later: a declared tool, or a
/// component run as a step. Either gets `{"step", "input", "output"}` of the step.
#[derive(Clone, Debug)]
pub enum Compensation {
    /// A tool declared under `[tools]`.
    Tool(String),
    /// A step component.
    Component(ComponentRef),
}

/// A component reference as written, with its position for error messages.
#[derive(Clone, Debug)]
pub struct ComponentRef {
    /// The path as written (relative paths are relative to the manifest's directory).
    pub path: String,
    /// Byte range in the manifest.
    pub span: Range<usize>,
}

impl ComponentRef {
    /// The digest, when the component is referenced as `sha256:HEX`.
    pub fn digest(&self) -> Option<&str> {
        self.path.strip_prefix("sha256:")
    }

    /// `NAME@VERSION`, when the component is a plugin deployed with `tether plugin add`.
    pub fn plugin(&self) -> Option<&str> {
        crate::plugin_ref::split(&self.path).map(|_| self.path.as_str())
    }
}

impl Workflow {
    /// Parses and validates a manifest. `file` is used only in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Workflow, ManifestErrors> {
        let source = Source { file: file.to_string(), text: text.to_string() };
        let raw: RawWorkflow = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let hint = toml_hint(e.message());
            ManifestErrors(vec![source.error(span, e.message().trim_end(), hint)])
        })?;
        let mut errors = Vec::new();
        let mut policy = match &raw.policy {
            Some(p) => policy::check(p, &source, &mut errors),
            None => ParsedPolicy::default(),
        };
        let mut err = |span: Range<usize>, msg: String, hint: Option<&str>| {
            errors.push(source.error(span, &msg, hint.map(str::to_string)));
        };

        if let Err(m) = check_name(raw.name.get_ref()) {
            err(raw.name.span(), format!("workflow name {m}"), Some(&crate::names::rename_hint(raw.name.get_ref())));
        }
        if let Some(id) = &raw.identity {
            if let Err(m) = crate::policy::check_identity_name(id.get_ref()) {
                err(
                    id.span(),
                    m,
                    Some("name an identity the policy declares, written as its name is (lowercase, `-`, `_`)"),
                );
            }
        }
        let step_defaults = check_budget(&raw.defaults.budget, &mut err).unwrap_or_default();
        let tool_defaults = check_budget(&raw.defaults.tool_budget, &mut err).unwrap_or_default();
        if let Some(b) = &raw.defaults.tool_budget {
            if let Some(m) = step_only_field(b.get_ref()) {
                err(b.span(), m, Some("remove it from [defaults.tool_budget]; set it in [defaults.budget] for steps"));
            }
        }

        let mut tools = BTreeMap::new();
        for (name, tool) in &raw.tools {
            if let Err(m) = check_name(name.get_ref()) {
                err(name.span(), format!("tool name {m}"), Some(&crate::names::rename_hint(name.get_ref())));
            }
            let spec = check_budget(&tool.budget, &mut err).unwrap_or_default();
            if let Some(m) = step_only_field(&spec) {
                err(tool.budget.as_ref().map_or(0..0, |b| b.span()), m, Some("remove it from the tool's budget"));
            }
            let budget = ToolBudget::from_spec(&spec.over(&tool_defaults));
            let component = component_ref(&tool.component, &mut err);
            let dirs = check_dirs(&tool.dirs, &mut err);
            let env = check_env(&tool.env, &mut err);
            let http = check_http(&tool.http, &format!("tool `{}`", name.get_ref()), false, &mut err);
            tools.insert(
                name.get_ref().clone(),
                ToolSpec { name: name.get_ref().clone(), component, budget, dirs, env, http },
            );
        }

        if raw.steps.is_empty() {
            err(0..0, "the workflow has no steps".into(), Some("add a `[[steps]]` table with `name` and `component`"));
        }
        let mut seen = HashSet::new();
        let mut steps = Vec::new();
        for step in &raw.steps {
            let name = step.name.get_ref();
            if let Err(m) = check_name(name) {
                err(step.name.span(), format!("step name {m}"), Some(&crate::names::rename_hint(name)));
            } else if !seen.insert(name.clone()) {
                err(
                    step.name.span(),
                    format!("step name `{name}` is used twice"),
                    Some("give every step a unique name"),
                );
            }
            for tool in &step.tools {
                if !tools.contains_key(tool.get_ref()) {
                    let declared: Vec<&str> = tools.keys().map(String::as_str).collect();
                    let hint = if declared.is_empty() {
                        format!("declare it with a `[tools.{}]` table", tool.get_ref())
                    } else {
                        format!("declared tools: {}", declared.join(", "))
                    };
                    err(
                        tool.span(),
                        format!("step `{name}` lists tool `{}`, which is not declared", tool.get_ref()),
                        Some(&hint),
                    );
                }
            }
            let spec = check_budget(&step.budget, &mut err).unwrap_or_default();
            let default_retry = raw.defaults.retry.as_ref().map(|r| r.get_ref().clone()).unwrap_or_default();
            let retry = match step.retry.as_ref().map(|r| (r.span(), r.get_ref())) {
                Some((span, r)) => r.resolve(&default_retry).unwrap_or_else(|problems| {
                    let hint = Some("see `retry` in the workflow format: attempts, backoff, max_backoff, on");
                    problems.into_iter().for_each(|p| err(span.clone(), format!("step `{name}`: {p}"), hint));
                    crate::retry::RetryPolicy::default()
                }),
                None => default_retry.resolve(&crate::retry::RetrySpec::default()).unwrap_or_else(|problems| {
                    let span = raw.defaults.retry.as_ref().map_or(0..0, |r| r.span());
                    let hint = Some("see `retry` in the workflow format: attempts, backoff, max_backoff, on");
                    problems.into_iter().for_each(|p| err(span.clone(), format!("[defaults]: {p}"), hint));
                    crate::retry::RetryPolicy::default()
                }),
            };
            let compensate = match step.compensate.as_ref().map(|c| (c.span(), c.get_ref())) {
                None => None,
                Some((span, RawCompensate { tool: Some(t), component: None })) => {
                    if !tools.contains_key(t) {
                        err(
                            span,
                            format!("step `{name}` is compensated by tool `{t}`, which is not declared"),
                            Some("declare it under [tools]"),
                        );
                    }
                    Some(Compensation::Tool(t.clone()))
                }
                Some((_, RawCompensate { tool: None, component: Some(c) })) => {
                    Some(Compensation::Component(component_ref(c, &mut err)))
                }
                Some((span, _)) => {
                    let hint =
                        Some("write compensate = { tool = \"NAME\" } or compensate = { component = \"undo.wasm\" }");
                    err(span, format!("step `{name}`: `compensate` takes exactly one of `tool` or `component`"), hint);
                    None
                }
            };
            let component = match (&step.component, &step.route) {
                (Some(c), _) => Some(component_ref(c, &mut err)),
                (None, Some(_)) => None,
                (None, None) => {
                    err(
                        step.name.span(),
                        format!("step `{name}` has no `component`"),
                        Some("give the path of its .wasm component, or make it a `route`"),
                    );
                    None
                }
            };
            let approval = step.approval.as_ref().map(|a| {
                policy.gate_refs.push((
                    a.gate.get_ref().clone(),
                    source.error(
                        a.gate.span(),
                        &format!("step `{name}` names gate `{}`, which is not declared", a.gate.get_ref()),
                        Some("declare it under [policy.gates.NAME] or in the policy file".into()),
                    ),
                ));
                let when = a.when.as_ref().and_then(|w| match Expr::compile(w.get_ref()) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        let hint =
                            Some("conditions are CEL over `input` and `output`, for example output.amount > 100.0");
                        err(w.span(), format!("step `{name}` approval `when`: {e}"), hint);
                        None
                    }
                });
                StepApproval { gate: a.gate.get_ref().clone(), when }
            });
            if approval.is_some() && step.route.is_some() {
                let hint = Some("put the approval on the step the route leads to");
                err(step.name.span(), format!("route `{name}` cannot have an approval gate"), hint);
            }
            steps.push(StepSpec {
                approval,
                dirs: check_dirs(&step.dirs, &mut err),
                env: check_env(&step.env, &mut err),
                http: check_http(&step.http, &format!("step `{name}`"), false, &mut err),
                model: step.model,
                compensate,
                retry,
                name: name.clone(),
                component,
                flow: StepFlow::default(),
                tools: step.tools.iter().map(|t| t.get_ref().clone()).collect(),
                budget: StepBudget::from_spec(&spec.over(&step_defaults)),
            });
        }
        let (loops, output) = flow::check(&raw, &mut steps, &mut err);

        let run_budget = match raw.run.as_ref().and_then(|r| r.budget.as_ref()) {
            None => crate::run_budget::RunBudget::default(),
            Some(b) => {
                let r = b.get_ref();
                for (metric, limit) in &r.usage {
                    if check_name(metric).is_err()
                        && !metric.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                    {
                        let hint =
                            Some("name metrics with letters, digits, `_`, `.` or `-`, for example tokens or cost_usd");
                        err(b.span(), format!("[run] budget: usage metric `{metric}` is not a valid name"), hint);
                    }
                    if !(limit.is_finite() && *limit > 0.0) {
                        err(
                            b.span(),
                            format!("[run] budget: the limit for `{metric}` must be a positive number"),
                            None,
                        );
                    }
                }
                crate::run_budget::RunBudget {
                    fuel: r.fuel,
                    wall_time: r.wall_time,
                    tool_calls: r.tool_calls,
                    http_requests: r.http_requests,
                    http_bytes: r.http_bytes,
                    usage: r.usage.clone(),
                }
            }
        };
        if !errors.is_empty() {
            return Err(ManifestErrors(errors));
        }
        Ok(Workflow {
            loops,
            output,
            run_budget,
            policy,
            policy_file: raw.policy_file,
            name: raw.name.into_inner(),
            version: raw.version,
            description: raw.description,
            identity: raw.identity.map(Spanned::into_inner),
            tools,
            steps,
            source,
        })
    }

    /// The digests of components referenced as `sha256:HEX` instead of by path.
    pub fn digest_refs(&self) -> Vec<String> {
        self.refs(ComponentRef::digest)
    }

    /// The `NAME@VERSION` references to deployed plugins.
    pub fn plugin_refs(&self) -> Vec<String> {
        self.refs(ComponentRef::plugin)
    }

    fn refs(&self, pick: impl Fn(&ComponentRef) -> Option<&str>) -> Vec<String> {
        let steps = self.steps.iter().flat_map(|s| {
            let undo = match &s.compensate {
                Some(Compensation::Component(c)) => Some(c),
                _ => None,
            };
            s.component.iter().chain(undo)
        });
        let mut refs: Vec<String> = steps
            .chain(self.tools.values().map(|t| &t.component))
            .filter_map(|c| pick(c).map(str::to_string))
            .collect();
        refs.sort();
        refs.dedup();
        refs
    }

    /// The manifest file name given to [`Workflow::parse`].
    pub fn file(&self) -> &str {
        &self.source.file
    }

    /// An error positioned at `span` of this manifest, for checks made after parsing
    /// (for example a component file that does not exist).
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) -> ManifestError {
        self.source.error(span, &message.into(), hint)
    }
}

#[cfg(test)]
mod tests;
