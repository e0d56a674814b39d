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
//! # Budget
//!
//! Fuel and wall time bound what guests do, not the host's own evaluation of
//! expressions: without a limit, comprehensions nested over a large run input
//! (`l.map(a, l.map(b, ...))`, a dedupe comparing every item with every other) or values
//! growing with it (`l.map(x, l + l)`) would stall the host or exhaust its memory. So an
//! evaluation may spend [`EVAL_BUDGET`] units. They are counted on the expression, not
//! by a clock, so that an evaluation runs out at the same point on every machine and on
//! every replay. Compiling rewrites the expression so that evaluating it charges:
//! - for a comprehension (`map`, `filter`, `all`, `exists`, `exists_one`), before it
//!   starts: per element, the operations its body evaluates, and the size of the
//!   elements (binding one to the variable copies it);
//! - for building a value (`+` on lists, strings or bytes, a list or map literal holding
//!   an existing value, an element that `map` or `filter` appends): [`BUILD_WEIGHT`] per
//!   unit of its size;
//! - for reading a whole value (comparing it, `in`, `size`, passing it to a function):
//!   its size.
//!
//! The size of a value is 1 for a scalar, 1 plus the sizes of its elements (or keys and
//! values) for a list (or a map), and 1 plus one per [`STRING_UNIT`] bytes for a string.
//! An evaluation that runs out fails with an error naming the expression and the budget,
//! whatever its value would have been (`error || true` is true in CEL). Comprehensions
//! nested more than [`MAX_LOOP_NESTING`] deep are refused when compiling.

mod meter;

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::Key;
use cel::IdedExpr;
use serde_json::Value;

use meter::{Budget, Shape};

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
/// Units one evaluation may spend (see the module documentation): a unit is about an
/// operation of the interpreter, so the budget is well under a second of work even in a
/// debug build. A dedupe comparing every item with every other,
/// `l.filter(i, l.filter(j, j == i).size() == 1)`, fits for up to 1,300 numbers.
pub const EVAL_BUDGET: u64 = 20_000_000;
/// Units per unit of size charged for building a value: what is built may be held until
/// the evaluation ends, so it costs more than reading.
pub const BUILD_WEIGHT: u64 = 8;
/// Bytes of a string or bytes value per unit of its size.
pub const STRING_UNIT: u64 = 32;

/// A compiled expression with its source text (for messages and the plan).
#[derive(Clone)]
pub struct Expr {
    source: String,
    /// The parsed expression, rewritten to charge its evaluation (see `meter.rs`).
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
        let mut ast = cel::parser::Parser::new().parse(source).map_err(|e| {
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
        meter::rewrite(&mut ast, &shape);
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
        self.run(&Budget::new(EVAL_BUDGET), variables)
    }

    /// Evaluates with the given variables (policy rules, gate conditions).
    pub fn eval_vars(&self, vars: &serde_json::Map<String, Value>) -> Result<Value, String> {
        self.run(&Budget::new(EVAL_BUDGET), vars.iter().map(|(name, value)| (name.clone(), to_cel(value))).collect())
    }

    /// Like [`Expr::eval_vars`], but the value must be true or false.
    pub fn eval_vars_bool(&self, vars: &serde_json::Map<String, Value>) -> Result<bool, String> {
        match self.eval_vars(vars)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expression `{}` must be true or false, but gave {}", self.source, kind(&other))),
        }
    }

    fn run(&self, budget: &Arc<Budget>, variables: Vec<(String, cel::Value)>) -> Result<Value, String> {
        let mut ctx = budget.context();
        for (name, value) in variables {
            ctx.add_variable_from_value(name, value);
        }
        let value = cel::Value::resolve(&self.ast, &ctx);
        // An error from an exhausted budget may have been absorbed (`error || true` is
        // true in CEL): running out is an error whatever the value.
        if budget.exhausted() {
            return Err(format!(
                "expression `{}`: exceeded its evaluation budget of {} steps (nested loops or growing values \
                 over a large input); simplify it or move the work into a step",
                self.source, budget.limit
            ));
        }
        let value = value.map_err(|e| format!("expression `{}`: {}", self.source, describe(&e)))?;
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

/// An evaluation error in words: the `cel` crate's messages show values as Rust debug
/// text (`Int(5)`, `String("x")`).
fn describe(e: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    match e {
        E::DivisionByZero(a) => format!("{} divided by zero", shown(a)),
        E::RemainderByZero(a) => format!("the remainder of {} by zero", shown(a)),
        E::Overflow(op, a, b) => format!("{op} of {} and {} overflows", shown(a), shown(b)),
        E::IndexOutOfBounds(i) => format!("index {} is out of bounds", shown(i)),
        E::UnsupportedBinaryOperator(op, a, b) => format!("cannot {op} {} and {}", shown(a), shown(b)),
        E::ValuesNotComparable(a, b) => format!("{} cannot be compared with {}", shown(a), shown(b)),
        E::UnsupportedIndex(i, target) => format!("{} cannot index {}", shown(i), shown(target)),
        E::UnsupportedKeyType(k) => format!("{} cannot be a map key", shown(k)),
        E::UnsupportedTargetType { target } => format!("{} is not a valid argument", shown(target)),
        E::NotSupportedAsMethod { method, target } => format!("`{method}` is not a method of {}", shown(target)),
        E::DuplicateKey(k) => format!("the key {} appears twice", shown(k)),
        E::UndeclaredReference(name) => format!("`{name}` is not defined here"),
        E::FunctionError { function, message } => {
            format!("{function}(): {}", message.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        }
        other => other.to_string(),
    }
}

/// A CEL value for a message: its type and, if short, its JSON text.
fn shown(v: &cel::Value) -> String {
    let text = v.json().map(|j| j.to_string()).unwrap_or_default();
    let text = if text.len() > 40 { format!("{}...", &text[..text.floor_char_boundary(40)]) } else { text };
    match text.is_empty() {
        true => format!("a {}", v.type_of()),
        false => format!("{} {text}", v.type_of()),
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
mod tests;
