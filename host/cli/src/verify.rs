//! How `tether verify` shows what it found about a run.

use tether_app::Checked;

pub(crate) fn print(checked: &Checked) {
    let run = &checked.run_id;
    if checked.problems.is_empty() {
        let head = checked.head.as_deref().unwrap_or("");
        println!("run {run}: {} events, hash chain intact (head {})", checked.events, &head[..16.min(head.len())]);
        return;
    }
    for problem in &checked.problems {
        eprintln!("error: run {run}: {}", crate::output::sanitize(problem));
    }
}
