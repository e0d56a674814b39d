//! Turns how an attempt ended into exactly one failure class. The cause is taken from
//! what the host knows (a budget it tripped, a memory growth it refused) before the
//! trap code, because a refused allocation in a Rust guest surfaces as `unreachable`.

use tether_types::{FailureClass, GuestFailureKind, StepFailure};
use wasmtime::Trap;

use crate::sandbox::bindings::{Failure, FailureKind};
use crate::sandbox::limits::Limits;
use crate::sandbox::store::{Sandbox, RESOURCE_HANDLES_CAP};

/// Raised by the epoch callback when an attempt's wall-clock deadline passes.
#[derive(Debug)]
pub(crate) struct WallClockExpired;

impl std::fmt::Display for WallClockExpired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wall-clock deadline passed")
    }
}

impl std::error::Error for WallClockExpired {}

pub(crate) fn classify(err: wasmtime::Error, state: &Sandbox, limits: &Limits, instantiating: bool) -> StepFailure {
    if let Some((class, message)) = &state.tripped {
        return StepFailure::new(*class, message.clone());
    }
    if let Some(total) = state.limiter.refused {
        return StepFailure::new(
            FailureClass::MemoryExceeded,
            format!(
                "tried to grow its memory to {} in total; the memory budget is {}",
                mib(total),
                mib(state.limiter.cap())
            ),
        );
    }
    if err.downcast_ref::<WallClockExpired>().is_some() {
        return StepFailure::new(
            FailureClass::TimedOut,
            format!("exceeded its wall_time budget of {:?}", limits.wall_time),
        );
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            StepFailure::new(FailureClass::FuelExhausted, format!("used up its fuel budget of {} units", limits.fuel))
        }
        Some(Trap::Interrupt) => {
            StepFailure::new(FailureClass::TimedOut, format!("exceeded its wall_time budget of {:?}", limits.wall_time))
        }
        Some(Trap::StackOverflow) => {
            StepFailure::new(FailureClass::Trap, "stack overflow: the guest recursed too deeply")
        }
        Some(trap) => StepFailure::new(FailureClass::Trap, format!("{trap}{}", panic_note(state))),
        // A store limit the component's own shape went past (the load check refuses
        // what it can see; this covers the rest) is the guest's doing.
        None if instantiating && format!("{err:#}").contains("resource limit exceeded") => {
            StepFailure::new(FailureClass::Trap, format!("the component needs more than a sandbox allows: {err:#}"))
        }
        // Failing to create the sandbox is the host's problem, not the guest's.
        None if instantiating => {
            StepFailure::new(FailureClass::HostFault, format!("could not create the sandbox: {err:#}"))
        }
        // wasmtime's limit on bytes copied out of the guest in one call (its error type
        // is private, so it is recognised by its message; a test pins this).
        None if format!("{err:#}").contains("fuel allocated for hostcalls has been exhausted") => StepFailure::new(
            FailureClass::OutputTooLarge,
            format!(
                "tried to pass more than {} bytes out of the sandbox in one call; the output budget is {} bytes",
                hostcall_limit(limits),
                limits.output
            ),
        ),
        // An error raised by a host function on the guest's behalf (for example a WASI
        // call the guest made in a way that cannot be served). Its cause, without the
        // wasm backtrace wasmtime attaches.
        None => {
            let cause = err.root_cause().to_string();
            let message = if cause.contains("resource table has no free keys") {
                format!("held more than {} resource handles (files, streams, pollables) at once", RESOURCE_HANDLES_CAP)
            } else {
                cause
            };
            StepFailure::new(FailureClass::Trap, message)
        }
    }
}

/// Bytes a guest may pass out of its sandbox in one call (an export's result or a host
/// call's arguments): the output budget plus room for the call's other arguments.
pub(crate) fn hostcall_limit(limits: &Limits) -> usize {
    (limits.output as usize).max(1 << 20) + (64 << 10)
}

/// A guest's own `err`, with its kind.
pub(crate) fn guest_failure(f: Failure) -> StepFailure {
    let kind = match f.kind {
        FailureKind::InvalidInput => GuestFailureKind::InvalidInput,
        FailureKind::NotFound => GuestFailureKind::NotFound,
        FailureKind::Denied => GuestFailureKind::Denied,
        FailureKind::Transient => GuestFailureKind::Transient,
        FailureKind::Internal => GuestFailureKind::Internal,
    };
    StepFailure::from_guest(kind, f.message)
}

pub(crate) fn wit_kind(k: GuestFailureKind) -> FailureKind {
    match k {
        GuestFailureKind::InvalidInput => FailureKind::InvalidInput,
        GuestFailureKind::NotFound => FailureKind::NotFound,
        GuestFailureKind::Denied => FailureKind::Denied,
        GuestFailureKind::Transient => FailureKind::Transient,
        GuestFailureKind::Internal => FailureKind::Internal,
    }
}

/// A Rust guest prints its panic message to stderr before it traps; quote it.
fn panic_note(state: &Sandbox) -> String {
    let (text, _) = state.stderr.peek();
    let text = String::from_utf8_lossy(&text);
    let mut lines = text.lines().skip_while(|l| !l.contains("panicked at"));
    match (lines.next(), lines.next()) {
        (Some(_), Some(msg)) if !msg.trim().is_empty() => {
            format!(" (guest panicked: {})", msg.trim())
        }
        (Some(at), _) => format!(" (guest {})", at.trim()),
        _ => String::new(),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}
