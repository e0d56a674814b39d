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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cel::common::ast::{operators, CallExpr, ComprehensionExpr, EntryExpr, Expr as Node, LiteralValue};
use cel::common::types::{CelBytes, CelInt, CelList, CelMap, CelOptional, CelString, Kind};
use cel::common::value::{CowVal, Val};
use cel::objects::Key;
use cel::{ExecutionError, FunctionContext, IdedExpr};
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

/// Operations counted for a call of a function, ours (charging) or the standard
/// library's: the interpreter looks it up by name, which costs several times an operator.
const CALL_OPS: u64 = 8;
/// Operations counted for a list or map literal, which allocates (and, as the element of
/// `map` or `filter`, is copied again into the result).
const ALLOC_OPS: u64 = 12;
/// Units per unit of size of an element bound to a comprehension's variable: binding
/// copies it, until the next element.
const BIND_WEIGHT: u64 = 4;
/// Operations counted per element for a comprehension the interpreter runs in its
/// general way (`all`, `exists`, `exists_one`), which binds variables in a new scope for
/// each element, rather than by appending in place (`map`, `filter`).
const LOOP_OPS: u64 = 12;

/// A compiled expression with its source text (for messages and the plan).
#[derive(Clone)]
pub struct Expr {
    source: String,
    /// The parsed expression, rewritten to charge its evaluation (see [`meter`]).
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
        let mut next_id = shape.max_id + 1;
        meter(&mut ast, None, &mut next_id);
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
        let value = value.map_err(|e| format!("expression `{}`: {e}", self.source))?;
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

/// The host functions [`meter`] calls. Their names start with `@`, which no identifier
/// written in an expression can: only the rewrite calls them.
mod charge {
    /// `(range, per_item, reads)`: `per_item` per element of `range`, and its size as
    /// copied (each element is, when bound to the variable) and as read `reads` times
    /// (see [`super::Loop::reads`]), then `range`.
    pub const RANGE: &str = "@tether_range";
    /// `(value)` or `(value, ops)`: [`super::BUILD_WEIGHT`] per unit of the size of `value`,
    /// plus `ops`, then `value`.
    pub const BUILD: &str = "@tether_build";
    /// `(value)`: the size of `value`, then `value`.
    pub const READ: &str = "@tether_read";
    /// `(value)`: the right side of `in`: the size of a list, 1 for a map (a lookup).
    pub const IN: &str = "@tether_in";
    /// `(value)`: the operand of `size`: the size of a string or bytes, 1 for a list or a
    /// map (their length is known).
    pub const LEN: &str = "@tether_len";
}

/// Function namespaces of the standard library: a call on a name rooted at one
/// (`optional.of(x)`) calls the function of that name, so the name must stay as written.
const NAMESPACES: [&str; 1] = ["optional"];

/// The units spent by one evaluation.
struct Budget {
    limit: u64,
    spent: AtomicU64,
}

impl Budget {
    fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget { limit, spent: AtomicU64::new(0) })
    }

    fn exhausted(&self) -> bool {
        self.spent.load(Ordering::Relaxed) > self.limit
    }

    /// Units left before the budget is spent.
    fn left(&self) -> u64 {
        self.limit.saturating_sub(self.spent.load(Ordering::Relaxed))
    }

    fn spend(&self, units: u64) -> Result<(), ExecutionError> {
        let before = self.spent.load(Ordering::Relaxed);
        let after = before.saturating_add(units);
        self.spent.store(after, Ordering::Relaxed);
        if after > self.limit {
            return Err(ExecutionError::function_error("budget", format!("spent {after} of {} units", self.limit)));
        }
        Ok(())
    }

    /// A context with the standard library and the charging functions of this budget.
    fn context(self: &Arc<Self>) -> cel::Context<'static, 'static> {
        let mut ctx = cel::Context::default();
        // The argument sizes are measured only up to the units left: a larger one fails.
        let functions: [(&str, Cost); 5] = [
            (charge::RANGE, |args, cap| {
                let number = |i: usize| args.get(i).and_then(|n| n.downcast_ref::<CelInt>()).map_or(0, |n| *n.inner());
                let (per_item, reads) = (number(1).unsigned_abs(), number(2).unsigned_abs());
                // Each element is copied when bound to the variable, and maybe read whole.
                let whole = size(&*args[0], cap).saturating_mul(BIND_WEIGHT + reads);
                whole.saturating_add(length(&*args[0]).saturating_mul(per_item))
            }),
            (charge::BUILD, |args, cap| {
                let fixed =
                    args.get(1).and_then(|n| n.downcast_ref::<CelInt>()).map_or(0, |n| n.inner().unsigned_abs());
                size(&*args[0], cap / BUILD_WEIGHT + 1).saturating_mul(BUILD_WEIGHT).saturating_add(fixed)
            }),
            (charge::READ, |args, cap| size(&*args[0], cap)),
            (charge::IN, |args, cap| if args[0].downcast_ref::<CelMap>().is_some() { 1 } else { size(&*args[0], cap) }),
            (charge::LEN, |args, cap| {
                if args[0].downcast_ref::<CelString>().is_some() || args[0].downcast_ref::<CelBytes>().is_some() {
                    size(&*args[0], cap)
                } else {
                    1
                }
            }),
        ];
        for (name, cost) in functions {
            let budget = Arc::clone(self);
            let function: HostFunction = Box::new(move |ftx| {
                budget.spend(cost(&ftx.args, budget.left().saturating_add(1)))?;
                // Hand the first argument back as it came, borrowed or owned.
                match ftx.args.len() {
                    0 => Err(ftx.error("missing argument")),
                    _ => Ok(ftx.args.swap_remove(0)),
                }
            });
            // The names cannot clash with the standard library's: they start with `@`.
            ctx.add_function(name, function).expect("charging functions have names of their own");
        }
        ctx
    }
}

/// What a charging function charges for its arguments, given the units left (plus one):
/// the size of an argument is measured no further.
type Cost = fn(&[CowVal], u64) -> u64;

/// A function added to a [`cel::Context`] that sees its arguments as they are.
type HostFunction =
    Box<dyn for<'c, 'v> Fn(&mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError> + Send + Sync>;

/// The number of elements of a list or entries of a map; 0 for anything else.
fn length(v: &dyn Val) -> u64 {
    if let Some(list) = v.downcast_ref::<CelList>() {
        list.inner().len() as u64
    } else if let Some(map) = v.downcast_ref::<CelMap>() {
        map.inner().len() as u64
    } else {
        0
    }
}

/// The size of `v` (see the module documentation), counted up to a little past `cap`.
fn size(v: &dyn Val, cap: u64) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![v];
    while let Some(v) = pending.pop() {
        if total > cap {
            break;
        }
        total += 1;
        match v.get_type().kind() {
            Kind::String => total += v.downcast_ref::<CelString>().map_or(0, |s| s.inner().len() as u64 / STRING_UNIT),
            Kind::Bytes => total += v.downcast_ref::<CelBytes>().map_or(0, |b| b.inner().len() as u64 / STRING_UNIT),
            Kind::List => {
                for element in v.downcast_ref::<CelList>().map_or(&[][..], |list| list.inner()) {
                    if compound(element.as_ref()) {
                        pending.push(element.as_ref());
                    } else {
                        total += 1;
                    }
                }
            }
            Kind::Map => {
                for (key, value) in v.downcast_ref::<CelMap>().into_iter().flat_map(|map| map.inner()) {
                    pending.push(key.inner());
                    if compound(value.as_ref()) {
                        pending.push(value.as_ref());
                    } else {
                        total += 1;
                    }
                }
            }
            Kind::Opaque => pending.extend(v.downcast_ref::<CelOptional>().and_then(|o| o.inner())),
            _ => {}
        }
    }
    total
}

/// Whether the size of `v` may be more than 1.
fn compound(v: &dyn Val) -> bool {
    !matches!(v.get_type().kind(), Kind::Int | Kind::UInt | Kind::Double | Kind::Boolean | Kind::NullType)
}

/// What [`Expr::compile`] checks of a parsed expression, found without recursing.
#[derive(Default)]
struct Shape {
    /// The largest node id: the rewrite numbers its nodes past it.
    max_id: u64,
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
            shape.max_id = shape.max_id.max(e.id);
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

fn entry_values_mut(entry: &mut EntryExpr) -> Vec<&mut IdedExpr> {
    match entry {
        EntryExpr::MapEntry(e) => vec![&mut e.key, &mut e.value],
        EntryExpr::StructField(f) => vec![&mut f.value],
    }
}

/// The innermost comprehension around the node being rewritten.
struct Loop {
    /// The name its elements are bound to.
    var: String,
    /// Operations of its body that read an element whole (compare it, look in it): each
    /// costs at most the element's size, so they are charged with the range, once per
    /// element, rather than by a call on every evaluation.
    reads: u64,
}

impl Loop {
    /// Whether `e` is the element, or a field of it.
    fn holds(&self, e: &IdedExpr) -> bool {
        qualified_name_root(e) == Some(self.var.as_str())
    }
}

/// Rewrites `e` so that evaluating it charges the budget (see the module documentation
/// and [`charge`]); `inner` is the innermost comprehension whose body `e` is in. Returns
/// the number of operations evaluating `e` once takes, the bodies of its comprehensions
/// aside: they charge for themselves.
fn meter(e: &mut IdedExpr, inner: Option<&mut Loop>, next_id: &mut u64) -> u64 {
    // Each kind in a function of its own keeps the frames of this recursion small.
    let ops = match &mut e.expr {
        Node::Call(call) => meter_call(call, inner, next_id),
        Node::Comprehension(c) => meter_comprehension(c, inner, next_id),
        Node::List(list) => meter_parts(list.elements.iter_mut().collect(), inner, next_id),
        Node::Map(map) => {
            let parts = map.entries.iter_mut().flat_map(|entry| entry_values_mut(&mut entry.expr)).collect();
            meter_parts(parts, inner, next_id)
        }
        Node::Struct(s) => {
            let parts = s.entries.iter_mut().flat_map(|entry| entry_values_mut(&mut entry.expr)).collect();
            meter_parts(parts, inner, next_id)
        }
        Node::Select(select) => 1 + meter(&mut select.operand, inner, next_id),
        Node::Ident(_) | Node::Literal(_) | Node::Unspecified => 1,
    };
    ops + charge_built(e, next_id)
}

/// [`meter`] for a call.
fn meter_call(call: &mut CallExpr, mut inner: Option<&mut Loop>, next_id: &mut u64) -> u64 {
    let mut ops = 1;
    if let Some(target) = call.target.as_deref_mut() {
        ops += meter(target, inner.as_deref_mut(), next_id);
    }
    let mut args = Vec::with_capacity(call.args.len());
    for arg in &mut call.args {
        args.push(meter(arg, inner.as_deref_mut(), next_id));
    }
    ops += match args[..] {
        // One branch or the other runs.
        [cond, then, otherwise] if call.func_name == operators::CONDITIONAL => cond + then.max(otherwise),
        _ => args.iter().sum(),
    };
    // A function, unlike an operator (`_+_`, `!_`, `@in`), is looked up by name.
    if call.func_name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        ops += CALL_OPS - 1;
    }
    ops + charge_operands(call, inner, next_id)
}

/// [`meter`] for a comprehension.
fn meter_comprehension(c: &mut ComprehensionExpr, mut inner: Option<&mut Loop>, next_id: &mut u64) -> u64 {
    let mut ops = 1;
    ops += meter(&mut c.iter_range, inner.as_deref_mut(), next_id);
    ops += meter(&mut c.accu_init, inner, next_id);
    let mut body = Loop { var: c.iter_var.clone(), reads: 0 };
    ops += meter(&mut c.result, Some(&mut body), next_id);
    let in_place = appends_in_place(c);
    let mut per_item = meter(&mut c.loop_cond, Some(&mut body), next_id);
    per_item += match guarded_append(&mut c.loop_step) {
        // `filter`, or `map` with a filter: appending is charged when it happens, rather
        // than for every element.
        Some([guard, append, otherwise]) => {
            let guard = meter(guard, Some(&mut body), next_id);
            let otherwise = meter(otherwise, Some(&mut body), next_id);
            let append_ops = meter(append, Some(&mut body), next_id);
            charge_on_append(append, append_ops, next_id);
            1 + guard + otherwise
        }
        _ => meter(&mut c.loop_step, Some(&mut body), next_id),
    };
    if !in_place {
        per_item += LOOP_OPS;
    }
    ops + wrap(&mut c.iter_range, charge::RANGE, &[per_item, body.reads], next_id)
}

/// [`meter`] for the elements of a list, or the keys and values of a map.
fn meter_parts(parts: Vec<&mut IdedExpr>, mut inner: Option<&mut Loop>, next_id: &mut u64) -> u64 {
    let mut ops = 1 + ALLOC_OPS;
    for part in parts {
        ops += meter(part, inner.as_deref_mut(), next_id);
        if copies(part) {
            ops += wrap(part, charge::BUILD, &[], next_id);
        }
    }
    ops
}

/// Charges for what `e` builds, if it is a `+`; returns the operations added. It builds
/// a new list or string, unless it adds a number (`x + 1`), or it is the step of `map`,
/// `filter` or `exists_one`, adding to their accumulator (`@result`, a name no expression
/// can write): the interpreter appends those in place, and they charge for their
/// elements.
fn charge_built(e: &mut IdedExpr, next_id: &mut u64) -> u64 {
    let Node::Call(call) = &e.expr else { return 0 };
    let to_accumulator = matches!(call.args.first().map(|a| &a.expr), Some(Node::Ident(name)) if name.starts_with('@'));
    let number = call.args.iter().any(|arg| {
        matches!(arg.expr, Node::Literal(LiteralValue::Int(_) | LiteralValue::UInt(_) | LiteralValue::Double(_)))
    });
    if call.func_name == operators::ADD && call.target.is_none() && !to_accumulator && !number {
        wrap(e, charge::BUILD, &[], next_id)
    } else {
        0
    }
}

/// Whether the interpreter runs `c` by appending to a list in place (`map`, `filter`),
/// rather than in its slower, general way: as it does, a literal condition, an empty list
/// to start from, and a step adding a list to the accumulator, maybe behind a condition.
fn appends_in_place(c: &ComprehensionExpr) -> bool {
    let accumulator = |e: &IdedExpr| matches!(&e.expr, Node::Ident(name) if *name == c.accu_var);
    let appends = |e: &IdedExpr| {
        matches!(&e.expr, Node::Call(call) if call.func_name == operators::ADD
            && call.target.is_none()
            && matches!(call.args.as_slice(), [accu, list] if accumulator(accu) && matches!(list.expr, Node::List(_))))
    };
    let step = match &c.loop_step.expr {
        Node::Call(call) if call.func_name == operators::CONDITIONAL && call.target.is_none() => {
            matches!(call.args.as_slice(), [_, then, otherwise] if appends(then) && accumulator(otherwise))
        }
        _ => appends(&c.loop_step),
    };
    step && accumulator(&c.result)
        && matches!(c.loop_cond.expr, Node::Literal(_))
        && matches!(&c.accu_init.expr, Node::List(list) if list.elements.is_empty())
}

/// The guard, the append and the accumulator of a step `guard ? @result + [x] : @result`
/// (`filter`, `map` with a filter).
fn guarded_append(step: &mut IdedExpr) -> Option<[&mut IdedExpr; 3]> {
    let Node::Call(call) = &mut step.expr else { return None };
    if call.func_name != operators::CONDITIONAL || call.target.is_some() {
        return None;
    }
    let [guard, append, otherwise] = call.args.as_mut_slice() else { return None };
    let to_accumulator = |e: &IdedExpr| matches!(&e.expr, Node::Ident(name) if name.starts_with('@'));
    let appends = matches!(&append.expr, Node::Call(add) if add.func_name == operators::ADD
        && matches!(add.args.as_slice(), [accu, list] if to_accumulator(accu) && matches!(list.expr, Node::List(_))));
    (appends && to_accumulator(otherwise)).then_some([guard, append, otherwise])
}

/// Makes the elements that `append` (`@result + [x]`) adds charge `ops`, the operations
/// appending takes, on top of their size.
fn charge_on_append(append: &mut IdedExpr, ops: u64, next_id: &mut u64) {
    let Node::Call(add) = &mut append.expr else { return };
    let Some(Node::List(list)) = add.args.get_mut(1).map(|list| &mut list.expr) else { return };
    for element in &mut list.elements {
        match &mut element.expr {
            Node::Call(call) if call.func_name == charge::BUILD => {
                let ops = CelInt::from(i64::try_from(ops).unwrap_or(i64::MAX));
                call.args.push(IdedExpr { id: *next_id, expr: Node::Literal(LiteralValue::Int(ops)) });
                *next_id += 1;
            }
            _ => {
                wrap(element, charge::BUILD, &[ops + CALL_OPS], next_id);
            }
        }
    }
}

/// Charges for what `call` reads of its operands; returns the operations added. An
/// operand that is the element of the innermost comprehension, or a field of it, is
/// counted in its [`Loop::reads`] instead.
fn charge_operands(call: &mut CallExpr, mut inner: Option<&mut Loop>, next_id: &mut u64) -> u64 {
    let mut ops = 0;
    let mut charge = |e: &mut IdedExpr, function: &str, inner: Option<&mut Loop>| {
        if constant(e) {
            return;
        }
        match inner {
            Some(inner) if inner.holds(e) => inner.reads += 1,
            _ => ops += wrap(e, function, &[], next_id),
        }
    };
    match (call.func_name.as_str(), call.target.as_deref_mut(), call.args.as_mut_slice()) {
        (
            // Scalars only, or passing values through.
            operators::CONDITIONAL
            | operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::NOT_STRICTLY_FALSE
            | operators::NEGATE
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::OPT_SELECT
            // Charged on what it builds, by `meter`.
            | operators::ADD,
            ..
        ) => {}
        // Comparing stops at the end of the smaller operand: a literal bounds it, else one
        // operand is charged.
        (
            operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS,
            None,
            [left, right],
        ) => {
            if !constant(left) && !constant(right) {
                let left_is_element = inner.as_deref().is_some_and(|inner| inner.holds(left));
                charge(if left_is_element { left } else { right }, charge::READ, inner);
            }
        }
        (operators::IN, None, [needle, haystack]) => {
            charge(needle, charge::READ, inner.as_deref_mut());
            charge(haystack, charge::IN, inner);
        }
        (operators::INDEX | operators::OPT_INDEX, None, [_, key]) => charge(key, charge::READ, inner),
        ("size", Some(target), []) | ("size", None, [target]) => charge(target, charge::LEN, inner),
        (_, target, args) => {
            if let Some(target) = target {
                if !qualified_name_root(target).is_some_and(|root| NAMESPACES.contains(&root)) {
                    charge(target, charge::READ, inner.as_deref_mut());
                }
            }
            for arg in args {
                charge(arg, charge::READ, inner.as_deref_mut());
            }
        }
    }
    ops
}

/// Whether `e` evaluates to a value made of literals only, which the expression's length
/// bounds.
fn constant(e: &IdedExpr) -> bool {
    match &e.expr {
        Node::Literal(_) => true,
        Node::List(list) => list.elements.iter().all(constant),
        Node::Map(map) => map.entries.iter().all(|entry| entry_values(&entry.expr).into_iter().all(constant)),
        _ => false,
    }
}

/// Whether putting the value of `e` in a list or map copies it: it may be a value that
/// exists elsewhere (a variable, a field, an element) rather than one just computed.
fn copies(e: &IdedExpr) -> bool {
    match &e.expr {
        Node::Literal(_) | Node::List(_) | Node::Map(_) | Node::Struct(_) | Node::Comprehension(_) => false,
        Node::Call(call) => !matches!(
            call.func_name.as_str(),
            charge::BUILD
                | operators::LOGICAL_AND
                | operators::LOGICAL_OR
                | operators::LOGICAL_NOT
                | operators::NEGATE
                | operators::SUBSTRACT
                | operators::MULTIPLY
                | operators::DIVIDE
                | operators::MODULO
                | operators::EQUALS
                | operators::NOT_EQUALS
                | operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS
                | operators::IN
                | "size"
        ),
        Node::Ident(_) | Node::Select(_) | Node::Unspecified => true,
    }
}

/// Replaces `e` with `function(e, extra...)`; returns the operations added.
fn wrap(e: &mut IdedExpr, function: &str, extra: &[u64], next_id: &mut u64) -> u64 {
    let mut id = || {
        *next_id += 1;
        *next_id - 1
    };
    let mut args = vec![std::mem::take(e)];
    for &n in extra {
        let n = CelInt::from(i64::try_from(n).unwrap_or(i64::MAX));
        args.push(IdedExpr { id: id(), expr: Node::Literal(LiteralValue::Int(n)) });
    }
    *e = IdedExpr { id: id(), expr: Node::Call(CallExpr { func_name: function.to_string(), target: None, args }) };
    CALL_OPS
}

/// The first name of `a.b.c`, if `e` is such a name.
fn qualified_name_root(mut e: &IdedExpr) -> Option<&str> {
    loop {
        match &e.expr {
            Node::Ident(name) => return Some(name),
            Node::Select(select) if !select.test => e = &select.operand,
            _ => return None,
        }
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
            let scope =
                Scope { input: json!({"items": numbers(30_000), "text": "x".repeat(1 << 20)}), ..Scope::default() };
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
            let scope =
                Scope { input: json!({"items": numbers(30_000), "text": "x".repeat(1 << 20)}), ..Scope::default() };
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
            (result.is_ok(), budget.spent.load(Ordering::Relaxed))
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
