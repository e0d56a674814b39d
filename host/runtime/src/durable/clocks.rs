//! WASI clocks and random numbers for journaled attempts: every read goes through the
//! attempt's tape, so it is journaled the first time and served from the journal on
//! resume and replay. Insecure random is a PRNG seeded from the run and step, so it is
//! the same on every execution without being journaled.
//!
//! Secure random for steps is served by the functions [`add_random`] puts in the step
//! linker, one journal event per call: wasmtime-wasi's would draw the bytes one at a time
//! from the context's generator, one event per byte.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use sha2::{Digest, Sha256};
use tether_types::event::HostRead;
use tether_types::FailureClass;
use wasmtime::component::Linker;
use wasmtime::StoreContextMut;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use crate::durable::tape::{lock, SharedTape, TapeView};
use crate::sandbox::bindings::names;
use crate::sandbox::store::stop_if_halted;

struct TapeWallClock(SharedTape);
struct TapeMonotonicClock(SharedTape, std::time::Instant);

impl HostWallClock for TapeWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        let read = lock(&self.0).read(
            |r| matches!(r, HostRead::WallClock { .. }),
            || HostRead::WallClock {
                nanos: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64,
            },
        );
        match read {
            HostRead::WallClock { nanos } => Duration::from_nanos(nanos),
            _ => unreachable!("read returns the source it was asked for"),
        }
    }
}

impl HostMonotonicClock for TapeMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        let start = self.1;
        let read = lock(&self.0).read(
            |r| matches!(r, HostRead::MonotonicClock { .. }),
            || HostRead::MonotonicClock { nanos: start.elapsed().as_nanos() as u64 },
        );
        match read {
            HostRead::MonotonicClock { nanos } => nanos,
            _ => unreachable!("read returns the source it was asked for"),
        }
    }
}

/// Routes the context's clocks and random numbers through `tape`; `seed` (from the run
/// and step) makes insecure random deterministic.
pub(crate) fn virtualize(builder: &mut WasiCtxBuilder, tape: &SharedTape, seed: &str) {
    let digest = Sha256::digest(seed.as_bytes());
    let mut seed_bytes = [0u8; 16];
    seed_bytes.copy_from_slice(&digest[..16]);
    builder
        .wall_clock(TapeWallClock(tape.clone()))
        .monotonic_clock(TapeMonotonicClock(tape.clone(), std::time::Instant::now()))
        .insecure_random(rand::rngs::SmallRng::seed_from_u64(u64::from_le_bytes(
            digest[16..24].try_into().expect("8 bytes"),
        )))
        .insecure_random_seed(u128::from_le_bytes(seed_bytes));
}

/// `get-random-bytes` and `get-random-u64` for steps, in place of wasmtime-wasi's: one
/// call is one journal event, counted against the step's budget.
pub(crate) fn add_random<T: TapeView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut random = linker.instance(names::WASI_RANDOM)?;
    random.func_wrap("get-random-bytes", |mut cx: StoreContextMut<'_, T>, (len,): (u64,)| {
        Ok((random_bytes(cx.data_mut(), len)?,))
    })?;
    random.func_wrap("get-random-u64", |mut cx: StoreContextMut<'_, T>, (): ()| {
        let bytes: [u8; 8] = random_bytes(cx.data_mut(), 8)?.try_into().expect("asked for 8 bytes");
        Ok((u64::from_le_bytes(bytes),))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Secure random for a step: from the tape when journaled, counted against the step's
/// `host_reads` and `random_bytes`; checked before anything is allocated.
fn random_bytes<T: TapeView>(state: &mut T, len: u64) -> wasmtime::Result<Vec<u8>> {
    let Some(tape) = state.tape().cloned() else {
        let sandbox = state.sandbox();
        let cap = sandbox.random_bytes;
        if len > cap {
            let msg = format!("asked for {len} bytes of random at once; its random_bytes budget is {cap}");
            return Err(sandbox.trip(FailureClass::HostReadsExceeded, msg));
        }
        let mut bytes = vec![0u8; len as usize];
        rand::fill(&mut bytes[..]);
        return Ok(bytes);
    };
    let read = lock(&tape).random(len);
    match read {
        Ok(bytes) => {
            stop_if_halted(state)?;
            Ok(bytes)
        }
        Err(msg) if lock(&tape).over_budget.is_some() => {
            Err(state.sandbox().trip(FailureClass::HostReadsExceeded, msg))
        }
        Err(msg) => Err(state.sandbox().trip(FailureClass::HostFault, msg)),
    }
}
