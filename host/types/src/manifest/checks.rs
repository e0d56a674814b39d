//! Checks of the parts of a manifest that stand alone: budgets, directory and env grants,
//! component references. Each problem goes to `err` with its span.

use std::ops::Range;

use toml::Spanned;

use super::{ComponentRef, DirSpec, MAX_MEMORY};
use crate::budget::BudgetSpec;

pub(super) fn check_dirs(
    dirs: &[Spanned<DirSpec>],
    err: &mut impl FnMut(Range<usize>, String, Option<&str>),
) -> Vec<DirSpec> {
    for d in dirs {
        if !d.get_ref().guest.starts_with('/') {
            err(
                d.span(),
                format!("guest path `{}` must be absolute", d.get_ref().guest),
                Some("for example guest = \"/data\""),
            );
        }
    }
    dirs.iter().map(|d| d.get_ref().clone()).collect()
}

pub(super) fn check_env(
    env: &[Spanned<String>],
    err: &mut impl FnMut(Range<usize>, String, Option<&str>),
) -> Vec<String> {
    for e in env {
        if e.get_ref().is_empty() || !e.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            err(
                e.span(),
                format!("`{}` is not an environment variable name", e.get_ref()),
                Some("use letters, digits and `_`, for example API_URL"),
            );
        }
    }
    env.iter().map(|e| e.get_ref().clone()).collect()
}

/// The outbound HTTP a step, tool or identity lists: each a destination's text, or a
/// table with `url`, `methods` and `path`.
pub(super) fn check_http(
    http: &[Spanned<toml::Value>],
    whose: &str,
    in_policy: bool,
    err: &mut impl FnMut(Range<usize>, String, Option<&str>),
) -> Vec<crate::egress::HttpGrant> {
    const HINT: &str = "for example http = [\"https://api.example.com\"], or \
                        [{ url = \"https://api.example.com\", methods = [\"GET\"], path = \"/v1\" }]";
    let mut grants = Vec::new();
    for h in http {
        let grant = match h.get_ref() {
            toml::Value::String(text) => text.parse().map(|url| crate::egress::HttpGrant {
                url,
                methods: Vec::new(),
                path: None,
                idempotency_key: true,
                credential: None,
            }),
            toml::Value::Table(_) => h.get_ref().clone().try_into::<crate::egress::HttpGrant>().map_err(|e| {
                e.to_string().lines().next().unwrap_or_default().trim_start_matches("TOML parse error: ").to_string()
            }),
            _ => Err("an `http` entry is a destination or a table".to_string()),
        }
        .and_then(|g| g.check().map(|()| g));
        match grant {
            Ok(g) if g.credential.is_some() && !in_policy => err(
                h.span(),
                format!("{whose} `http`: a credential is bound to a destination by the policy, not the workflow"),
                Some("move `credential` to the same destination under [identities.NAME] in the policy"),
            ),
            Ok(g) => grants.push(g),
            Err(m) => err(h.span(), format!("{whose} `http`: {m}"), Some(HINT)),
        }
    }
    grants
}

pub(super) fn component_ref(
    c: &Spanned<String>,
    err: &mut impl FnMut(Range<usize>, String, Option<&str>),
) -> ComponentRef {
    if c.get_ref().trim().is_empty() {
        err(c.span(), "`component` is empty".into(), Some("give the path of a .wasm component"));
    }
    if crate::plugin_ref::split(c.get_ref()).is_some() {
        if let Err(e) = crate::plugin_ref::parse(c.get_ref()) {
            err(c.span(), e, Some("refer to a deployed plugin as NAME@VERSION, as `tether plugin list` shows it"));
        }
    }
    if let Some(d) = c.get_ref().strip_prefix("sha256:") {
        if d.len() != 64 || !d.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()) {
            err(
                c.span(),
                format!("`{}` is not a sha256 digest", c.get_ref()),
                Some("write `sha256:` and 64 lowercase hex digits, as `tether history` and `tether inspect` show them"),
            );
        }
    }
    ComponentRef { path: c.get_ref().clone(), span: c.span() }
}

/// A budget field a tool's budget cannot have, with why.
pub(super) fn step_only_field(spec: &BudgetSpec) -> Option<String> {
    if spec.tool_calls.is_some() {
        return Some("`tool_calls` does not apply to tools: a tool cannot call tools".into());
    }
    if spec.model_calls.is_some() {
        return Some("`model_calls` does not apply to tools: only steps call the model".into());
    }
    let field = if spec.host_reads.is_some() {
        "host_reads"
    } else if spec.random_bytes.is_some() {
        "random_bytes"
    } else {
        return None;
    };
    Some(format!("`{field}` does not apply to tools: a tool call is journaled as one result, not read by read"))
}

pub(super) fn check_budget(
    budget: &Option<Spanned<BudgetSpec>>,
    err: &mut impl FnMut(Range<usize>, String, Option<&str>),
) -> Option<BudgetSpec> {
    let b = budget.as_ref()?;
    let spec = b.get_ref();
    let span = b.span();
    if spec.fuel == Some(0) {
        err(
            span.clone(),
            "budget `fuel` must be at least 1".into(),
            Some("remove it for the default, or give a positive number"),
        );
    }
    if spec.wall_time.is_some_and(|d| d.as_millis() == 0) {
        err(
            span.clone(),
            "budget `wall_time` must be at least 1ms".into(),
            Some("write a duration such as \"500ms\" or \"30s\""),
        );
    }
    if let Some(m) = spec.memory {
        if m < 64 << 10 {
            err(
                span.clone(),
                format!("budget `memory` of {m} bytes is below one WebAssembly page (64KiB)"),
                Some("write a size such as \"64MiB\""),
            );
        } else if m > MAX_MEMORY {
            err(
                span.clone(),
                format!("budget `memory` of {m} bytes is above the host's limit of 4GiB"),
                Some("write a size of at most \"4GiB\""),
            );
        }
    }
    Some(spec.clone())
}
