//! Everything that touches the hardware. The rest of the kernel asks these
//! modules for mechanisms (load this table, flush this page, exit QEMU) and
//! keeps the policy for itself.

pub mod x86_64;

pub use self::x86_64::*;
