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
