//! Time: the TSC and the local APIC timer, calibrated against the PIT;
//! a periodic tick on every CPU; a monotonic clock in nanoseconds.

use core::sync::atomic::{AtomicU64, Ordering};

use ::x86_64::instructions::port::Port;

use super::{apic, percpu, read_tsc};

/// Timer interrupts per second on each CPU.
pub const HZ: u64 = 100;
pub const TIMER_VECTOR: u8 = 0xef;

const PIT_HZ: u64 = 1_193_182;
/// The calibration window.
const CALIBRATION_MS: u64 = 20;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// LAPIC timer ticks (input clock / 16) per second.
static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// The latest value handed out, so the clock never goes back across CPUs.
static LAST_NS: AtomicU64 = AtomicU64::new(0);

/// Measures the TSC and LAPIC timer rates over a PIT interval. Boot CPU only,
/// with its LAPIC enabled, before any other CPU starts.
pub fn calibrate() {
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    let count = PIT_HZ * CALIBRATION_MS / 1000;
    // SAFETY: ports 0x42/0x43/0x61 are the PIT's channel 2 and its gate; channel
    // 2 drives only the (disconnected) speaker, so reprogramming it is harmless.
    let (tsc_delta, apic_delta) = unsafe {
        let speaker = gate.read() & !0x03;
        gate.write(speaker); // gate low: channel 2 stops
        command.write(0b1011_0000); // channel 2, low/high byte, mode 0 (one-shot)
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        apic::timer_start_oneshot_masked(u32::MAX);
        let apic_start = apic::timer_current();
        let tsc_start = read_tsc();
        gate.write(speaker | 0x01); // gate high: counting starts
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        (read_tsc() - tsc_start, apic_start - apic::timer_current())
    };
    TSC_HZ.store(tsc_delta * 1000 / CALIBRATION_MS, Ordering::Relaxed);
    APIC_TIMER_HZ.store(apic_delta as u64 * 1000 / CALIBRATION_MS, Ordering::Relaxed);
    TSC_AT_BOOT.store(read_tsc(), Ordering::Relaxed);
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

pub fn apic_timer_hz() -> u64 {
    APIC_TIMER_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since calibration; never less than a value returned before,
/// on any CPU.
pub fn now_ns() -> u64 {
    let hz = tsc_hz();
    if hz == 0 {
        return 0;
    }
    let ticks = read_tsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    let ns = (ticks as u128 * 1_000_000_000 / hz as u128) as u64;
    LAST_NS.fetch_max(ns, Ordering::AcqRel).max(ns)
}

/// Spins for at least `ns` nanoseconds.
pub fn spin_ns(ns: u64) {
    let end = now_ns() + ns;
    while now_ns() < end {
        core::hint::spin_loop();
    }
}

/// Starts this CPU's periodic tick.
pub fn start_tick() {
    let count = (apic_timer_hz() / HZ).clamp(1, u32::MAX as u64) as u32;
    apic::timer_start_periodic(TIMER_VECTOR, count);
}

pub fn handle_tick(_frame: &mut super::TrapFrame) {
    percpu::current().ticks.fetch_add(1, Ordering::Relaxed);
    apic::eoi();
}
