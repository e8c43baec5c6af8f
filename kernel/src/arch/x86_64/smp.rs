//! Starting the application processors (APs).
//!
//! Each AP starts in real mode at a page below 1 MiB (the trampoline), which
//! walks it through protected mode into long mode with a temporary page
//! table, then jumps to `ap_entry` on its own kernel stack. APs start one at
//! a time: the boot CPU fills in the trampoline's parameters, sends
//! INIT-SIPI-SIPI, and waits (with a time limit) for the AP to check in.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use ::x86_64::registers::control::{Cr3, Cr3Flags};
use ::x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
use ::x86_64::{PhysAddr, VirtAddr};

use super::apic::{self, Delivery, Destination};
use super::gdt::{self, IstStack};
use super::{ipi, percpu, time, traps};
use crate::mm::frame::Frame;
use crate::mm::kstack::KernelStack;
use crate::mm::paging::{kernel_page_table, PageTable};
use crate::mm::phys_to_virt;

/// Physical address the trampoline is copied to (free low memory: the frame
/// allocator never hands out frames below 1 MiB).
const TRAMPOLINE_PHYS: u64 = 0x8000;
/// How long an AP gets to check in.
const AP_TIMEOUT_NS: u64 = 2_000_000_000;

core::arch::global_asm!(
    r#"
    .text
    .balign 16
    .global ap_trampoline_start
    .global ap_trampoline_end
    .global ap_trampoline_cr3
    .global ap_trampoline_stack
    .global ap_trampoline_entry
    .global ap_trampoline_arg
    .set TRAMP_BASE, 0x8000
    .code16
ap_trampoline_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl TRAMP_BASE + (ap_trampoline_gdt_ptr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(TRAMP_BASE + (ap_trampoline_32 - ap_trampoline_start))

    .code32
ap_trampoline_32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    // PAE and global pages
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 7)), %eax
    movl %eax, %cr4
    movl TRAMP_BASE + (ap_trampoline_cr3 - ap_trampoline_start), %eax
    movl %eax, %cr3
    // EFER: long mode and no-execute (kernel entries carry NX)
    movl $0xc0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    // paging, write protect, protected mode
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(TRAMP_BASE + (ap_trampoline_64 - ap_trampoline_start))

    .code64
ap_trampoline_64:
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq TRAMP_BASE + (ap_trampoline_stack - ap_trampoline_start), %rsp
    movq TRAMP_BASE + (ap_trampoline_arg - ap_trampoline_start), %rdi
    movq TRAMP_BASE + (ap_trampoline_entry - ap_trampoline_start), %rax
    andq $-16, %rsp
    callq *%rax
1:  hlt
    jmp 1b

    .balign 16
ap_trampoline_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
ap_trampoline_gdt_ptr:
    .word ap_trampoline_gdt_ptr - ap_trampoline_gdt - 1
    .long TRAMP_BASE + (ap_trampoline_gdt - ap_trampoline_start)
    .balign 8
ap_trampoline_cr3:
    .quad 0
ap_trampoline_stack:
    .quad 0
ap_trampoline_entry:
    .quad 0
ap_trampoline_arg:
    .quad 0
ap_trampoline_end:
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_trampoline_cr3: u8;
    static ap_trampoline_stack: u8;
    static ap_trampoline_entry: u8;
    static ap_trampoline_arg: u8;
}

/// What the boot CPU prepares for one AP.
struct ApBoot {
    cpu: usize,
    apic_id: u32,
    tables: &'static gdt::CpuTables,
}

/// Set by an AP once it runs Rust code with its own tables.
static CHECKED_IN: AtomicBool = AtomicBool::new(false);
static CPU_COUNT: AtomicUsize = AtomicUsize::new(1);
/// CPUs the firmware listed (ACPI MADT), started or not.
static CPUS_LISTED: AtomicUsize = AtomicUsize::new(1);
/// Nanoseconds the AP bring-up took in all.
static BRING_UP_NS: AtomicU64 = AtomicU64::new(0);

/// CPUs running.
pub fn cpu_count() -> usize {
    CPU_COUNT.load(Ordering::Acquire)
}

/// CPUs the firmware listed.
pub fn cpus_listed() -> usize {
    CPUS_LISTED.load(Ordering::Acquire)
}

/// How long starting the APs took, in nanoseconds.
pub fn bring_up_ns() -> u64 {
    BRING_UP_NS.load(Ordering::Relaxed)
}

/// Offset of a trampoline symbol from the trampoline's start.
fn offset_of(symbol: &u8) -> usize {
    // SAFETY: only the address of the extern static is taken.
    let start = unsafe { &ap_trampoline_start } as *const u8 as usize;
    symbol as *const u8 as usize - start
}

/// A page table for the trip through the trampoline: the kernel half of the
/// kernel's table plus an identity mapping of the trampoline page, with its
/// root below 4 GiB (CR3 is loaded in 32-bit mode).
fn trampoline_page_table() -> PageTable {
    let root = Frame::alloc_zeroed().expect("a frame for the trampoline page table");
    assert!(root.start().as_u64() < 1 << 32, "trampoline page table above 4 GiB");
    let kernel_root = phys_to_virt(kernel_page_table().root().start_address()).as_ptr::<u64>();
    let new_root = phys_to_virt(root.start()).as_mut_ptr::<u64>();
    // SAFETY: both are page-table root frames mapped through the physical map;
    // we copy the upper 256 entries (the kernel half) into our fresh frame.
    unsafe { core::ptr::copy_nonoverlapping(kernel_root.add(256), new_root.add(256), 256) };
    // SAFETY: `root` is a fresh page table that only this function and the
    // starting APs use; its lower half is empty, so `map` only adds new tables.
    let table = unsafe { PageTable::from_root(root.into_raw()) };
    let page = Page::containing_address(VirtAddr::new(TRAMPOLINE_PHYS));
    let frame = PhysFrame::containing_address(PhysAddr::new(TRAMPOLINE_PHYS));
    table.map(page, frame, PageTableFlags::WRITABLE).expect("identity-map the trampoline");
    table
}

/// Starts every CPU in `apic_ids` but the boot CPU; returns how many run.
pub fn start_aps(apic_ids: &[u32]) -> usize {
    CPUS_LISTED.store(apic_ids.len().max(1), Ordering::Release);
    let began = time::now_ns();
    let started = start_all(apic_ids);
    BRING_UP_NS.store(time::now_ns() - began, Ordering::Relaxed);
    started
}

fn start_all(apic_ids: &[u32]) -> usize {
    let me = apic::id();
    let others: alloc::vec::Vec<u32> = apic_ids.iter().copied().filter(|&id| id != me).collect();
    if others.is_empty() {
        return 1;
    }
    // SAFETY: only symbol addresses are taken.
    let (start, end) = unsafe { (&ap_trampoline_start as *const u8, &ap_trampoline_end as *const u8) };
    let len = end as usize - start as usize;
    assert!(len <= 4096, "the trampoline fits in a page");
    let low = phys_to_virt(PhysAddr::new(TRAMPOLINE_PHYS)).as_mut_ptr::<u8>();
    // SAFETY: the page at TRAMPOLINE_PHYS is free low memory reserved for this
    // (never handed out by the frame allocator), mapped by the physical map.
    unsafe { core::ptr::copy_nonoverlapping(start, low, len) };
    let table = trampoline_page_table();

    let mut started = 1;
    for apic_id in others {
        let cpu = started;
        if cpu >= percpu::MAX_CPUS {
            log::warn!("smp: only {} CPUs supported; APIC id {apic_id} left off", percpu::MAX_CPUS);
            break;
        }
        if start_one(cpu, apic_id, &table, low) {
            started += 1;
            CPU_COUNT.store(started, Ordering::Release);
        } else {
            log::error!("smp: CPU with APIC id {apic_id} did not start within {} ms", AP_TIMEOUT_NS / 1_000_000);
        }
    }
    // The trampoline table's frames stay allocated: a few pages, kept so a
    // late AP that wakes after its time-out cannot run on freed tables.
    started
}

fn start_one(cpu: usize, apic_id: u32, table: &PageTable, trampoline: *mut u8) -> bool {
    let stack = KernelStack::new().expect("a kernel stack for an AP");
    let ist: &'static [IstStack; 3] = Box::leak(Box::new([IstStack::new(), IstStack::new(), IstStack::new()]));
    let tss = Box::leak(Box::new(gdt::new_tss(ist)));
    let tables = Box::leak(Box::new(gdt::new_tables(tss)));
    let boot = Box::leak(Box::new(ApBoot { cpu, apic_id, tables }));

    // SAFETY: only the addresses of the trampoline's parameter symbols are taken.
    let slots = unsafe { [&ap_trampoline_cr3, &ap_trampoline_stack, &ap_trampoline_entry, &ap_trampoline_arg] };
    let values = [
        table.root().start_address().as_u64(),
        stack.top().as_u64(),
        ap_entry as *const () as u64,
        boot as *const ApBoot as u64,
    ];
    let params = slots.map(offset_of).into_iter().zip(values);
    for (offset, value) in params {
        // SAFETY: each offset is that of an 8-byte-aligned parameter slot
        // inside the trampoline copy; no AP runs the trampoline right now.
        unsafe { (trampoline.add(offset) as *mut u64).write_volatile(value) };
    }
    // The AP runs on this stack for the rest of the run.
    core::mem::forget(stack);

    CHECKED_IN.store(false, Ordering::Release);
    apic::send_ipi(Destination::Apic(apic_id), Delivery::Init);
    time::spin_ns(10_000_000);
    apic::send_ipi(Destination::Apic(apic_id), Delivery::InitDeassert);
    let vector = (TRAMPOLINE_PHYS >> 12) as u8;
    for _ in 0..2 {
        apic::send_ipi(Destination::Apic(apic_id), Delivery::Startup(vector));
        time::spin_ns(200_000);
        if CHECKED_IN.load(Ordering::Acquire) {
            break;
        }
    }
    let deadline = time::now_ns() + AP_TIMEOUT_NS;
    while !CHECKED_IN.load(Ordering::Acquire) {
        if time::now_ns() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Where an AP arrives from the trampoline, on its own stack.
extern "C" fn ap_entry(boot: &'static ApBoot) -> ! {
    super::percpu::park_gs();
    gdt::load(boot.tables);
    // SAFETY: the kernel's page table maps everything this CPU touches from
    // here on (kernel half), like on the boot CPU.
    unsafe { Cr3::write(kernel_page_table().root(), Cr3Flags::empty()) };
    percpu::init(boot.cpu, boot.apic_id, boot.tables.tss);
    traps::load_idt();
    super::enable_paging_features();
    super::syscall::init_this_cpu();
    apic::init_this_cpu();
    time::start_tick();
    crate::task::sched::init_this_cpu_idle();
    ipi::mark_online(boot.cpu);
    CHECKED_IN.store(true, Ordering::Release);
    crate::task::sched::idle_loop()
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use x86_64::structures::paging::{Page, PageTableFlags};
    use x86_64::VirtAddr;

    use super::super::ipi::{call_async, call_on, online, run_on_each, CpuSet};
    use super::super::tlb::{shootdown, FlushScope};
    use super::super::{apic, percpu, read_tsc, time};
    use super::{cpu_count, cpus_listed};
    use crate::arch::extable::probe_read;
    use crate::mm::frame::Frame;
    use crate::mm::kstack::KernelStack;
    use crate::mm::paging::kernel_page_table;
    use crate::sync::SpinLock;

    /// Another online CPU than this one (tests that need two CPUs).
    fn other_cpu() -> usize {
        let me = percpu::cpu_id();
        online().iter().find(|&c| c != me).expect("this test needs at least 2 CPUs (SMP >= 2)")
    }

    #[test_case]
    fn every_listed_cpu_is_online_with_a_distinct_apic_id() {
        assert_eq!(cpu_count(), cpus_listed());
        assert_eq!(online().len(), cpu_count());
        let ids: BTreeSet<u32> = run_on_each(online(), apic::id).into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids.len(), cpu_count(), "APIC ids are distinct");
        for cpu in online().iter() {
            assert!(ids.contains(&percpu::get(cpu).unwrap().apic_id));
        }
    }

    #[test_case]
    fn a_cross_cpu_call_reaches_every_cpu_and_returns_results() {
        let results = run_on_each(online(), || (percpu::cpu_id(), percpu::cpu_id() * 10 + 7));
        assert_eq!(results.len(), cpu_count());
        for (cpu, (ran_on, value)) in results {
            assert_eq!(cpu, ran_on, "the closure ran on its target");
            assert_eq!(value, cpu * 10 + 7);
        }
    }

    #[test_case]
    fn spinlocked_increments_from_every_cpu_sum_exactly() {
        const PER_CPU: u64 = 20_000;
        let counter = SpinLock::new(crate::sync::Level::TestState, 0u64);
        call_on(online(), &|| {
            for _ in 0..PER_CPU {
                let mut c = counter.lock();
                // A read-modify-write split in two, so a broken lock would lose updates.
                let seen = *c;
                core::hint::spin_loop();
                *c = seen + 1;
            }
        });
        assert_eq!(*counter.lock(), PER_CPU * cpu_count() as u64);
    }

    #[test_case]
    fn timer_ticks_arrive_on_every_cpu() {
        let before: Vec<u64> = online().iter().map(|c| percpu::get(c).unwrap().ticks.load(Ordering::Relaxed)).collect();
        time::spin_ns(100_000_000);
        for (i, cpu) in online().iter().enumerate() {
            let now = percpu::get(cpu).unwrap().ticks.load(Ordering::Relaxed);
            assert!(now > before[i], "CPU {cpu} took no tick in 100 ms");
        }
    }

    #[test_case]
    fn two_cpus_calling_each_other_at_once_do_not_deadlock() {
        let a = percpu::cpu_id();
        let b = other_cpu();
        let done = AtomicUsize::new(0);
        let mut both = CpuSet::single(a);
        both.insert(b);
        // Each CPU, inside a call, calls the other and waits for it.
        call_on(both, &|| {
            let other = if percpu::cpu_id() == a { b } else { a };
            for _ in 0..50 {
                call_on(CpuSet::single(other), &|| {
                    done.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(done.load(Ordering::Relaxed), 100);
    }

    #[test_case]
    fn an_async_call_runs_without_the_caller_waiting() {
        static RAN: AtomicUsize = AtomicUsize::new(0);
        RAN.store(0, Ordering::SeqCst);
        let mut others = online();
        others.remove(percpu::cpu_id());
        call_async(
            others,
            Box::new(|| {
                RAN.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let deadline = time::now_ns() + 2_000_000_000;
        while RAN.load(Ordering::SeqCst) < others.len() && time::now_ns() < deadline {
            core::hint::spin_loop();
        }
        assert_eq!(RAN.load(Ordering::SeqCst), others.len());
    }

    #[test_case]
    fn a_flushed_cpu_sees_the_new_mapping() {
        // Pinned: "us" in the flush targets and the read-back below must be
        // the CPU that flushed (and shootdowns require it).
        let _pin = percpu::PreemptGuard::new();
        let b = other_cpu();
        let page = Page::containing_address(VirtAddr::new(crate::mm::layout::KERNEL_STACKS_START + 0x7e00_0000));
        let addr = page.start_address().as_u64();
        let ptr = addr as *const u64;
        let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        let mut old = Frame::alloc_zeroed().unwrap();
        let mut new = Frame::alloc_zeroed().unwrap();
        old.bytes_mut()[..8].copy_from_slice(&111u64.to_ne_bytes());
        new.bytes_mut()[..8].copy_from_slice(&222u64.to_ne_bytes());
        let table = kernel_page_table();
        table.map(page, old.phys(), flags).unwrap();
        let read_on_b = || {
            run_on_each(CpuSet::single(b), || {
                // SAFETY: the page is mapped to one of our frames for the whole test.
                unsafe { (addr as *const u64).read_volatile() }
            })[0]
                .1
        };
        assert_eq!(read_on_b(), 111, "B reads the first mapping (and caches it)");

        // Point the page at the other frame, then flush B (and us).
        let _ = table.unmap(page).unwrap();
        table.map(page, new.phys(), flags).unwrap();
        let mut targets = CpuSet::single(b);
        targets.insert(percpu::cpu_id());
        shootdown(targets, FlushScope::Range { start: page.start_address(), pages: 1 });
        assert_eq!(read_on_b(), 222, "after the shootdown B must see the new frame");
        // SAFETY: the page is mapped to our `new` frame.
        assert_eq!(unsafe { ptr.read_volatile() }, 222);

        let _ = table.unmap(page).unwrap();
        shootdown(online(), FlushScope::Range { start: page.start_address(), pages: 1 });
    }

    #[test_case]
    fn the_clock_is_monotonic_across_cpus() {
        let start = time::now_ns();
        let readings = run_on_each(online(), time::now_ns);
        let end = time::now_ns();
        for (cpu, t) in readings {
            assert!(start <= t && t <= end, "CPU {cpu}: {start} <= {t} <= {end}");
        }
        assert!(end > start);
    }

    #[test_case]
    fn kernel_stacks_have_a_guard_page_and_come_back() {
        let free_before = crate::mm::frame::stats().free;
        let stack = KernelStack::new().unwrap();
        // SAFETY: kernel stack memory and its guard page are not device memory.
        assert!(unsafe { probe_read(stack.top() - 8u64) }.is_ok(), "the stack is mapped");
        // SAFETY: as above.
        assert!(unsafe { probe_read(stack.guard_page()) }.is_err(), "the guard page is unmapped");
        drop(stack);
        assert!(crate::mm::frame::stats().free + 3 >= free_before, "stack frames come back");
    }

    #[test_case]
    fn ipi_round_trip_time_is_measured() {
        let b = other_cpu();
        let hits = AtomicU64::new(0);
        let mut samples: Vec<u64> = (0..200)
            .map(|_| {
                let t0 = read_tsc();
                call_on(CpuSet::single(b), &|| {
                    hits.fetch_add(1, Ordering::Relaxed);
                });
                read_tsc() - t0
            })
            .collect();
        assert_eq!(hits.load(Ordering::Relaxed), 200);
        samples.sort_unstable();
        crate::print!("(info: IPI round trip median {} TSC cycles, min {}, over 200) ", samples[100], samples[0]);
    }
}
