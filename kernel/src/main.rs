//! The kernel binary: boot, run /init from the ramdisk, exit with its status.

#![no_std]
#![no_main]

extern crate alloc;

use bootloader_api::{entry_point, BootInfo};
use kernel::mm::addrspace::frames_in_use;
use kernel::mm::{demand, frame, heap};
use kernel::task::loader::{self, INIT_ARGV, INIT_ENVP};
use kernel::task::{cpio, timer};

entry_point!(kernel_main, config = &kernel::BOOTLOADER_CONFIG);

/// Exit statuses for a missing or unusable /init (as a shell reports them).
const STATUS_NOT_FOUND: u8 = 127;
const STATUS_NOT_EXECUTABLE: u8 = 126;

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    kernel::init(boot_info);
    let frames = frame::stats();
    log::info!(
        "boot: {} MiB usable, {} MiB free, heap {} KiB",
        frames.total * 4 / 1024,
        frames.free * 4 / 1024,
        heap::stats().size / 1024
    );
    check_demand_paging();
    kernel::shutdown(run_init())
}

/// Runs /init and waits for it; returns its wait status (128 + signal if killed).
fn run_init() -> u8 {
    let Some(ramdisk) = kernel::mm::ramdisk() else {
        log::error!("no ramdisk, so no /init to run (boot with --init FILE)");
        return STATUS_NOT_FOUND;
    };
    let file = match cpio::find(ramdisk, "/init") {
        Ok(Some(entry)) => entry.data,
        Ok(None) => {
            log::error!("the ramdisk has no /init");
            return STATUS_NOT_FOUND;
        }
        Err(err) => {
            log::error!("the ramdisk is not a cpio (newc) archive: {err:?}");
            return STATUS_NOT_FOUND;
        }
    };
    let before = frames_in_use();
    // `boot --arg` packs /init's further arguments, each NUL-terminated.
    let extra = match cpio::find(ramdisk, "/init.args") {
        Ok(Some(entry)) => entry.data,
        _ => &[],
    };
    let mut argv: alloc::vec::Vec<&str> = INIT_ARGV.to_vec();
    if let Some(args) = extra.strip_suffix(&[0]) {
        argv.extend(args.split(|&b| b == 0).map(|a| core::str::from_utf8(a).unwrap_or("?")));
    }
    let process = match loader::spawn(file, &argv, INIT_ENVP) {
        Ok(process) => process,
        Err(err) => {
            log::error!("cannot run /init: {err:?}");
            return STATUS_NOT_EXECUTABLE;
        }
    };
    let profiling = kernel::profile::requested(ramdisk);
    if profiling {
        kernel::profile::start();
    }
    let status = process.wait();
    if profiling {
        kernel::profile::stop();
        kernel::profile::report(60);
    }
    // The last threads free their stacks once their CPUs have switched away.
    // Normally that takes microseconds; on an overloaded host (many vCPUs on
    // few cores, a vCPU descheduled while others spin) it has taken over 5 s.
    // The limit only keeps a real leak from hanging the run: it is reported.
    let deadline = kernel::arch::time::now_ns() + 60_000_000_000;
    while process.live_thread_objects() > 0 || alloc::sync::Arc::strong_count(&process) > 1 {
        if kernel::arch::time::now_ns() >= deadline {
            log::warn!(
                "init's threads still referenced 60 s after exit: {} thread objects, {} process references",
                process.live_thread_objects(),
                alloc::sync::Arc::strong_count(&process)
            );
            process.dump_lingering_threads();
            break;
        }
        timer::sleep_ns(1_000_000);
    }
    log::info!("mm of init ({:?} locks): {}", kernel::mm::fault::lock_mode(), process.mm.stats);
    log::info!("page tables: {} user tables allocated since boot", kernel::mm::paging::user_tables_allocated());
    drop(process);
    // Retired VMA-tree versions hold the last references to removed VMAs
    // (and their shared memory) until a grace period has passed.
    kernel::sync::rcu::rcu_barrier();
    let after = frames_in_use();
    log::info!("init exited with status {status}; frames in use before {before}, after {after}");
    let tlb = &kernel::arch::tlb::STATS;
    let get = |counter: &core::sync::atomic::AtomicU64| counter.load(core::sync::atomic::Ordering::Relaxed);
    log::info!(
        "tlb: {} shootdowns, {} IPIs, {} lazy CPUs skipped ({} caught up), {} pages flushed by invlpg, {} full \
         flushes; a remote flush took {} TSC cycles on average",
        get(&tlb.shootdowns),
        get(&tlb.ipis),
        get(&tlb.skipped_lazy),
        get(&tlb.lazy_catchups),
        get(&tlb.invlpg_pages),
        get(&tlb.full_flushes),
        get(&tlb.remote_wait_cycles) / get(&tlb.remote_waits).max(1)
    );
    if kernel::mm::fault_probe::ENABLED {
        report_fault_probes();
    }
    if after != before {
        log::warn!("init's process leaked {} frames", after as i64 - before as i64);
    }
    status
}

/// The kernel's own demand-paged region works (first touch maps a page).
fn check_demand_paging() {
    let before = demand::faults();
    let page = demand::start();
    // SAFETY: the demand region is reserved for this; the page-fault handler
    // maps a zeroed frame on first touch, and nothing else uses this page.
    unsafe { page.as_mut_ptr::<u64>().write_volatile(1) };
    log::debug!("demand paging: {} fault(s) resolved", demand::faults() - before);
    demand::release(page, 4096);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kernel::panic::report(info)
}

/// The fault-path breakdown (`fault-probes` builds): mean cycles per phase
/// of the faults measured, as warnings so that they show at the default log level.
fn report_fault_probes() {
    use kernel::mm::fault_probe::{medians, totals, NAMES};
    let (faults, sums) = totals();
    let medians = medians();
    let total: u64 = sums.iter().sum();
    log::warn!(
        "fault probes: {faults} faults measured; in the kernel: mean {} TSC cycles, sum of phase medians {}",
        total / faults.max(1),
        medians.iter().sum::<u64>()
    );
    let pool = kernel::mm::frame::zero_pool_counts();
    log::warn!(
        "fault probes: zero pool: {} zeroed frames taken from pools, {} zeroed by the taker",
        pool.hits,
        pool.misses
    );
    for ((name, sum), median) in NAMES.iter().zip(sums).zip(medians) {
        log::warn!(
            "fault probes: {name:>15} median {median:>6} mean {:>7} cycles ({:>4.1}% of the mean total)",
            sum / faults.max(1),
            sum as f64 * 100.0 / total.max(1) as f64
        );
    }
}
