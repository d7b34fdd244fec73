//! Shared code of the reference pipeline's steps (docs/PIPELINE.md).
//!
//! - [`types`]: the sources, the pulls' input and output, the token set,
//!   the client list.
//! - [`hash`]: canonical JSON and SHA-256 row hashes and digests.
//! - [`week`]: ISO weeks (`2026-W49`) and their days, by hand.
//! - [`paging`]: each source's "is there a next page" rule.
//! - [`money`]: integer cents and the rounding of ratios.
//! - [`tables`]: the three tables (`ads`, `web`, `crm`) built from the pulls:
//!   normalised, sorted, hashed, totalled, per day.
//! - [`net`]: the parts that talk to the upstream through the Ferry host
//!   (pages with token refresh and failure mapping, tokens, snapshots).
//!
//! Everything but [`net`] is pure and tested natively
//! (`cargo test -p pipeline-common`).

pub mod hash;
pub mod money;
pub mod net;
pub mod paging;
pub mod tables;
pub mod types;
pub mod week;

pub use types::{Client, ClientList, PullInput, PullOutput, Source, Tokens};
pub use week::Week;

/// Rows per page the pulls ask for (the upstream's one page size).
pub const PAGE_SIZE: u32 = 10;
