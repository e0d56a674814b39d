//! WASI clocks and random numbers for journaled attempts: every read goes through the
//! attempt's tape, so it is journaled the first time and served from the journal on
//! resume and replay. Insecure random is a PRNG seeded from the run and step, so it is
//! the same on every execution without being journaled.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use sha2::{Digest, Sha256};
use tether_types::event::HostRead;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use crate::tape::{lock, SharedTape};

struct TapeWallClock(SharedTape);
struct TapeMonotonicClock(SharedTape, std::time::Instant);
struct TapeRandom(SharedTape);

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

impl rand_core::TryRng for TapeRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        let len = dst.len();
        let read = lock(&self.0).read(
            |r| matches!(r, HostRead::Random { hex } if hex.len() == 2 * len),
            || {
                let mut bytes = vec![0u8; len];
                rand::fill(&mut bytes[..]);
                HostRead::Random { hex: hex::encode(bytes) }
            },
        );
        if let HostRead::Random { hex } = read {
            if let Ok(bytes) = hex::decode(hex) {
                if bytes.len() == len {
                    dst.copy_from_slice(&bytes);
                }
            }
        }
        Ok(())
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
        .secure_random(TapeRandom(tape.clone()))
        .insecure_random(rand::rngs::SmallRng::seed_from_u64(u64::from_le_bytes(
            digest[16..24].try_into().expect("8 bytes"),
        )))
        .insecure_random_seed(u128::from_le_bytes(seed_bytes));
}
