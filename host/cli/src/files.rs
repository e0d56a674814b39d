//! Files the user names on the command line or in a workflow, read with a limit per
//! kind (see `tether_runtime::files`): a device, a pipe or a huge file is refused with
//! its name and the limit.

use std::path::Path;

use crate::Failure;

/// Workflow and policy files.
pub(crate) const TEXT_LIMIT: u64 = 1 << 20;
/// Run inputs and approval payloads: the journal's largest event.
pub(crate) const JSON_LIMIT: u64 = 8 << 20;

/// A UTF-8 text file of at most `limit` bytes; `what` names it in errors ("the input file").
pub(crate) fn read_text(path: &Path, limit: u64, what: &str) -> Result<String, Failure> {
    let bytes = tether_runtime::files::read_limited(path, limit, what)
        .map_err(|problem| Failure::usage(format!("cannot read {what} {}: {problem}", path.display())))?;
    String::from_utf8(bytes).map_err(|e| Failure::usage(format!("{}: {what} is not UTF-8 text: {e}", path.display())))
}

/// Standard input, at most `limit` bytes.
pub(crate) fn read_stdin(limit: u64, what: &str) -> Result<String, Failure> {
    let bytes = tether_runtime::files::read_up_to(std::io::stdin().lock(), limit, what)
        .map_err(|problem| Failure::usage(format!("standard input: {problem}")))?;
    String::from_utf8(bytes).map_err(|e| Failure::usage(format!("standard input is not UTF-8 text: {e}")))
}

/// A component file (`--with`, `plugin add`).
pub(crate) fn read_component(path: &Path) -> Result<Vec<u8>, Failure> {
    tether_runtime::files::read_limited(path, tether_runtime::files::COMPONENT_LIMIT, "a component")
        .map_err(|problem| Failure::usage(format!("{}: {problem}", path.display())))
}
