use super::*;
use serde_json::json;

fn scope() -> Scope {
    let mut steps = serde_json::Map::new();
    steps.insert("classify".into(), json!({"category": "billing", "score": 3}));
    steps.insert("draft-reply".into(), json!({"text": "hi"}));
    Scope { input: json!({"ticket": "refund please", "sources": ["a", "b"]}), steps, ..Scope::default() }
}

#[test]
fn builds_inputs_from_run_input_and_step_outputs() {
    let e = Expr::compile(r#"{"text": input.ticket, "cat": steps.classify.category, "double": steps.classify.score * 2, "reply": steps["draft-reply"].text}"#).unwrap();
    assert_eq!(
        e.eval(&scope()).unwrap(),
        json!({"text": "refund please", "cat": "billing", "double": 6, "reply": "hi"})
    );
}

#[test]
fn conditions_and_lists_are_typed() {
    assert!(Expr::compile("steps.classify.category == 'billing'").unwrap().eval_bool(&scope()).unwrap());
    assert!(!Expr::compile("has(steps.refund)").unwrap().eval_bool(&scope()).unwrap());
    let err = Expr::compile("input.ticket").unwrap().eval_bool(&scope()).unwrap_err();
    assert!(err.contains("must be true or false, but gave a string"), "{err}");
    assert_eq!(Expr::compile("input.sources").unwrap().eval_list(&scope()).unwrap().len(), 2);
    let err = Expr::compile("input.ticket").unwrap().eval_list(&scope()).unwrap_err();
    assert!(err.contains("must give a list"), "{err}");
}

#[test]
fn missing_fields_fail_with_the_expression_text() {
    let err = Expr::compile("steps.classify.nope + 1").unwrap().eval(&scope()).unwrap_err();
    assert!(err.starts_with("expression `steps.classify.nope + 1`:"), "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn item_index_and_loop_are_visible() {
    let s = Scope { item: Some((json!("b"), 1)), in_loop: Some((2, json!({"test": {"ok": false}}))), ..scope() };
    let e = Expr::compile("[item, index, iteration, previous.test.ok]").unwrap();
    assert_eq!(e.eval(&s).unwrap(), json!(["b", 1, 2, false]));
}

#[test]
fn bad_expressions_are_refused_without_panicking() {
    assert!(Expr::compile("input.x > 1 &&").unwrap_err().contains("1:15"));
    assert!(Expr::compile("").unwrap_err().contains("empty"));
    let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    assert!(Expr::compile(&deep).unwrap_err().contains("nests"));
    assert!(Expr::compile(&"1 + ".repeat(2000)).unwrap_err().contains("limit"));
    // Compiling and evaluating recurse per operation: a long chain is refused rather
    // than overflowing the stack.
    let chain = format!("1{}", "+1".repeat(2000));
    assert!(Expr::compile(&chain).unwrap_err().contains("nests operations more than 200 deep"));
    assert!(Expr::compile(&format!("1{}", "+1".repeat(150))).is_ok());
    // Brackets inside strings do not count.
    assert!(Expr::compile(&format!("'{}'", "(".repeat(100))).is_ok());
}

/// `[0, 1, ..., n - 1]` as JSON.
fn numbers(n: usize) -> Value {
    Value::Array((0..n as i64).map(|i| json!(i)).collect())
}

fn with_items(items: Value) -> Scope {
    Scope { input: json!({ "items": items }), ..Scope::default() }
}

/// Evaluates `source` over `scope`, printing how long it took.
fn timed(source: &str, scope: &Scope) -> Result<Value, String> {
    let expr = Expr::compile(source).unwrap();
    let start = std::time::Instant::now();
    let result = expr.eval(scope);
    let outcome = if result.is_ok() { "gave a value" } else { "failed" };
    println!("{:>8.1?} {outcome}: {source}", start.elapsed());
    result
}

fn assert_out_of_budget(result: Result<Value, String>, source: &str) {
    let err = result.unwrap_err();
    assert!(
        err.starts_with(&format!("expression `{source}`: exceeded its evaluation budget of {EVAL_BUDGET} steps")),
        "{err}"
    );
}

/// The same expression and variables evaluated from a compiled `cel::Program`, as
/// expressions were evaluated before the budget: the value, or the error message.
fn from_program(source: &str, vars: &serde_json::Map<String, Value>) -> Result<Value, String> {
    let program = cel::Program::compile(source).map_err(|e| e.to_string())?;
    let mut ctx = cel::Context::default();
    for (name, value) in vars {
        ctx.add_variable_from_value(name.as_str(), to_cel(value));
    }
    // The same error, in the words `Expr` uses for it.
    let value = program.execute(&ctx).map_err(|e| describe(&e))?;
    Ok(value.json().unwrap())
}

#[test]
fn comprehensions_nested_too_deep_are_refused_when_compiled() {
    let list = "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]";
    let mut source = "h".to_string();
    for var in ["g", "f", "e", "d", "c", "b", "a"] {
        source = format!("{list}.map({var}, {source})");
    }
    source = format!("{list}.map(h, {source})");
    let err = Expr::compile(&source).unwrap_err();
    assert!(err.contains("more than 3 deep"), "{err}");
    let four = "input.items.map(a, a.map(b, b.filter(c, c.exists(d, d > 0))))";
    assert!(Expr::compile(four).unwrap_err().contains("more than 3 deep"));
    // Three deep, and loops one after the other, are fine.
    Expr::compile("input.items.map(a, a.map(b, b.filter(c, c > 0)))").unwrap();
    Expr::compile("input.items.map(a, a).filter(b, b > 0).map(c, c).exists(d, d > 0).size()").unwrap();
}

#[test]
fn loops_nested_over_a_large_input_run_out_of_budget() {
    // 100 x 100 x 100: a million iterations.
    let source = "input.items.map(a, input.items.map(b, input.items.map(c, a + b + c)))";
    assert_out_of_budget(timed(source, &with_items(numbers(100))), source);
}

#[test]
fn a_dedupe_over_a_large_input_runs_out_of_budget() {
    let source = "input.items.filter(i, input.items.filter(j, j == i).size() == 1)";
    assert_out_of_budget(timed(source, &with_items(numbers(30_000))), source);
    // Over a thousand items it fits.
    let value = timed(source, &with_items(numbers(1_000))).unwrap();
    assert_eq!(value, numbers(1_000));
}

#[test]
fn growing_values_run_out_of_budget() {
    for source in [
        "input.items.map(x, input.items + input.items)",
        "input.items.map(x, [input.items, input.items])",
        "input.items.map(x, {'a': input.items})",
        "input.items.map(x, input.text + input.text)",
    ] {
        let scope = Scope { input: json!({"items": numbers(30_000), "text": "x".repeat(1 << 20)}), ..Scope::default() };
        assert_out_of_budget(timed(source, &scope), source);
    }
}

#[test]
fn comparing_whole_values_over_a_large_input_runs_out_of_budget() {
    for source in [
        "input.items.filter(x, x in input.items)",
        "input.items.map(x, input.items == input.items)",
        "input.items.map(x, size(input.text))",
        "input.items.map(x, input.text.startsWith(input.text))",
    ] {
        let scope = Scope { input: json!({"items": numbers(30_000), "text": "x".repeat(1 << 20)}), ..Scope::default() };
        assert_out_of_budget(timed(source, &scope), source);
    }
}

#[test]
fn running_out_is_an_error_even_when_the_value_would_not_need_it() {
    // `error || true` is true in CEL, and `exists` passes over an element that fails.
    let scope = with_items(numbers(30_000));
    for source in [
        "input.items.map(x, input.items + input.items).size() > 0 || true",
        "[0, 1].exists(i, i == 0 ? input.items.map(x, input.items + input.items).size() > 0 : true)",
    ] {
        assert_out_of_budget(timed(source, &scope), source);
    }
}

#[test]
fn the_budget_is_spent_the_same_way_every_time() {
    let expr = Expr::compile("input.items.filter(i, input.items.filter(j, j == i).size() == 1)").unwrap();
    let input = vec![("input".to_string(), to_cel(&json!({"items": numbers(100)})))];
    let spend = |limit| {
        let budget = Budget::new(limit);
        let result = expr.run(&budget, input.clone());
        (result.is_ok(), budget.spent())
    };
    let (ok, needed) = spend(EVAL_BUDGET);
    assert!(ok);
    assert_eq!(spend(needed), (true, needed));
    assert!(!spend(needed - 1).0);
}

#[test]
fn the_charging_functions_cannot_be_written() {
    for source in ["@tether_read(1)", "@result", "[1].map(x, @result)", "@in([1], 1)"] {
        assert!(Expr::compile(source).is_err(), "{source}");
    }
}

#[test]
fn ordinary_expressions_give_what_they_gave_before() {
    let vars = match json!({
        "input": {
            "ticket": "refund please", "amount": 1200.0, "risky": true, "items": [3, 1, 2, 3], "question": "why",
            "tags": ["a", "b", "c"], "objs": [{"id": 1, "tag": "x"}, {"id": 2, "tag": "y"}, {"id": 1, "tag": "z"}],
        },
        "steps": {
            "classify": {"category": "billing", "score": 3, "subject": "s", "urgency": 2, "body": "b"},
            "draft-reply": {"text": "hi"},
            "work": [{"tag": "a", "trail": [1, 2]}, {"tag": "b", "trail": [3]}],
            "test": {"passed": false, "failures": ["f"]},
        },
        "item": "b", "index": 1, "iteration": 2, "previous": {"try": {"n": 4}},
        "tool": "payments", "effect": "external", "step": "assess", "output": {"amount": 150.0},
    }) {
        Value::Object(vars) => vars,
        _ => unreachable!(),
    };
    let sources = [
        // Expressions like those of the example workflows.
        "'draft-reply' in steps ? steps['draft-reply'] : steps.escalate",
        "iteration == 1 ? {'task': steps.classify.subject} : {'task': steps.classify.subject, 'failures': steps.test.failures}",
        "tool == 'payments' && effect == 'external' && input.amount > 1000.0",
        "output.amount > 100.0",
        "{'mode': 'echo', 'n': iteration, 'before': has(previous.try) ? previous.try.n : 0}",
        "{'mode': 'echo', 'saw': steps.map(k, k).size()}",
        "{'n': 100, 'trail': steps.work.map(r, r.trail[0]), 'spin': input.amount}",
        "{'mode': 'sleep', 'ms': 400 - index * 100, 'tag': item}",
        "{'mode': 'echo', 'x': steps.classify.missing * 2}",
        // Comprehensions, and the operations the budget charges.
        "input.items.map(x, x * 2)",
        "input.items.map(x, x + 1).map(x, 1.5 + double(x))",
        "input.items.map(x, x > 1, x * 10)",
        "input.items.filter(x, x > 1)",
        "input.items.filter(i, input.items.filter(j, j == i).size() == 1)",
        "input.objs.filter(o, input.objs.filter(p, p.id == o.id).size() == 1).map(o, o.tag)",
        "input.objs.map(o, {'key': o.id, 'all': input.tags, 'o': o})",
        "input.items.all(x, x > 0)",
        "input.items.exists(x, x == 2)",
        "input.items.exists_one(x, x == 3)",
        "input.items.exists_one(x, x == 2)",
        "input.tags.map(t, t + '!').filter(t, t != 'b!')",
        "input.tags.map(t, [t, input.ticket + ' ' + t])",
        "input.items + input.items + [4]",
        "input.ticket + ' / ' + steps.classify.category",
        "size(input.ticket) + input.tags.size() + size(input.objs)",
        "input.ticket.contains('refund') && input.ticket.startsWith('re') && input.ticket.matches('^r.*e$')",
        "'b' in input.tags && !('z' in input.tags) && 'category' in steps.classify",
        "input.objs[1].tag == 'y' && steps['draft-reply'].text == 'hi'",
        "input.objs.map(o, o.tag).exists(t, t in input.tags)",
        "steps.work.map(w, w.trail.map(t, t * 2).filter(t, t > 2))",
        "string(input.items.size()) + string(iteration)",
        "optional.of(input.amount).value() + 1.0",
        "type(input.tags) == list && dyn(input.items)[0] == 3",
        "[1, 2, 3] == [1, 2, 3] && {'a': [1]} != {'a': [2]} && 'abc' < 'abd'",
        // Errors.
        "input.items.map(x, 10 / (x - 1))",
        "input.tags.map(x, x * 2)",
        "steps.classify.nope + 1",
        "input.objs.all(o, o.missing)",
    ];
    for source in sources {
        let before = from_program(source, &vars);
        let after = Expr::compile(source)
            .unwrap()
            .eval_vars(&vars)
            .map_err(|e| e.strip_prefix(&format!("expression `{source}`: ")).unwrap_or(&e).to_string());
        assert_eq!(after, before, "{source}");
    }
}

#[test]
fn errors_inside_all_and_exists_keep_their_meaning() {
    let vars = serde_json::Map::new();
    let eval = |source: &str| Expr::compile(source).unwrap().eval_vars(&vars);
    // An element that fails is passed over when another decides the result.
    assert_eq!(eval("[1, 0].exists(x, 1 / x == 1)").unwrap(), json!(true));
    assert_eq!(eval("[0, 1].exists(x, 1 / x == 1)").unwrap(), json!(true));
    assert_eq!(eval("[0, 2].all(x, 1 / x == 1)").unwrap(), json!(false));
    // Otherwise the error is the result.
    let err = eval("[0].all(x, 1 / x == 1)").unwrap_err();
    assert!(err.contains("divided by zero"), "{err}");
    assert!(eval("[1, 0].all(x, 1 / x == 1)").is_err());
    assert!(eval("[0, 2].exists(x, 1 / x == 1)").is_err());
    assert!(eval("[0].exists_one(x, 1 / x == 1)").is_err());
    for source in [
        "[1, 0].exists(x, 1 / x == 1)",
        "[0, 1].exists(x, 1 / x == 1)",
        "[0, 2].all(x, 1 / x == 1)",
        "[0].all(x, 1 / x == 1)",
        "[1, 0].all(x, 1 / x == 1)",
        "[0, 2].exists(x, 1 / x == 1)",
        "[0].exists_one(x, 1 / x == 1)",
    ] {
        let after = eval(source).map_err(|e| e.strip_prefix(&format!("expression `{source}`: ")).unwrap().to_string());
        assert_eq!(after, from_program(source, &vars), "{source}");
    }
}

#[test]
fn evaluation_errors_read_as_words_not_rust_debug_text() {
    let cases = [
        ("1 / 0", "int 1 divided by zero"),
        ("[1, 2][5]", "index int 5 is out of bounds"),
        ("input.ticket + 1", "cannot add string \"refund please\" and int 1"),
        (
            "input.ticket.matches('[')",
            "matches(): '[' not a valid regex: regex parse error: [ ^ error: unclosed character class",
        ),
        ("nope", "`nope` is not defined here"),
    ];
    for (source, expected) in cases {
        let err = Expr::compile(source).unwrap().eval(&scope()).unwrap_err();
        assert_eq!(err, format!("expression `{source}`: {expected}"));
    }
}
