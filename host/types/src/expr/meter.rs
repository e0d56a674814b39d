//! The rewrite that makes evaluating an expression charge its budget, and the charging
//! functions it calls (see the budget section of the parent module's documentation).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cel::common::ast::{operators, CallExpr, ComprehensionExpr, EntryExpr, Expr as Node, LiteralValue};
use cel::common::types::{CelBytes, CelInt, CelList, CelMap, CelOptional, CelString, Kind};
use cel::common::value::{CowVal, Val};
use cel::{ExecutionError, FunctionContext, IdedExpr};

use super::{BUILD_WEIGHT, STRING_UNIT};

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
pub(super) struct Budget {
    pub(super) limit: u64,
    spent: AtomicU64,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget { limit, spent: AtomicU64::new(0) })
    }

    /// Units spent so far.
    #[cfg(test)]
    pub(super) fn spent(&self) -> u64 {
        self.spent.load(Ordering::Relaxed)
    }

    pub(super) fn exhausted(&self) -> bool {
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
    pub(super) fn context(self: &Arc<Self>) -> cel::Context<'static, 'static> {
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
pub(super) struct Shape {
    /// The largest node id: the rewrite numbers its nodes past it.
    pub(super) max_id: u64,
    /// How deep nodes nest.
    pub(super) depth: usize,
    /// How deep comprehensions nest: one inside the body of another is one deeper.
    pub(super) loops: usize,
}

impl Shape {
    pub(super) fn of(e: &IdedExpr) -> Shape {
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
/// Rewrites a parsed expression, of the given shape, to charge its evaluation.
pub(super) fn rewrite(ast: &mut IdedExpr, shape: &Shape) {
    let mut next_id = shape.max_id + 1;
    meter(ast, None, &mut next_id);
}

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
