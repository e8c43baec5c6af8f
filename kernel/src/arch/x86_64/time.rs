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
    EPOCH_AT_BOOT.store(read_rtc_epoch(), Ordering::Relaxed);
}

/// Seconds since the Unix epoch at calibration, from the CMOS clock.
static EPOCH_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Wall-clock time: the CMOS clock at boot plus the monotonic clock since.
pub fn realtime_ns() -> u64 {
    EPOCH_AT_BOOT.load(Ordering::Relaxed).saturating_mul(1_000_000_000).saturating_add(now_ns())
}

fn cmos_read(register: u8) -> u8 {
    let mut index = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: ports 0x70/0x71 are the CMOS index and data registers; reading
    // a clock register has no side effect beyond selecting it (NMIs stay enabled: bit 7 clear).
    unsafe {
        index.write(register);
        data.read()
    }
}

/// Reads the CMOS real-time clock (UTC), waiting out an update in progress.
fn read_rtc_epoch() -> u64 {
    let read_all = || {
        while cmos_read(0x0a) & 0x80 != 0 {
            core::hint::spin_loop();
        }
        [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(cmos_read)
    };
    // Read until two readings agree, so no field rolls over mid-read.
    let mut values = read_all();
    loop {
        let again = read_all();
        if again == values {
            break;
        }
        values = again;
    }
    let binary = cmos_read(0x0b) & 0x04 != 0;
    let decode = |v: u8| if binary { v as u64 } else { ((v >> 4) * 10 + (v & 0x0f)) as u64 };
    let [sec, min, hour, day, month, year, century] = values.map(decode);
    let year = if century >= 19 { century * 100 + year } else { 2000 + year };
    days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian calendar).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as u64
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
    start_tick_at(HZ);
}

fn start_tick_at(hz: u64) {
    let count = (apic_timer_hz() / hz.max(1)).clamp(1, u32::MAX as u64) as u32;
    apic::timer_start_periodic(TIMER_VECTOR, count);
}

/// Runs every online CPU's tick at `hz` instead of `HZ`: tests that need
/// preemption at many more points (races that depend on where a thread is
/// interrupted) raise it, and put back `HZ` when done. Time slices shrink
/// with it; timers and the clock do not depend on the tick rate.
pub fn set_tick_hz(hz: u64) {
    super::ipi::call_on(super::ipi::online(), &|| start_tick_at(hz));
}

pub fn handle_tick(frame: &mut super::TrapFrame) {
    let this = percpu::current();
    // The heartbeat the lockup detector watches.
    this.ticks.fetch_add(1, Ordering::Relaxed);
    apic::eoi();
    if this.cpu == 0 {
        crate::task::timer::expire(now_ns());
    }
    // One tick is a time slice.
    this.need_resched.store(true, Ordering::Relaxed);
    // User mode and the idle thread are RCU quiescent states; the tick also
    // starts a grace period someone waits for.
    crate::sync::rcu::on_tick(frame.from_user());
    crate::profile::sample(frame.rip, frame.from_user(), crate::task::sched::running_idle());
    super::watchdog::tick(frame);
}
