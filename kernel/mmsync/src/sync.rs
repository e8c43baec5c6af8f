//! The atomics the protocols use: loom's under `--cfg loom` (so the model
//! checker sees every access and explores its orderings), core's otherwise.

#[cfg(loom)]
pub use loom::sync::atomic::*;

#[cfg(not(loom))]
pub use core::sync::atomic::*;
