//! Page faults: which faults the kernel resolves, how it locks for them, and
//! what happens to the rest. The arch trap code decodes the fault and calls
//! `handle_page_fault`.
//!
//! A fault on a user address (by the program, or by the kernel copying user
//! memory in `uaccess`) is resolved against the current process's VMAs:
//! - first holding only the faulting VMA's read lock, the VMA found in the
//!   RCU-published tree without the `mmap_lock` (`lock_vma_under_rcu`);
//! - if that fails (no VMA there, the VMA is write-locked by a change in
//!   progress, or it was detached twice running), or the kernel was booted
//!   with `--lock mmap`, under the `mmap_lock` for reading, looking the VMA
//!   up again. Every outcome is counted in `MmStats`.
//!
//! If it cannot be resolved, a user-mode fault kills the process with
//! SIGSEGV (SIGBUS past the end of a shared memory object, SIGKILL when
//! memory ran out) and a log line, unless a handler takes the signal; a kernel-mode one
//! is left to the copy's fix-up, which returns EFAULT.
//!
//! A kernel-mode fault on a user address anywhere else (not at the user-copy
//! instruction with its SMAP window open) is a kernel bug: a stray pointer,
//! caught by SMAP (a read or write of a present user page) or SMEP (running
//! one), or simply a missing page. It is reported as a kernel fault, never
//! resolved: quietly mapping the page would hide the bug.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::registers::rflags::RFlags;
use x86_64::VirtAddr;

use super::addrspace::{Access, AddressSpace, Backing, FaultError, PAGE};
use super::fault_around;
use super::fault_probe::{self as probe, Phase};
use super::frame::Frame;
use super::layout::USER_END;
use super::paging::ADDR_MASK;
use super::vma::{vma_start_read, ReadAbort, Vma, VmaLockHeld, VmaReadGuard};
use crate::arch::extable;
use crate::arch::traps::{FaultOutcome, PageFaultInfo, TrapFrame};
use crate::sync::rcu;
use crate::task::{self, signal, Process, Signal, Thread};

/// How faults lock: the per-VMA path first (the default), or always the
/// `mmap_lock` (`boot --lock mmap`), so both designs run on one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    PerVma,
    Mmap,
}

static MMAP_LOCK_ONLY: AtomicBool = AtomicBool::new(false);

pub fn set_lock_mode(mode: LockMode) {
    MMAP_LOCK_ONLY.store(mode == LockMode::Mmap, Ordering::Relaxed);
}

pub fn lock_mode() -> LockMode {
    if MMAP_LOCK_ONLY.load(Ordering::Relaxed) {
        LockMode::Mmap
    } else {
        LockMode::PerVma
    }
}

/// Applies a lock mode given at boot: `boot --lock MODE` puts `vma` or
/// `mmap` in the ramdisk as the file `kernel.lock`.
pub fn set_lock_mode_from_ramdisk(ramdisk: &[u8]) {
    if let Ok(Some(entry)) = crate::task::cpio::find(ramdisk, "kernel.lock") {
        match entry.data.trim_ascii() {
            b"vma" => set_lock_mode(LockMode::PerVma),
            b"mmap" => set_lock_mode(LockMode::Mmap),
            _ => log::warn!("kernel.lock in the ramdisk names no lock mode (vma or mmap); keeping per-VMA locks"),
        }
    }
}

/// Why `lock_vma_under_rcu` gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VmaLockFailure {
    /// No VMA at the address in the published tree.
    Miss,
    /// The VMA is write-locked: a change is in progress.
    Locked,
    /// The VMA found was detached, again after a retry.
    Detached,
}

pub fn handle_page_fault(info: &PageFaultInfo, frame: &mut TrapFrame) -> FaultOutcome {
    if !info.user && super::demand::contains(info.addr) {
        return super::demand::handle_fault(info);
    }
    // Every fault in user mode is the process's business, wherever it points.
    if info.user {
        return user_fault(info, frame);
    }
    if info.addr.as_u64() < USER_END {
        return if !info.instruction_fetch && extable::in_user_copy(frame) {
            user_fault(info, frame)
        } else {
            FaultOutcome::StrayUserAccess
        };
    }
    FaultOutcome::Unhandled
}

fn user_fault(info: &PageFaultInfo, frame: &mut TrapFrame) -> FaultOutcome {
    let interrupts_were_on = RFlags::from_bits_truncate(frame.rflags).contains(RFlags::INTERRUPT_FLAG);
    // A kernel access to user memory where we may not sleep (interrupts or
    // preemption off): do not take mmap_lock; the fix-up reports EFAULT.
    if !info.user && (!interrupts_were_on || !crate::arch::percpu::preemptible()) {
        return FaultOutcome::Unhandled;
    }
    // The running thread, without taking a count of it (two atomic
    // operations a fault need not pay).
    task::with_current_thread(|thread| match thread.process.as_ref() {
        Some(process) => process_fault(info, frame, thread, process),
        None => FaultOutcome::Unhandled,
    })
    .unwrap_or(FaultOutcome::Unhandled)
}

/// `user_fault` for the running thread `thread` of `process`.
fn process_fault(info: &PageFaultInfo, frame: &mut TrapFrame, thread: &Thread, process: &Process) -> FaultOutcome {
    let access = match (info.instruction_fetch, info.write) {
        (true, _) => Access::Execute,
        (false, true) => Access::Write,
        (false, false) => Access::Read,
    };
    let addr = info.addr.as_u64();
    crate::arch::enable_interrupts();
    probe::mark(Phase::Decode);
    let result = if addr < USER_END { process.mm.fault(addr, access) } else { Err(FaultError::NoMapping) };
    let _ = crate::arch::disable_interrupts();
    match result {
        Ok(()) => {
            probe::mark(Phase::Unlock);
            FaultOutcome::Resolved
        }
        Err(FaultError::OutOfMemory) => {
            log::warn!(
                "pid {} (tid {}) killed: out of memory at a {} fault of {addr:#x}",
                process.pid,
                thread.tid,
                info.access()
            );
            process.kill(Signal::Kill);
            if info.user {
                FaultOutcome::Killed
            } else {
                FaultOutcome::Unhandled
            }
        }
        Err(reason) if info.user => {
            let (sig, why, code) = match reason {
                FaultError::NoMapping => (Signal::Segv, "no mapping at this address", signal::SEGV_MAPERR),
                FaultError::BeyondObject => {
                    (Signal::Bus, "past the end of its shared memory object", signal::BUS_ADRERR)
                }
                _ => (Signal::Segv, "the mapping's protection forbids it", signal::SEGV_ACCERR),
            };
            // A handler for the signal runs instead, if the thread has one.
            let delivered = signal::deliver_fault(frame, &signal::SigInfo::fault(sig as u32, code, addr));
            let frame_problem = match delivered {
                Ok(()) => return FaultOutcome::Resolved,
                Err(signal::NotDelivered::BadFrame(problem)) => Some(problem),
                Err(signal::NotDelivered::NoHandler) => None,
            };
            log::warn!(
                "pid {} (tid {}) killed by {}: {} of {addr:#x}: {why} (rip {:#x}){}",
                process.pid,
                thread.tid,
                signal::name(sig as u32),
                info.access(),
                frame.rip,
                FrameProblem(frame_problem)
            );
            process.kill(sig);
            FaultOutcome::Killed
        }
        Err(_) => FaultOutcome::Unhandled,
    }
}

/// The log line's tail when a handler exists but its frame could not be written.
struct FrameProblem(Option<signal::FrameError>);

impl core::fmt::Display for FrameProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(problem) => write!(f, "; its handler could not run: {problem}"),
            None => Ok(()),
        }
    }
}

impl AddressSpace {
    /// Linux's lock_vma_under_rcu: the VMA containing `addr`, read-locked,
    /// found in the published tree without taking the `mmap_lock`.
    pub(super) fn lock_vma_under_rcu(&self, addr: u64) -> Result<VmaReadGuard, VmaLockFailure> {
        let stats = &self.stats;
        let mut retried = false;
        loop {
            let found = {
                let section = rcu::read_lock();
                // The count taken inside the section keeps the VMA alive after it.
                self.published.read(&section).find(addr).cloned()
            };
            probe::mark(Phase::TreeLookup);
            let Some(vma) = found else {
                stats.vma_lock_misses.fetch_add(1, Ordering::Relaxed);
                return Err(VmaLockFailure::Miss);
            };
            match vma_start_read(&self.lock_seq, vma) {
                Ok(guard) => {
                    probe::mark(Phase::VmaLock);
                    return Ok(guard);
                }
                Err(ReadAbort::WriteLocked) => {
                    stats.vma_lock_abort_locked.fetch_add(1, Ordering::Relaxed);
                    return Err(VmaLockFailure::Locked);
                }
                Err(ReadAbort::Detached) => {
                    stats.vma_lock_abort_detached.fetch_add(1, Ordering::Relaxed);
                    // A newer tree is published by now, or about to be.
                    if retried {
                        return Err(VmaLockFailure::Detached);
                    }
                    retried = true;
                    stats.vma_lock_retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Resolves a fault at user address `addr` for `access`: under the VMA's
    /// read lock if it can be had, else under the `mmap_lock`.
    pub fn fault(&self, addr: u64, access: Access) -> Result<(), FaultError> {
        if lock_mode() == LockMode::PerVma {
            probe::mark(Phase::Enter);
            if let Ok(vma) = self.lock_vma_under_rcu(addr) {
                self.stats.vma_lock_success.fetch_add(1, Ordering::Relaxed);
                return self.resolve(&vma, addr, access, &vma, true);
            }
        } else {
            self.stats.mmap_lock_forced.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.mmap_lock_faults.fetch_add(1, Ordering::Relaxed);
        let map = self.read_lock();
        match map.find(addr) {
            Some(vma) => self.resolve(vma, addr, access, &map, true),
            None => Err(FaultError::NoMapping),
        }
    }

    /// Resolves a fault at `addr` in `vma` (which contains it) for `access`,
    /// holding a lock that keeps `vma` as it is (`held`).
    ///
    /// Never maps ahead (no fault-around): for callers that bring in every
    /// page they want themselves (MAP_POPULATE, mlock, the loader).
    pub fn handle_fault(
        &self,
        vma: &Vma,
        addr: u64,
        access: Access,
        held: &impl VmaLockHeld,
    ) -> Result<(), FaultError> {
        self.resolve(vma, addr, access, held, false)
    }

    /// `handle_fault`, with fault-around if `around` (a real fault) and the
    /// fault continues a sequential run (`fault_around.rs`).
    fn resolve(
        &self,
        vma: &Vma,
        addr: u64,
        access: Access,
        held: &impl VmaLockHeld,
        around: bool,
    ) -> Result<(), FaultError> {
        if !vma.allows(access) {
            return Err(FaultError::AccessDenied);
        }
        let page = addr & !(PAGE - 1);
        let window = if around { fault_around::window(vma, page) } else { 1 };
        let ptes = self.ptes(page, window, true, held).ok_or(FaultError::OutOfMemory)?;
        let pte = &ptes[0];
        probe::mark(Phase::Walk);
        let flags = vma.prot.pte_flags().bits();
        loop {
            let old = pte.load(Ordering::Acquire);
            if old == 0 {
                let (phys, owned) = match &vma.backing {
                    Backing::Private => {
                        // A frame an idle CPU zeroed, if this CPU's pool has one.
                        let (mut frame, zeroed) =
                            Frame::alloc_for_user_maybe_zeroed().map_err(|_| FaultError::OutOfMemory)?;
                        probe::mark(Phase::Alloc);
                        if !zeroed {
                            crate::arch::zero_page(frame.bytes_mut());
                        }
                        probe::mark(Phase::Zero);
                        (frame.start().as_u64(), Some(frame))
                    }
                    Backing::Shared { memory, first_page } => {
                        let index = first_page + (page - vma.start) / PAGE;
                        (memory.page(index)?.start_address().as_u64(), None)
                    }
                };
                if pte.compare_exchange(0, phys | flags, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    probe::mark(Phase::Install);
                    if let Some(frame) = owned {
                        let _ = frame.into_raw();
                    }
                    if window > 1 {
                        self.fault_around(vma, page, &ptes[1..], flags);
                    } else if around {
                        Self::note_fault(vma, page);
                    }
                    return Ok(());
                }
                // Another CPU installed the page first: ours is dropped (freed).
                continue;
            }
            // Present (a stale TLB entry here) or PROT_NONE-parked: bring the
            // entry in line with the VMA and flush our own stale translation.
            let new = (old & ADDR_MASK) | flags;
            if old == new || pte.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                crate::arch::tlb::flush_page(VirtAddr::new(page));
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::sync::Arc;
    use core::sync::atomic::AtomicBool;

    use super::*;
    use crate::mm::addrspace::{Advice, MmapRequest, Prot};
    use crate::sync::SpinLock;
    use crate::task::{sched, thread::Thread, timer};

    const RW: Prot = Prot::READ.union(Prot::WRITE);

    fn anon(len: u64) -> MmapRequest {
        MmapRequest { len, prot: RW, ..MmapRequest::default() }
    }

    /// The space and address a helper thread works on, and its progress.
    static SPACE: SpinLock<Option<(Arc<AddressSpace>, u64)>> = SpinLock::new(crate::sync::Level::TestState, None);
    static DONE: AtomicBool = AtomicBool::new(false);

    fn space() -> (Arc<AddressSpace>, u64) {
        SPACE.lock().clone().expect("the test's space")
    }

    fn start_helper(entry: extern "C" fn(usize) -> !, mm: &Arc<AddressSpace>, addr: u64) {
        *SPACE.lock() = Some((mm.clone(), addr));
        DONE.store(false, Ordering::SeqCst);
        sched::enqueue(Thread::new_kernel(entry, 0).expect("a kernel thread"));
    }

    /// Waits up to `ms` for the helper; says whether it finished.
    fn helper_done_within(ms: u64) -> bool {
        let deadline = crate::arch::time::now_ns() + ms * 1_000_000;
        while !DONE.load(Ordering::SeqCst) && crate::arch::time::now_ns() < deadline {
            timer::sleep_ns(1_000_000);
        }
        DONE.load(Ordering::SeqCst)
    }

    fn finish_helper() {
        assert!(helper_done_within(20_000), "the helper thread never finished");
        *SPACE.lock() = None;
    }

    extern "C" fn faulter(_: usize) -> ! {
        let (mm, addr) = space();
        mm.fault(addr, Access::Write).expect("the fault is resolved");
        drop(mm);
        DONE.store(true, Ordering::SeqCst);
        sched::exit_current()
    }

    extern "C" fn protector(_: usize) -> ! {
        let (mm, addr) = space();
        mm.mprotect(addr, addr + PAGE, Prot::READ).expect("mprotect works");
        drop(mm);
        DONE.store(true, Ordering::SeqCst);
        sched::exit_current()
    }

    const RACE_ROUNDS: usize = 300;

    static ZAPPERS_DONE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

    /// Drops the 64 pages at the helper's address, again and again.
    extern "C" fn zapper(_: usize) -> ! {
        let (mm, addr) = space();
        for _ in 0..RACE_ROUNDS {
            mm.madvise(addr, addr + 64 * PAGE, Advice::DontNeed).expect("madvise works");
        }
        drop(mm);
        ZAPPERS_DONE.fetch_add(1, Ordering::SeqCst);
        sched::exit_current()
    }

    /// Maps, touches and unmaps 2 MiB at the helper's address, again and
    /// again: each munmap frees the page table of that range.
    extern "C" fn remapper(_: usize) -> ! {
        let (mm, addr) = space();
        for _ in 0..RACE_ROUNDS {
            let request = MmapRequest { addr, fixed: true, ..anon(2 << 20) };
            mm.mmap(&request).expect("mmap works");
            mm.fault(addr, Access::Write).expect("a fresh page");
            mm.munmap(addr, 2 << 20).expect("munmap works");
        }
        drop(mm);
        DONE.store(true, Ordering::SeqCst);
        sched::exit_current()
    }

    /// Page-table entries have no lock: a fault installs a page with a CAS
    /// on an empty entry, a zap takes the entry with a swap. Two zaps (two
    /// threads' MADV_DONTNEED, each under the VMA's read lock) and faults
    /// racing on the same entries: each frame is owned by exactly one of
    /// them, so none is lost (a leak) and none freed twice (the allocator
    /// panics). A zap that loads the entry and then stores zero (not one
    /// swap) failed this test with a double free once the gap between the
    /// two was widened to 5,000 spins; with 50 it passed one run: the test
    /// catches wide windows reliably, narrow ones by luck.
    #[test_case]
    fn faults_and_zaps_racing_on_the_same_entries_keep_every_frame_once() {
        let before = crate::mm::addrspace::frames_in_use();
        let mm = Arc::new(AddressSpace::new().unwrap());
        let base = mm.mmap(&anon(64 * PAGE)).unwrap();
        ZAPPERS_DONE.store(0, Ordering::SeqCst);
        *SPACE.lock() = Some((mm.clone(), base));
        for _ in 0..2 {
            sched::enqueue(Thread::new_kernel(zapper, 0).expect("a kernel thread"));
        }
        let give_up = crate::arch::time::now_ns() + 60_000_000_000;
        while ZAPPERS_DONE.load(Ordering::SeqCst) < 2 {
            assert!(crate::arch::time::now_ns() < give_up, "the zappers never finished");
            for i in 0..64 {
                mm.fault(base + i * PAGE, Access::Write).unwrap();
            }
        }
        *SPACE.lock() = None;
        drop(mm);
        rcu::rcu_barrier();
        // The zappers' kernel stacks go once their CPUs have switched away
        // from them, a moment after they said they were done.
        let deadline = crate::arch::time::now_ns() + 10_000_000_000;
        while crate::mm::addrspace::frames_in_use() != before && crate::arch::time::now_ns() < deadline {
            timer::sleep_ns(1_000_000);
        }
        assert_eq!(crate::mm::addrspace::frames_in_use(), before);
    }

    /// The freed-table rule: munmap frees a page table only when no VMA left
    /// needs it. A fault next door (same upper tables, its own 2 MiB table)
    /// keeps working while the range beside it is mapped and unmapped, and
    /// the tables come back to what the neighbour needs.
    #[test_case]
    fn a_fault_beside_a_range_whose_tables_are_freed_keeps_its_own() {
        let mm = Arc::new(AddressSpace::new().unwrap());
        let baseline = mm.page_table.user_table_count();
        let near = 0x50_0000_0000;
        mm.mmap(&MmapRequest { addr: near, fixed: true, ..anon(PAGE) }).unwrap();
        mm.fault(near, Access::Write).unwrap();
        let with_neighbour = mm.page_table.user_table_count();
        start_helper(remapper, &mm, near + (2 << 20));
        while !DONE.load(Ordering::SeqCst) {
            mm.fault(near, Access::Write).unwrap();
            assert!(mm.page_table.translate(VirtAddr::new(near)).is_some(), "the neighbour lost its page");
        }
        finish_helper();
        assert_eq!(mm.page_table.user_table_count(), with_neighbour, "the unmapped range's table went");
        mm.munmap(near, PAGE).unwrap();
        assert_eq!(mm.page_table.user_table_count(), baseline);
    }

    #[test_case]
    fn a_fault_does_not_wait_for_an_mmap_writer_unless_booted_with_mmap_locks() {
        let mm = Arc::new(AddressSpace::new().unwrap());
        let base = mm.mmap(&anon(2 * PAGE)).unwrap();
        // Someone holds the mmap write lock (a long mmap elsewhere, say).
        let writer = mm.write_lock();
        start_helper(faulter, &mm, base);
        assert!(helper_done_within(5_000), "the fault waited for the mmap writer");
        drop(writer);
        finish_helper();
        assert_eq!(mm.stats.vma_lock_success.load(Ordering::Relaxed), 1);

        // The same with every fault forced through the mmap lock: it waits.
        set_lock_mode(LockMode::Mmap);
        let writer = mm.write_lock();
        start_helper(faulter, &mm, base + PAGE);
        let finished_early = helper_done_within(300);
        drop(writer);
        finish_helper();
        set_lock_mode(LockMode::PerVma);
        assert!(!finished_early, "with --lock mmap a fault waits for the writer");
        assert_eq!(mm.stats.mmap_lock_forced.load(Ordering::Relaxed), 1);
    }

    #[test_case]
    fn a_change_waits_for_the_vmas_readers_and_refuses_new_ones_meanwhile() {
        let mm = Arc::new(AddressSpace::new().unwrap());
        let base = mm.mmap(&anon(PAGE)).unwrap();
        let reader = mm.lock_vma_under_rcu(base).expect("an unlocked VMA");
        start_helper(protector, &mm, base);
        assert!(!helper_done_within(300), "mprotect changed a VMA a fault was using");
        assert_eq!(mm.lock_vma_under_rcu(base).err(), Some(VmaLockFailure::Locked), "a writer is waiting");
        drop(reader);
        finish_helper();
        let after = mm.lock_vma_under_rcu(base).expect("unlocked once mprotect returned");
        assert_eq!(after.prot, Prot::READ);
    }

    #[test_case]
    fn a_vma_found_before_munmap_is_refused_after_it() {
        let mm = AddressSpace::new().unwrap();
        let base = mm.mmap(&anon(PAGE)).unwrap();
        let stale = {
            let section = rcu::read_lock();
            mm.published.read(&section).find(base).cloned().expect("published")
        };
        mm.munmap(base, PAGE).unwrap();
        assert_eq!(vma_start_read(&mm.lock_seq, stale).err(), Some(ReadAbort::Detached));
        assert_eq!(mm.fault(base, Access::Read), Err(FaultError::NoMapping));
        assert_eq!(mm.stats.vma_lock_misses.load(Ordering::Relaxed), 1);
    }

    #[test_case]
    fn vmas_a_change_makes_stay_locked_until_it_is_done() {
        let mm = AddressSpace::new().unwrap();
        let base = mm.mmap(&anon(2 * PAGE)).unwrap();
        let mut map = mm.write_lock();
        map.split_at(base + PAGE);
        // Readers still see the old tree, whose VMA is write-locked now.
        assert_eq!(mm.lock_vma_under_rcu(base).err(), Some(VmaLockFailure::Locked));
        // The new VMAs are locked from birth: a reader of the writer's tree fails too.
        let front = map.find(base).expect("split").clone();
        assert_eq!(vma_start_read(&mm.lock_seq, front).err(), Some(ReadAbort::WriteLocked));
        drop(map);
        let front = mm.lock_vma_under_rcu(base).expect("unlocked with the mmap lock");
        assert_eq!((front.start, front.end), (base, base + PAGE));
    }
}
