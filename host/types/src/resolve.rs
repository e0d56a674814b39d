//! From a parsed workflow to its resolved [`Plan`]: the one place that says what a plan
//! holds of a workflow. The loader (which knows each component's digest and the granted
//! directories) and the pure core's tests both build plans through it.

use crate::manifest::Workflow;
use crate::plan::{
    DirGrant, Plan, PlanApproval, PlanCompensation, PlanForEach, PlanLoop, PlanRouteCase, PlanStep, PlanTool,
};
use crate::policy::Policy;
use crate::StepSpec;

/// What loading decided for one step: its component's digest, its compensation and the
/// directories granted to it.
#[derive(Clone, Debug, Default)]
pub struct ResolvedStep {
    /// The component's digest.
    pub component: String,
    /// How it is undone, if it can be.
    pub compensate: Option<PlanCompensation>,
    /// Directories granted to it.
    pub dirs: Vec<DirGrant>,
}

/// The plan of `workflow`, with `steps` saying what was resolved for each step and
/// `tools` the tools as loaded, by name.
pub fn plan_of(
    workflow: &Workflow,
    policy: Option<Policy>,
    steps: impl Fn(&StepSpec) -> ResolvedStep,
    tools: impl IntoIterator<Item = (String, PlanTool)>,
) -> Plan {
    let source = |e: &Option<crate::expr::Expr>| e.as_ref().map(|e| e.source().to_string());
    Plan {
        policy,
        run_budget: workflow.run_budget.clone(),
        workflow: workflow.name.clone(),
        version: workflow.version.clone(),
        loops: workflow
            .loops
            .iter()
            .map(|(name, l)| {
                let until = l.until.source().to_string();
                (name.clone(), PlanLoop { until, max_iterations: l.max_iterations, on_exhausted: l.on_exhausted })
            })
            .collect(),
        output: source(&workflow.output),
        steps: workflow
            .steps
            .iter()
            .map(|spec| {
                let resolved = steps(spec);
                PlanStep {
                    name: spec.name.clone(),
                    component: resolved.component,
                    needs: Some(spec.flow.needs.clone()),
                    input: source(&spec.flow.input),
                    when: source(&spec.flow.when),
                    for_each: spec
                        .flow
                        .for_each
                        .as_ref()
                        .map(|f| PlanForEach { items: f.items.source().to_string(), concurrency: f.concurrency }),
                    route: spec.flow.route.as_ref().map(|cases| {
                        cases.iter().map(|c| PlanRouteCase { when: source(&c.when), to: c.to.clone() }).collect()
                    }),
                    in_loop: spec.flow.in_loop.clone(),
                    tools: spec.tools.clone(),
                    budget: spec.budget,
                    retry: spec.retry.clone(),
                    compensate: resolved.compensate,
                    dirs: resolved.dirs,
                    env: spec.env.clone(),
                    http: spec.http.clone(),
                    model: spec.model,
                    approval: spec
                        .approval
                        .as_ref()
                        .map(|a| PlanApproval { gate: a.gate.clone(), when: source(&a.when) }),
                }
            })
            .collect(),
        tools: tools.into_iter().collect(),
    }
}
