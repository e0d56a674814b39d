//! Run ids as people type them: whole, or a unique prefix (as git takes commits).

use tether_types::store::JournalStore;

use crate::failure::store_failure;
use crate::Failure;

/// The run `given` names: itself if the journal has it, else the one run whose id starts
/// with it. Several matches, or none, is a usage error that says what to type.
pub(crate) async fn resolve(store: &(impl JournalStore + ?Sized), given: &str) -> Result<String, Failure> {
    let ids = store.run_ids().await.map_err(store_failure)?;
    if ids.iter().any(|id| id == given) {
        return Ok(given.to_string());
    }
    // `run_` alone, or a few characters of it, would match every run.
    let matches: Vec<&String> =
        if given.len() < 6 { Vec::new() } else { ids.iter().filter(|id| id.starts_with(given)).collect() };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Failure::usage(format!("unknown run `{given}`; `tether runs` lists the runs in this journal"))),
        several => {
            let shown: Vec<&str> = several.iter().take(5).map(|s| s.as_str()).collect();
            let more = if several.len() > 5 { format!(" and {} more", several.len() - 5) } else { String::new() };
            Err(Failure::usage(format!(
                "`{given}` is the start of {} runs ({}{more}); give more of the id",
                several.len(),
                shown.join(", ")
            )))
        }
    }
}
