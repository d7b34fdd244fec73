//! `ferry:runtime/context`: time, randomness, logs, secrets, run info.

use rand::RngCore;

use crate::domain::{EntryKind, EntryStatus, Micros};
use crate::engine::bindings::context::{Host, LogLevel};
use crate::engine::bindings::types::AttemptInfo;
use crate::engine::blobs::{self, MAX_BLOB};
use crate::engine::recorder::{Begun, Call};
use crate::engine::secrets::Secrets;
use crate::engine::state::Context;

/// Largest `random-bytes` request.
const MAX_RANDOM: u32 = 65_536;
/// Longest log line kept; longer lines are cut.
const MAX_LOG_LINE: usize = 16 << 10;

fn nondeterministic(d: &crate::engine::recorder::Divergence) -> wasmtime::Error {
    wasmtime::format_err!("{d}")
}

impl Host for Context {
    async fn now(&mut self) -> wasmtime::Result<u64> {
        let call = Call { kind: EntryKind::Now, name: "now".into(), request: "null".into() };
        match self.recorder.immediate(call, || Micros::now().as_millis().to_string()) {
            Some(answer) => {
                answer.parse().map_err(|_| wasmtime::format_err!("corrupt journal: `now` answered `{answer}`"))
            }
            None => Err(wasmtime::format_err!("nondeterministic: `now` does not match the journal")),
        }
    }

    async fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM {
            wasmtime::bail!("random-bytes asked for {len} bytes; the limit is {MAX_RANDOM}");
        }
        let call = Call { kind: EntryKind::Random, name: "random-bytes".into(), request: len.to_string() };
        let answer = self.recorder.immediate(call, || {
            let mut bytes = vec![0u8; len as usize];
            rand::rng().fill_bytes(&mut bytes);
            format!("\"{}\"", hex::encode(bytes))
        });
        match answer {
            Some(a) => hex::decode(a.trim_matches('"'))
                .map_err(|_| wasmtime::format_err!("corrupt journal: random bytes `{a}`")),
            None => Err(wasmtime::format_err!("nondeterministic: `random-bytes` does not match the journal")),
        }
    }

    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let message = self.recorder.redact(&message);
        let call =
            Call { kind: EntryKind::Log, name: level.into(), request: serde_json::Value::String(message).to_string() };
        match self.recorder.begin(call.clone()) {
            Begun::Live { key, started_at } => {
                self.recorder.finish(key, call, started_at, None, EntryStatus::Ok, None);
                Ok(())
            }
            Begun::Recorded(_) => Ok(()),
            Begun::Diverged(d) => Err(nondeterministic(&d)),
        }
    }

    async fn secret(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        let value = self.secrets.get(&name).map(str::to_owned);
        let call =
            Call { kind: EntryKind::Secret, name: name.clone(), request: serde_json::Value::String(name).to_string() };
        match self.recorder.begin(call.clone()) {
            Begun::Live { key, started_at } => {
                let journaled = Secrets::journal_form(value.as_deref());
                self.recorder.finish(key, call, started_at, Some(journaled), EntryStatus::Ok, None);
            }
            // On replay the value comes from this host's configuration when it
            // is the same secret (same hash); otherwise the guest gets the
            // redaction marker, which the recorded requests carry in its place.
            Begun::Recorded(entry) => {
                let recorded: Option<serde_json::Value> =
                    entry.response.as_deref().and_then(|r| serde_json::from_str(r).ok());
                let recorded_hash = recorded.as_ref().and_then(|r| r["sha256"].as_str().map(str::to_owned));
                return Ok(match recorded_hash {
                    None => None,
                    Some(hash) if Secrets::journal_form(value.as_deref()).contains(&hash) => {
                        if let Some(v) = &value {
                            self.recorder.add_secret(v);
                        }
                        value
                    }
                    Some(_) => Some(crate::domain::REDACTED.to_owned()),
                });
            }
            Begun::Diverged(d) => return Err(nondeterministic(&d)),
        }
        if let Some(v) = &value {
            self.recorder.add_secret(v);
        }
        Ok(value)
    }

    async fn put_blob(&mut self, bytes: Vec<u8>) -> wasmtime::Result<String> {
        if bytes.len() > MAX_BLOB {
            wasmtime::bail!("put-blob was given {} bytes; a blob holds at most {} MiB", bytes.len(), MAX_BLOB >> 20);
        }
        let hash = blobs::hash(&bytes);
        let reference = format!("sha256:{hash}");
        let request = serde_json::json!({ "sha256": hash, "bytes": bytes.len() }).to_string();
        let call = Call { kind: EntryKind::PutBlob, name: "put-blob".into(), request };
        match self.recorder.begin(call.clone()) {
            Begun::Live { key, started_at } => {
                // Stored before the entry that mentions it is committed: a
                // crash in between leaves an unreferenced blob, never a
                // reference without its bytes.
                self.blobs.put(&hash, &bytes).await.map_err(wasmtime::Error::msg)?;
                let response = serde_json::Value::String(reference.clone()).to_string();
                self.recorder.finish(key, call, started_at, Some(response), EntryStatus::Ok, None);
                Ok(reference)
            }
            // Same bytes as recorded (the request carries their hash).
            Begun::Recorded(_) => Ok(reference),
            Begun::Diverged(d) => Err(nondeterministic(&d)),
        }
    }

    async fn get_blob(&mut self, reference: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let Some(hash) = blobs::parse_reference(&reference) else {
            wasmtime::bail!("get-blob: `{reference}` is not a blob reference (sha256:<64 lower-case hex digits>)");
        };
        let hash = hash.to_owned();
        let call = Call {
            kind: EntryKind::GetBlob,
            name: "get-blob".into(),
            request: serde_json::Value::String(reference.clone()).to_string(),
        };
        match self.recorder.begin(call.clone()) {
            Begun::Live { key, started_at } => {
                let bytes = self.blobs.get(&hash).await.map_err(wasmtime::Error::msg)?;
                let response = match &bytes {
                    Some(b) => serde_json::json!({ "sha256": hash, "bytes": b.len() }),
                    None => serde_json::Value::Null,
                };
                self.recorder.finish(key, call, started_at, Some(response.to_string()), EntryStatus::Ok, None);
                Ok(bytes)
            }
            // Blobs never change, so the bytes read now are the bytes read
            // then; the recording says whether there were any.
            Begun::Recorded(entry) => {
                let recorded: serde_json::Value =
                    entry.response.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
                if recorded.is_null() {
                    return Ok(None);
                }
                match self.blobs.get(&hash).await.map_err(wasmtime::Error::msg)? {
                    Some(bytes) => Ok(Some(bytes)),
                    None => wasmtime::bail!(
                        "the recording read blob {reference}, which this replay cannot find \
                         (export the run again to carry its blobs)"
                    ),
                }
            }
            Begun::Diverged(d) => Err(nondeterministic(&d)),
        }
    }

    async fn run_info(&mut self) -> wasmtime::Result<AttemptInfo> {
        Ok(AttemptInfo {
            run_id: self.info.run_id.to_string(),
            component: self.info.component.clone(),
            step: self.info.step.clone(),
            attempt: self.info.attempt,
            idempotency_key: self.info.idempotency_key(),
        })
    }
}
