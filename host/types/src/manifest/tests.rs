use super::source::line_column;
use super::*;

fn parse(text: &str) -> Result<Workflow, Vec<String>> {
    Workflow::parse("wf.toml", text).map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

const GOOD: &str = r#"
name = "triage"
[defaults]
budget = { fuel = 1000, wall_time = "2s" }
tool_budget = { memory = "1MiB" }

[tools.lookup]
component = "lookup.wasm"
budget = { wall_time = 500 }

[[steps]]
name = "classify"
component = "classify.wasm"

[[steps]]
name = "draft"
component = "draft.wasm"
tools = ["lookup"]
budget = { tool_calls = 3, memory = "32MiB" }
"#;

#[test]
fn good_manifest_layers_budgets() {
    let wf = parse(GOOD).unwrap();
    assert_eq!(wf.name, "triage");
    assert_eq!(wf.steps.len(), 2);
    let draft = &wf.steps[1];
    assert_eq!(draft.tools, vec!["lookup"]);
    assert_eq!(draft.budget.tool_calls, 3);
    assert_eq!(draft.budget.memory, 32 << 20);
    assert_eq!(draft.budget.fuel, 1000, "from [defaults]");
    assert_eq!(draft.budget.output, StepBudget::DEFAULT.output, "from built-in defaults");
    let lookup = &wf.tools["lookup"];
    assert_eq!(lookup.budget.wall_time.as_millis(), 500);
    assert_eq!(lookup.budget.memory, 1 << 20);
    assert_eq!(lookup.budget.fuel, ToolBudget::DEFAULT.fuel);
}

/// Each bad manifest paired with the message it must produce (position included).
#[test]
fn bad_manifests_name_position_and_problem() {
    let cases: &[(&str, &str)] = &[
        ("name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\ncolour = 1\n", "wf.toml:5:1: unknown field `colour`"),
        ("name = \"x\"\n[[steps]]\nname = \"a\"\n", "wf.toml:3:8: step `a` has no `component`\n  hint: give the path of its .wasm component, or make it a `route`"),
        ("name = \"x\"\n", "wf.toml:1:1: the workflow has no steps"),
        ("name = \"x\"\n[[steps]\n", "wf.toml:2:"),
        (
            "name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[[steps]]\nname = \"a\"\ncomponent = \"b.wasm\"\n",
            "wf.toml:6:8: step name `a` is used twice",
        ),
        (
            "name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\ntools = [\"nope\"]\n",
            "wf.toml:5:10: step `a` lists tool `nope`, which is not declared\n  hint: declare it with a `[tools.nope]` table",
        ),
        ("name = \"X Y\"\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\n", "wf.toml:1:8: workflow name `X Y` must be"),
        (
            "name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\nbudget = { memory = \"8GiB\" }\n",
            "above the host's limit of 4GiB",
        ),
        (
            "name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\nbudget = { wall_time = \"soon\" }\n",
            "`soon` is not a duration",
        ),
        (
            "name = \"x\"\n[tools.t]\ncomponent = \"t.wasm\"\nbudget = { tool_calls = 2 }\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
            "wf.toml:4:10: `tool_calls` does not apply to tools",
        ),
        (
            "name = \"x\"\n[tools.t]\ncomponent = \"t.wasm\"\nbudget = { host_reads = 2 }\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
            "wf.toml:4:10: `host_reads` does not apply to tools",
        ),
    ];
    for (text, expected) in cases {
        let errors = parse(text).expect_err(text).join("\n");
        assert!(errors.contains(expected), "manifest:\n{text}\nexpected: {expected}\ngot: {errors}");
    }
}

#[test]
fn all_problems_are_reported_not_just_the_first() {
    let text = "name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = \"\"\ntools = [\"t1\"]\n[[steps]]\nname = \"a\"\ncomponent = \"b\"\n";
    let errors = parse(text).unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(line_column("ab\ncdé\nf", 7), (2, 4));
    assert_eq!(line_column("", 10), (1, 1));
}

/// Flow fields: each bad manifest paired with the message it must produce.
#[test]
fn bad_flow_manifests_name_position_and_problem() {
    let step = |name: &str, extra: &str| format!("[[steps]]\nname = \"{name}\"\ncomponent = \"{name}.wasm\"\n{extra}");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("name = \"x\"\n{}{}{}", step("a", "needs = [\"c\"]\n"), step("b", ""), step("c", "")),
            "wf.toml:3:8: the steps' `needs` form a cycle: a -> c -> b -> a",
        ),
        (format!("name = \"x\"\n{}", step("a", "needs = [\"nope\"]\n")), "wf.toml:5:10: step `a` needs `nope`, which is not a step"),
        (format!("name = \"x\"\n{}", step("a", "needs = [\"a\"]\n")), "wf.toml:5:10: step `a` needs itself"),
        (
            format!("name = \"x\"\n{}", step("a", "input = \"input.x +\"\n")),
            "wf.toml:5:9: step `a` `input`: 1:10: Syntax error",
        ),
        (
            format!("name = \"x\"\n{}", step("a", "concurrency = 2\n")),
            "wf.toml:5:15: step `a` has `concurrency` but no `for_each`",
        ),
        (
            format!("name = \"x\"\n{}", step("a", "for_each = \"input.xs\"\nconcurrency = 0\n")),
            "wf.toml:6:15: step `a`: `concurrency` must be 1 to 64",
        ),
        (
            format!("name = \"x\"\n{}", step("a", "loop = \"fix\"\n")),
            "wf.toml:5:8: step `a` is in loop `fix`, which is not declared",
        ),
        (
            "name = \"x\"\n[loops.fix]\nuntil = \"true\"\nmax_iterations = 0\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\nloop = \"fix\"\n".into(),
            "wf.toml:4:18: loop `fix`: `max_iterations` must be 1 to 1000",
        ),
        (
            "name = \"x\"\n[loops.fix]\nuntil = \"true\"\nmax_iterations = 2\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\n".into(),
            "wf.toml:2:8: loop `fix` has no steps",
        ),
        (
            format!(
                "name = \"x\"\n{}[[steps]]\nname = \"r\"\nroute = [{{ to = \"b\" }}]\n{}",
                step("a", ""),
                step("b", "needs = [\"a\"]\n")
            ),
            "wf.toml:7:17: route `r` leads to `b`, which does not need it\n  hint: add `needs = [\"r\"]` to step `b`",
        ),
        (
            format!("name = \"x\"\n{}[[steps]]\nname = \"r\"\nroute = [{{ to = \"b\" }}, {{ when = \"true\", to = \"a\" }}]\n", step("a", "")),
            "wf.toml:7:17: route `r`: only the last case may leave out `when`",
        ),
        (
            "name = \"x\"\n[[steps]]\nname = \"r\"\nroute = [{ to = \"r2\" }]\ncomponent = \"r.wasm\"\n".into(),
            "wf.toml:5:13: step `r` is a route, which runs no component; it cannot have `component`",
        ),
        (
            "name = \"x\"\n[loops.fix]\nuntil = \"true\"\nmax_iterations = 2\non_exhausted = \"retry\"\n".into(),
            "wf.toml:5:16: unknown variant `retry`, expected `fail` or `continue`",
        ),
        (
            format!("name = \"x\"\n[run]\noutput = \"steps.a.(\"\n{}", step("a", "")),
            "wf.toml:3:10: [run] `output`:",
        ),
    ];
    for (text, expected) in &cases {
        let errors = parse(text).expect_err(text);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "manifest:\n{text}\nexpected an error starting with:\n{expected}\ngot:\n{}",
            errors.join("\n")
        );
    }
}

#[test]
fn needs_default_to_the_step_before_and_flow_fields_are_kept() {
    let text = r#"
name = "flow"
[loops.fix]
until = "steps.b.ok"
max_iterations = 3
[[steps]]
name = "a"
component = "a.wasm"
for_each = "input.items"
[[steps]]
name = "b"
component = "b.wasm"
loop = "fix"
when = "size(steps.a) > 0"
[[steps]]
name = "c"
needs = []
component = "c.wasm"
"#;
    let wf = parse(text).unwrap();
    assert_eq!(wf.steps[0].flow.needs, Vec::<String>::new());
    assert_eq!(wf.steps[1].flow.needs, vec!["a"]);
    assert!(wf.steps[2].flow.needs.is_empty(), "needs = [] means none");
    assert_eq!(wf.steps[0].flow.for_each.as_ref().unwrap().concurrency, 4, "the default cap");
    assert_eq!(wf.steps[1].flow.in_loop.as_deref(), Some("fix"));
    assert_eq!(wf.loops["fix"].max_iterations, 3);
    assert_eq!(wf.steps[1].flow.when.as_ref().unwrap().source(), "size(steps.a) > 0");
}

fn parse_policy(text: &str) -> Result<ParsedPolicy, Vec<String>> {
    ParsedPolicy::parse("policy.toml", text).map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

#[test]
fn a_policy_parses_identities_gates_and_rules() {
    let p = parse_policy(
        r#"
[identities.bot]
tools = ["pay"]
env = ["URL", { name = "KEY", secret = true }]
dirs = [{ host = "data", write = true }]
budget = { fuel = 100, wall_time = "2s", tool_calls = 3 }

[identities.alice]
approves = ["refund"]

[gates.refund]
approvals = 2
deadline = "1h"
on_timeout = "approve"
relax_after = { decisions = 10, max_override_rate = 0.1, per = "proposal.category" }

[[rules]]
name = "big"
on = "tool_call"
when = "input.amount > 10"
verdict = "require_approval"
gate = "refund"
"#,
    )
    .unwrap();
    let bot = &p.policy.identities["bot"];
    assert_eq!(bot.env[1], crate::policy::EnvGrant { name: "KEY".into(), secret: true });
    assert_eq!(bot.budget.unwrap().wall_time_ms, Some(2000));
    let gate = &p.policy.gates["refund"];
    assert_eq!(
        (gate.approvals, gate.deadline_ms, gate.on_timeout),
        (2, Some(3_600_000), crate::policy::Decision::Approve)
    );
    assert!(p.missing_gates().is_empty());
    assert!(p.policy.may_approve("alice", "refund") && !p.policy.may_approve("bot", "refund"));
}

#[test]
fn policy_errors_are_positioned_and_all_reported() {
    let errors = parse_policy(
        r#"[identities.bot]
env = ["NOT-A-NAME"]

[gates.g]
approvals = 3
deadline = "soon"

[[rules]]
name = "a"
on = "tool_call"
when = "input.amount >"
verdict = "require_approval"

[[rules]]
name = "b"
on = "step"
verdict = "deny"
gate = "g"
"#,
    )
    .unwrap_err();
    let all = errors.join("\n");
    assert!(all.contains("policy.toml:2:8: identity `bot`: `NOT-A-NAME` is not an environment variable name"), "{all}");
    assert!(all.contains("policy.toml:5:13: gate `g`: `approvals` must be 1 or 2"), "{all}");
    assert!(all.contains("policy.toml:6:12: gate `g`: `soon` is not a duration"), "{all}");
    assert!(all.contains("policy.toml:11:8: rule `a` `when`"), "{all}");
    assert!(all.contains("rule `a` requires approval but names no `gate`"), "{all}");
    assert!(all.contains("rule `b`: only `require_approval` rules take a `gate`"), "{all}");
    let unknown = parse_policy("[gates.g]\napprover = 1\n").unwrap_err().join("\n");
    assert!(unknown.contains("policy.toml:2:1: unknown field `approver`"), "{unknown}");
}

#[test]
fn gates_named_by_steps_and_rules_must_be_declared_somewhere() {
    let wf = parse(
        r#"name = "w"
[[steps]]
name = "a"
component = "a.wasm"
approval = { gate = "later", when = "output.x > 1" }
"#,
    )
    .unwrap();
    let missing = wf.policy.missing_gates();
    assert_eq!(missing.len(), 1);
    assert!(missing[0].to_string().contains("wf.toml:5:21: step `a` names gate `later`"), "{}", missing[0]);
    let file = parse_policy("[gates.later]\n").unwrap();
    assert!(wf.policy.clone().merge(file, "p.toml").unwrap().missing_gates().is_empty());
    let dup = parse_policy("[gates.later]\n").unwrap();
    let twice = parse_policy("[gates.later]\n").unwrap().merge(dup, "p.toml").unwrap_err();
    assert!(twice.contains("gate `later` is also declared"), "{twice}");
}

#[test]
fn an_identity_cannot_take_a_name_that_passes_for_the_host() {
    for name in ["deadline", "autonomy", "tether"] {
        let errors = parse_policy(&format!("[identities.{name}]\napproves = [\"g\"]\n")).unwrap_err().join("\n");
        assert!(errors.contains(&format!("identity name `{name}` is reserved")), "{errors}");
    }
}

/// A workflow touching most of the format: flow, routes, loops, compensation, approvals
/// and a policy, for mutating.
const RICH: &str = r#"
name = "refund"
identity = "bot"
[defaults]
budget = { fuel = 1000, wall_time = "2s", memory = "32MiB" }
retry = { max_attempts = 3, initial_backoff = "100ms" }
[run]
budget = { usage = { tokens = 5000 } }
[tools.pay]
component = "pay.wasm"
[[steps]]
name = "assess"
component = "assess.wasm"
approval = { gate = "refund", when = "output.amount > 100.0" }
compensate = { tool = "pay" }
[[steps]]
name = "pick"
needs = ["assess"]
route = [{ when = "input.amount > 1.0", to = "issue" }]
[[steps]]
name = "issue"
component = "issue.wasm"
needs = ["pick"]
for_each = "input.items"
concurrency = 2
[policy.identities.bot]
tools = ["pay"]
[policy.identities.alice]
approves = ["refund"]
[policy.gates.refund]
approvals = 1
deadline = "24h"
relax_after = { decisions = 20, max_override_rate = 0.05 }
[[policy.rules]]
name = "big"
on = "tool_call"
when = "input.amount > 10.0"
verdict = "require_approval"
gate = "refund"
"#;

#[test]
fn every_problem_in_a_mutated_workflow_comes_with_a_hint() {
    let good = Workflow::parse("wf.toml", RICH);
    assert!(good.is_ok(), "{good:?}");
    let lines: Vec<&str> = RICH.lines().collect();
    let mut mutants: Vec<String> = Vec::new();
    // Each line dropped, doubled, or with one character removed, doubled or swapped
    // for a quote, a bracket or a letter: syntax, type and meaning errors alike.
    for i in 0..lines.len() {
        let mut dropped = lines.clone();
        dropped.remove(i);
        mutants.push(dropped.join("\n"));
        let mut doubled = lines.clone();
        doubled.insert(i, lines[i]);
        mutants.push(doubled.join("\n"));
    }
    let chars: Vec<char> = RICH.chars().collect();
    for i in (0..chars.len()).step_by(3) {
        for with in [None, Some('"'), Some(']'), Some('X'), Some('0')] {
            let mut m = chars.clone();
            match with {
                None => {
                    m.remove(i);
                }
                Some(c) => m[i] = c,
            }
            mutants.push(m.into_iter().collect());
        }
    }
    let (mut rejected, mut without) = (0, Vec::new());
    for text in &mutants {
        let Err(errors) = Workflow::parse("wf.toml", text) else { continue };
        rejected += 1;
        without.extend(errors.0.into_iter().filter(|e| e.hint.is_none()).map(|e| e.message));
    }
    assert!(rejected > 500, "the mutations were rejected {rejected} times only");
    without.sort();
    without.dedup();
    assert!(without.is_empty(), "{} messages without a hint:\n{}", without.len(), without.join("\n"));
}

#[test]
fn steps_tools_and_identities_ask_for_outbound_http() {
    let wf = parse(
        r#"name = "egress"
[tools.lookup]
component = "lookup.wasm"
http = ["https://crm.example.com"]

[[steps]]
name = "pay"
component = "pay.wasm"
http = [{ url = "https://api.pay.test", methods = ["POST"], path = "/v1" }, "http://127.0.0.1:9000"]
"#,
    )
    .unwrap();
    assert_eq!(wf.tools["lookup"].http[0].url.as_str(), "https://crm.example.com");
    let pay = &wf.steps[0].http;
    assert_eq!((pay[0].methods.as_slice(), pay[0].path.as_deref()), (&["POST".to_string()][..], Some("/v1")));
    assert_eq!(pay[1].url.network(), Some("127.0.0.1/32".parse().unwrap()));
    let p = parse_policy("[identities.bot]\nhttp = [\"https://*.pay.test\"]\n").unwrap();
    assert_eq!(p.policy.identities["bot"].http[0].url.as_str(), "https://*.pay.test");
}

#[test]
fn bad_outbound_http_is_positioned_with_what_to_write() {
    let errors = parse(
        r#"name = "egress"
[[steps]]
name = "pay"
component = "pay.wasm"
http = ["api.pay.test", { url = "https://a.test", methods = ["get"] }, { url = "https://a.test", verb = "GET" }, 7]
"#,
    )
    .unwrap_err()
    .join("\n");
    assert!(
        errors.contains("wf.toml:5:9: step `pay` `http`: destination `api.pay.test`: write it as SCHEME://HOST"),
        "{errors}"
    );
    assert!(errors.contains("wf.toml:5:25: step `pay` `http`: `get` is not an HTTP method"), "{errors}");
    assert!(errors.contains("unknown field `verb`"), "{errors}");
    assert!(errors.contains("an `http` entry is a destination or a table"), "{errors}");
    assert!(errors.contains("hint: for example http = [\"https://api.example.com\"]"), "{errors}");
    let policy = parse_policy("[identities.bot]\nhttp = [\"https://api.pay.test/v1\"]\n").unwrap_err().join("\n");
    assert!(
        policy.contains(
            "policy.toml:2:9: identity `bot` `http`: destination `https://api.pay.test/v1`: a destination has no path"
        ),
        "{policy}"
    );
}
