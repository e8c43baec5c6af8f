//! The in-kernel test framework (`custom_test_frameworks`).
//!
//! Each test prints its name, runs, and prints `[ok]`. A failing test panics;
//! without unwinding the run cannot go on, so the panic handler prints the
//! failure, the summary and how many tests did not run, then fails the run.
//! The last line of a run is always `N passed, M failed`.
//!
//! `boot` can pass a filter (`cargo test ... -- NAME`) through the ramdisk;
//! only tests whose names contain it run.

use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Once;

use crate::arch::qemu::{exit, ExitCode};
use crate::println;

/// The ramdisk starts with this when it carries a test filter (see `boot`).
const FILTER_MAGIC: &[u8] = b"KTEST-FILTER\n";

static FILTER: Once<&'static str> = Once::new();
static PASSED: AtomicUsize = AtomicUsize::new(0);
static SELECTED: AtomicUsize = AtomicUsize::new(0);

pub trait Testable {
    fn name(&self) -> &'static str;
    fn run(&self);
}

impl<T: Fn()> Testable for T {
    fn name(&self) -> &'static str {
        core::any::type_name::<T>()
    }

    fn run(&self) {
        self()
    }
}

/// Records a test filter if the ramdisk carries one.
pub fn read_filter(ramdisk: &'static [u8]) {
    if let Some(rest) = ramdisk.strip_prefix(FILTER_MAGIC) {
        let text = core::str::from_utf8(rest).unwrap_or("").trim_end_matches(['\n', '\0']);
        FILTER.call_once(|| text);
    }
}

/// The test filter `boot` passed, if any (test kernels with modes read it).
pub fn filter() -> Option<&'static str> {
    FILTER.get().copied()
}

fn selected(test: &dyn Testable) -> bool {
    FILTER.get().is_none_or(|filter| test.name().contains(filter))
}

pub fn test_runner(tests: &[&dyn Testable]) {
    let count = tests.iter().filter(|t| selected(**t)).count();
    SELECTED.store(count, Ordering::Relaxed);
    match FILTER.get() {
        Some(filter) => println!("running {count} of {} tests (filter: {filter})", tests.len()),
        None => println!("running {count} tests"),
    }
    for test in tests.iter().filter(|t| selected(**t)) {
        crate::print!("{} ... ", test.name());
        test.run();
        // A test that leaves this CPU pinned or with interrupts off (a leaked
        // guard, or a count moved to another CPU) would fail some later one.
        let (pinned, interrupts) = (crate::arch::percpu::preempt_count(), crate::arch::interrupts_enabled());
        assert!(pinned == 0 && interrupts, "left preemption count {pinned}, interrupts on: {interrupts}");
        println!("[ok]");
        PASSED.fetch_add(1, Ordering::Relaxed);
    }
    println!("{} passed, 0 failed", PASSED.load(Ordering::Relaxed));
}

/// The panic handler of test kernels: report the failed test and stop.
pub fn test_panic_handler(info: &core::panic::PanicInfo) -> ! {
    let _ = crate::arch::disable_interrupts();
    if crate::panic::begin() {
        crate::arch::stop_other_cpus();
    }
    let passed = PASSED.load(Ordering::Relaxed);
    crate::console::emergency_print(format_args!("[failed]\n\nError: {info}\n\n"));
    let not_run = SELECTED.load(Ordering::Relaxed).saturating_sub(passed + 1);
    if not_run > 0 {
        crate::console::emergency_print(format_args!("({not_run} tests not run)\n"));
    }
    crate::console::emergency_print(format_args!("{passed} passed, 1 failed\n"));
    exit(ExitCode::Failure)
}

/// Collects a panic message (up to 1 KiB) so a test can check its contents.
struct MessageBuffer {
    bytes: [u8; 1024],
    len: usize,
}

impl core::fmt::Write for MessageBuffer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// For kernels that must crash: prints the panic's report and passes (exit
/// 0) if it contains every one of `expected`, else fails naming the part it
/// lacks. Call it from the test kernel's panic handler.
pub fn expect_panic_report(info: &core::panic::PanicInfo, expected: &[&str]) -> ! {
    use core::fmt::Write;
    let mut buffer = MessageBuffer { bytes: [0; 1024], len: 0 };
    let _ = write!(buffer, "{}", info.message());
    let message = core::str::from_utf8(&buffer.bytes[..buffer.len]).unwrap_or("");
    println!("report: {message}");
    match expected.iter().find(|part| !message.contains(*part)) {
        None => {
            println!("[ok]\n1 passed, 0 failed");
            exit(ExitCode::Shutdown(0))
        }
        Some(missing) => {
            println!("[failed]: the report lacks '{missing}'\n0 passed, 1 failed");
            exit(ExitCode::Failure)
        }
    }
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::Ordering;

    use crate::arch::traps::BREAKPOINTS;

    #[test_case]
    fn breakpoint_exception_returns() {
        let before = BREAKPOINTS.load(Ordering::Relaxed);
        ::x86_64::instructions::interrupts::int3();
        ::x86_64::instructions::interrupts::int3();
        assert_eq!(BREAKPOINTS.load(Ordering::Relaxed), before + 2);
    }

    #[test_case]
    fn serial_output_reaches_the_console() {
        let before = crate::console::bytes_written();
        crate::print!("(serial check) ");
        assert_eq!(crate::console::bytes_written(), before + "(serial check) ".len() as u64);
        log::warn!("a log line goes through the console too (this warning is expected)");
        assert!(crate::console::bytes_written() > before + 40);
    }

    #[test_case]
    fn fallible_copy_reports_how_much_was_left() {
        let mut buffer = [0u8; 64];
        let unmapped = crate::mm::layout::KERNEL_STACKS_START + 0x7f00_0000;
        // The source runs from 16 readable bytes into an unmapped page.
        let source = [1u8; 16];
        // SAFETY: the destination is our buffer; the source is our array and
        // then unmapped kernel address space (no device memory).
        let ok = unsafe { crate::arch::extable::copy_fallible(buffer.as_mut_ptr(), source.as_ptr(), 16) };
        assert_eq!(ok, Ok(()));
        assert_eq!(buffer[..16], [1u8; 16]);
        // SAFETY: as above.
        let err = unsafe { crate::arch::extable::copy_fallible(buffer.as_mut_ptr(), unmapped as *const u8, 64) };
        assert_eq!(err, Err(crate::arch::extable::AccessFault { remaining: 64 }));
    }
}
