//! A capability's interactions on the attempt's tape: each is served from the journal
//! when the journal holds it (resume, replay), and otherwise decided live and journaled.
//! Without a tape (an attempt that is not journaled) everything is decided live. Shared
//! by every capability.

use tether_types::event::EventKind;
use tether_types::FailureClass;

use crate::durable::tape::{lock, TapeView};
use crate::sandbox::store::stop_if_halted;

/// A recorded interaction `wanted` accepts (see [`crate::durable::tape::Tape::serve`]);
/// always `None` for an attempt without a tape. A divergence stops the guest.
pub(crate) fn serve<T: TapeView>(
    state: &mut T,
    wanted: impl Fn(&EventKind) -> bool,
    actual: impl FnOnce() -> EventKind,
) -> wasmtime::Result<Option<EventKind>> {
    let Some(t) = state.tape() else { return Ok(None) };
    let served = lock(t).serve(wanted, actual);
    match served {
        Ok(served) => Ok(served),
        Err(()) => stop_if_halted(state).map(|()| None),
    }
}

/// Journals something decided live.
pub(crate) fn live<T: TapeView>(state: &T, kind: &EventKind) {
    if let Some(t) = state.tape() {
        lock(t).emit_live(kind);
    }
}

/// The recorded interaction `wanted` accepts, or the one `decide` makes now, journaled.
pub(crate) fn served_or_live<T: TapeView>(
    state: &mut T,
    wanted: impl Fn(&EventKind) -> bool,
    decide: impl Fn() -> EventKind,
) -> wasmtime::Result<EventKind> {
    match serve(state, wanted, &decide)? {
        Some(recorded) => Ok(recorded),
        None => {
            let event = decide();
            live(state, &event);
            Ok(event)
        }
    }
}

/// Waits until everything journaled so far is durable: called before an effect leaves
/// the host, so what decided it (the run so far, the request) cannot be done otherwise
/// after a crash.
pub(crate) async fn sync_before_effect<T: TapeView>(state: &mut T) -> wasmtime::Result<()> {
    let journal = state.tape().and_then(|t| lock(t).journal());
    if let Some(journal) = journal {
        if let Err(e) = journal.sync().await {
            return Err(state.sandbox().trip(FailureClass::HostFault, format!("cannot journal the tool call: {e}")));
        }
    }
    Ok(())
}

/// Journals `kind` and waits until it is durable: the guest must not see a result, or a
/// request wait for a human, before the journal holds it.
pub(crate) async fn record_durably<T: TapeView>(state: &mut T, kind: &EventKind) -> wasmtime::Result<()> {
    let journal = state.tape().and_then(|t| {
        let mut t = lock(t);
        t.emit_live(kind);
        t.journal()
    });
    if let Some(journal) = journal {
        if let Err(e) = journal.sync().await {
            return Err(state.sandbox().trip(FailureClass::HostFault, format!("cannot journal the tool call: {e}")));
        }
    }
    Ok(())
}
