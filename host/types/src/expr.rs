//! Expressions in workflows: CEL (the Common Expression Language), through the `cel`
//! crate. They build step inputs (`input`), decide whether a step runs (`when`), pick a
//! route, list the items of a `for_each`, end a loop (`until`) and shape the run output.
//!
//! Expressions see JSON values only:
//! - `input`: the run input;
//! - `steps`: the outputs of the steps that completed (a skipped step is absent, so
//!   `has(steps.refund)` tells whether it ran); names with `-` are written `steps["draft-reply"]`;
//! - `item` and `index` inside a `for_each`;
//! - `iteration` (from 1) and `previous` (the outputs of the iteration before, `{}` in
//!   the first) inside a loop.
//!
//! Evaluation is pure and deterministic (no clock, no I/O), so an expression evaluated
//! again on resume gives what it gave the first time.
//!
//! Comprehensions (`map`, `filter`, `all`, `exists`, `exists_one`) nested more than
//! [`MAX_LOOP_NESTING`] deep are refused when compiling: each level multiplies the work
//! by the size of what it iterates over.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr as Node};
use cel::objects::Key;
use cel::IdedExpr;
use serde_json::Value;

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest bracket nesting accepted. The parser recurses per level; deeper input could
/// overflow the host's stack instead of failing cleanly.
pub const MAX_NESTING: usize = 24;
/// Deepest nesting of operations accepted (`a + b + c` nests two `+`): compiling and
/// evaluating recurse per level.
pub const MAX_DEPTH: usize = 200;
/// Deepest nesting of comprehensions (`map`, `filter`, `all`, `exists`, `exists_one`)
/// accepted: each level multiplies the work by the size of what it iterates over.
pub const MAX_LOOP_NESTING: usize = 3;

/// A compiled expression with its source text (for messages and the plan).
#[derive(Clone)]
pub struct Expr {
    source: String,
    /// The parsed expression.
    ast: Arc<IdedExpr>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// The variables an expression is evaluated with.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// The run input.
    pub input: Value,
    /// Outputs of completed steps, by step name.
    pub steps: serde_json::Map<String, Value>,
    /// The current item and its index, inside a `for_each`.
    pub item: Option<(Value, usize)>,
    /// The iteration and the previous iteration's outputs, inside a loop.
    pub in_loop: Option<(u32, Value)>,
}

impl Expr {
    /// Compiles `source`; the error says what is wrong with it.
    pub fn compile(source: &str) -> Result<Expr, String> {
        if source.trim().is_empty() {
            return Err("the expression is empty".into());
        }
        if source.len() > MAX_LEN {
            return Err(format!("the expression is {} bytes long; the limit is {MAX_LEN}", source.len()));
        }
        if nesting(source) > MAX_NESTING {
            return Err(format!("the expression nests brackets more than {MAX_NESTING} deep"));
        }
        let ast = cel::parser::Parser::new().parse(source).map_err(|e| {
            // The parser's message repeats the expression with a caret; keep its first line.
            let text = e.to_string();
            text.lines().next().unwrap_or("syntax error").trim_start_matches("ERROR: <input>:").to_string()
        })?;
        let shape = Shape::of(&ast);
        if shape.depth > MAX_DEPTH {
            return Err(format!("the expression nests operations more than {MAX_DEPTH} deep"));
        }
        if shape.loops > MAX_LOOP_NESTING {
            return Err(format!(
                "the expression nests `map`, `filter`, `all`, `exists` or `exists_one` more than {MAX_LOOP_NESTING} deep"
            ));
        }
        Ok(Expr { source: source.to_string(), ast: Arc::new(ast) })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to a JSON value; the error names the expression and what went wrong.
    pub fn eval(&self, scope: &Scope) -> Result<Value, String> {
        let mut variables = vec![
            ("input".to_string(), to_cel(&scope.input)),
            ("steps".to_string(), to_cel(&Value::Object(scope.steps.clone()))),
        ];
        if let Some((item, index)) = &scope.item {
            variables.push(("item".into(), to_cel(item)));
            variables.push(("index".into(), cel::Value::Int(*index as i64)));
        }
        if let Some((iteration, previous)) = &scope.in_loop {
            variables.push(("iteration".into(), cel::Value::Int(i64::from(*iteration))));
            variables.push(("previous".into(), to_cel(previous)));
        }
        self.run(variables)
    }

    /// Evaluates with the given variables (policy rules, gate conditions).
    pub fn eval_vars(&self, vars: &serde_json::Map<String, Value>) -> Result<Value, String> {
        self.run(vars.iter().map(|(name, value)| (name.clone(), to_cel(value))).collect())
    }

    /// Like [`Expr::eval_vars`], but the value must be true or false.
    pub fn eval_vars_bool(&self, vars: &serde_json::Map<String, Value>) -> Result<bool, String> {
        match self.eval_vars(vars)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expression `{}` must be true or false, but gave {}", self.source, kind(&other))),
        }
    }

    fn run(&self, variables: Vec<(String, cel::Value)>) -> Result<Value, String> {
        let mut ctx = cel::Context::default();
        for (name, value) in variables {
            ctx.add_variable_from_value(name, value);
        }
        let value = cel::Value::resolve(&self.ast, &ctx).map_err(|e| format!("expression `{}`: {e}", self.source))?;
        value.json().map_err(|e| format!("expression `{}`: its value cannot be JSON: {e}", self.source))
    }

    /// Evaluates to a boolean; anything else is an error.
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, String> {
        match self.eval(scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expression `{}` must be true or false, but gave {}", self.source, kind(&other))),
        }
    }

    /// Evaluates to a list; anything else is an error.
    pub fn eval_list(&self, scope: &Scope) -> Result<Vec<Value>, String> {
        match self.eval(scope)? {
            Value::Array(items) => Ok(items),
            other => Err(format!("expression `{}` must give a list, but gave {}", self.source, kind(&other))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// What [`Expr::compile`] checks of a parsed expression, found without recursing.
#[derive(Default)]
struct Shape {
    /// How deep nodes nest.
    depth: usize,
    /// How deep comprehensions nest: one inside the body of another is one deeper.
    loops: usize,
}

impl Shape {
    fn of(e: &IdedExpr) -> Shape {
        let mut shape = Shape::default();
        // Nodes to visit, with their depth and the comprehensions whose body they are in.
        let mut pending = vec![(e, 1, 0)];
        while let Some((e, depth, loops)) = pending.pop() {
            shape.depth = shape.depth.max(depth);
            let mut push = |child, loops| pending.push((child, depth + 1, loops));
            match &e.expr {
                Node::Call(call) => call.target.iter().map(|t| &**t).chain(&call.args).for_each(|a| push(a, loops)),
                Node::Comprehension(c) => {
                    shape.loops = shape.loops.max(loops + 1);
                    push(&c.iter_range, loops);
                    push(&c.accu_init, loops);
                    [&c.loop_cond, &c.loop_step, &c.result].into_iter().for_each(|b| push(b, loops + 1));
                }
                Node::List(list) => list.elements.iter().for_each(|e| push(e, loops)),
                Node::Map(map) => {
                    map.entries.iter().flat_map(|entry| entry_values(&entry.expr)).for_each(|e| push(e, loops))
                }
                Node::Struct(s) => {
                    s.entries.iter().flat_map(|entry| entry_values(&entry.expr)).for_each(|e| push(e, loops))
                }
                Node::Select(select) => push(&select.operand, loops),
                Node::Ident(_) | Node::Literal(_) | Node::Unspecified => {}
            }
        }
        shape
    }
}

fn entry_values(entry: &EntryExpr) -> Vec<&IdedExpr> {
    match entry {
        EntryExpr::MapEntry(e) => vec![&e.key, &e.value],
        EntryExpr::StructField(f) => vec![&f.value],
    }
}

/// Deepest nesting of `(`, `[` and `{` outside string literals.
fn nesting(source: &str) -> usize {
    let (mut depth, mut max, mut quote, mut escaped) = (0usize, 0usize, None, false);
    for c in source.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    max
}

/// JSON to CEL. Integers become CEL `int` (not `uint`) so `x * 2` works on JSON numbers.
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let map: HashMap<Key, cel::Value> =
                o.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            cel::Value::Map(map.into())
        }
    }
}

#[cfg(test)]
mod tests {
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

    /// The same expression and variables evaluated from a compiled `cel::Program`, as
    /// expressions were evaluated before: the value, or the error message.
    fn from_program(source: &str, vars: &serde_json::Map<String, Value>) -> Result<Value, String> {
        let program = cel::Program::compile(source).map_err(|e| e.to_string())?;
        let mut ctx = cel::Context::default();
        for (name, value) in vars {
            ctx.add_variable_from_value(name.as_str(), to_cel(value));
        }
        let value = program.execute(&ctx).map_err(|e| e.to_string())?;
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
            // Comprehensions, and operations on whole values.
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
        assert!(err.to_lowercase().contains("division by zero"), "{err}");
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
            let after =
                eval(source).map_err(|e| e.strip_prefix(&format!("expression `{source}`: ")).unwrap().to_string());
            assert_eq!(after, from_program(source, &vars), "{source}");
        }
    }
}
