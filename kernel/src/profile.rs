//! A sampling profiler, off unless the kernel was booted with `--profile`
//! (the ramdisk file `kernel.profile`): every timer tick (at 1000 Hz while it
//! is on) records where the CPU it interrupted was, and at init's exit the
//! kernel prints the most frequent kernel addresses as offsets into its
//! image (`tests/profile.sh` turns them into function names). User-mode and
//! idle samples are counted apart. It is how the fault path's breakdown in
//! docs/design.md was measured.
//!
//! A sample attributed to an `sti` (the instruction that turns interrupts
//! back on) stands for the time the CPU spent with interrupts off before it:
//! the tick could only be taken there.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Distinct kernel addresses the profile can tell apart.
const SLOTS: usize = 8192;
/// The tick rate while profiling.
pub const PROFILE_HZ: u64 = 1000;

static ON: AtomicBool = AtomicBool::new(false);
static ADDRESSES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static COUNTS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static USER: AtomicU64 = AtomicU64::new(0);
static IDLE: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);

/// Whether the ramdisk asks for a profile (`boot --profile`).
pub fn requested(ramdisk: &[u8]) -> bool {
    matches!(crate::task::cpio::find(ramdisk, "kernel.profile"), Ok(Some(_)))
}

/// Starts sampling (every CPU's tick at `PROFILE_HZ`).
pub fn start() {
    crate::arch::time::set_tick_hz(PROFILE_HZ);
    ON.store(true, Ordering::Release);
}

pub fn stop() {
    ON.store(false, Ordering::Release);
}

/// Records one sample: called by the tick with the interrupted context.
pub fn sample(rip: u64, user: bool, idle: bool) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    if user {
        USER.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if idle {
        IDLE.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Open addressing; a slot is claimed once and never freed.
    let mut slot = (rip.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 51) as usize % SLOTS;
    for _ in 0..SLOTS {
        let held = ADDRESSES[slot].load(Ordering::Relaxed);
        let ours = held == rip
            || (held == 0 && ADDRESSES[slot].compare_exchange(0, rip, Ordering::Relaxed, Ordering::Relaxed).is_ok())
            || ADDRESSES[slot].load(Ordering::Relaxed) == rip;
        if ours {
            COUNTS[slot].fetch_add(1, Ordering::Relaxed);
            return;
        }
        slot = (slot + 1) % SLOTS;
    }
    LOST.fetch_add(1, Ordering::Relaxed);
}

/// Prints the totals and the `top` most sampled kernel addresses.
pub fn report(top: usize) {
    let mut hits: Vec<(u64, u64)> = (0..SLOTS)
        .map(|i| (COUNTS[i].load(Ordering::Relaxed), ADDRESSES[i].load(Ordering::Relaxed)))
        .filter(|&(count, _)| count > 0)
        .collect();
    hits.sort_unstable_by(|a, b| b.cmp(a));
    let kernel: u64 = hits.iter().map(|&(count, _)| count).sum();
    log::warn!(
        "profile: {} samples at {PROFILE_HZ} Hz: kernel {kernel}, user {}, idle {}, lost {}",
        kernel + USER.load(Ordering::Relaxed) + IDLE.load(Ordering::Relaxed),
        USER.load(Ordering::Relaxed),
        IDLE.load(Ordering::Relaxed),
        LOST.load(Ordering::Relaxed)
    );
    for (count, rip) in hits.into_iter().take(top) {
        log::warn!("profile: {count} {:#x}", rip.wrapping_sub(crate::arch::watchdog::image_base()));
    }
}
