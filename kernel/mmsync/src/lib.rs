//! The hardware-free halves of two kernel protocols, written once and used
//! twice: the kernel runs this code (`kernel/src/mm/vma/lock.rs`,
//! `kernel/src/sync/rcu.rs` call it), and the host model-checks the very same
//! functions with [loom](https://docs.rs/loom) (`make model-test`, the models
//! in `tests/`).
//!
//! - [`vma_lock`]: the per-VMA lock word, its stamp and detached flag, the
//!   reader's whole `vma_start_read` check sequence and the writer's side.
//! - [`rcu`]: RCU's grace-period bookkeeping (`GP_SEQ`, `COMPLETED`,
//!   `PENDING`, requests, the per-CPU reported GP), with the current CPU and
//!   interrupt masking supplied by the caller ([`rcu::Cpus`]).
//!
//! - [`pgtable`]: which page tables munmap may free (floor and ceiling)
//!   and the walk that unlinks them, over a caller-supplied layout
//!   ([`pgtable::Tables`]).
//!
//! Atomics come from [`sync`]: core's in the kernel, loom's under
//! `--cfg loom`. Loom's atomics are not `const`, so under loom the
//! constructors are plain functions (the kernel's statics need `const fn`).
//!
//! Each module also carries its deliberately broken variants
//! (`Mutation`), selected only by loom-only constructors: the models assert
//! that loom finds each one. In the kernel `mutation()` is the constant
//! `Mutation::None`, so every test of it folds away.
#![no_std]

pub mod pgtable;
pub mod rcu;
pub mod sync;
pub mod vma_lock;
