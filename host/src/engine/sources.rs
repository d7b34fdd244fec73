//! WASI clocks and randomness served by the host and journaled.
//!
//! Rust guests read time through `wasi:clocks` (`SystemTime::now`,
//! `Instant::now`) and randomness through `wasi:random` (`HashMap` keys,
//! `getrandom`). These sources answer through the attempt's [`Recorder`],
//! so a replay sees the very values the live run saw.
//!
//! Randomness is drawn from a ChaCha stream seeded once per attempt; the
//! seed is one journal entry (`random-seed`), recorded the first time the
//! guest asks for random bytes. The `insecure-seed` value (used by `HashMap`)
//! is derived from the run, step sequence and attempt, so it is fixed
//! before the guest starts and identical on replay.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

use super::recorder::{Call, Recorder};
use crate::domain::{EntryKind, Micros, RunId};

/// `wasi:clocks/wall-clock`, journaled.
pub struct WallClock(pub Recorder);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        let call = Call { kind: EntryKind::WallClock, name: "wall-clock".into(), request: "null".into() };
        let answer = self.0.immediate(call, || Micros::now().0.to_string());
        // On divergence the value is never used: the replay reports the
        // divergence and the attempt's outcome is discarded.
        let micros = answer.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
        Duration::from_micros(micros)
    }
}

/// `wasi:clocks/monotonic-clock`, journaled, in nanoseconds since the host
/// process started.
pub struct MonotonicClock {
    pub recorder: Recorder,
    pub origin: Instant,
}

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        let call = Call { kind: EntryKind::MonotonicClock, name: "monotonic-clock".into(), request: "null".into() };
        let origin = self.origin;
        let answer = self
            .recorder
            .immediate(call, || u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX).to_string());
        answer.and_then(|a| a.parse().ok()).unwrap_or(0)
    }
}

/// `wasi:random/random` and `wasi:random/insecure`: a ChaCha stream whose
/// seed is journaled on first use.
pub struct JournaledRng {
    recorder: Recorder,
    stream: u64,
    rng: Option<ChaCha12Rng>,
}

impl JournaledRng {
    /// A source drawing from stream `stream` of the attempt's seed (the
    /// secure and insecure interfaces use different streams).
    pub fn new(recorder: Recorder, stream: u64) -> Self {
        Self { recorder, stream, rng: None }
    }

    fn rng(&mut self) -> &mut ChaCha12Rng {
        let recorder = &self.recorder;
        let stream = self.stream;
        self.rng.get_or_insert_with(|| {
            let call = Call { kind: EntryKind::RandomSeed, name: "random-seed".into(), request: "null".into() };
            let seed_hex = recorder.immediate(call, || {
                let mut seed = [0u8; 32];
                rand::rng().fill_bytes(&mut seed);
                format!("\"{}\"", hex::encode(seed))
            });
            let mut seed = [0u8; 32];
            if let Some(bytes) = seed_hex.and_then(|s| hex::decode(s.trim_matches('"')).ok())
                && bytes.len() == 32
            {
                seed.copy_from_slice(&bytes);
            }
            let mut rng = ChaCha12Rng::from_seed(seed);
            rng.set_stream(stream);
            rng
        })
    }
}

impl wasi_rand_core::TryRng for JournaledRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.rng().next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.rng().next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.rng().fill_bytes(dst);
        Ok(())
    }
}

/// The `wasi:random/insecure-seed` value of an attempt: fixed by who runs,
/// so it needs no journal entry.
pub fn insecure_seed(run_id: RunId, seq: u32, attempt: u32) -> u128 {
    let digest = Sha256::new()
        .chain_update(run_id.to_string())
        .chain_update(seq.to_le_bytes())
        .chain_update(attempt.to_le_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}
