//! Processes: an address space shared by a group of threads, and how the
//! group ends (exit_group, a fatal signal, or its last thread exiting).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::sched;
use super::thread::Thread;
use super::wait::WaitQueue;
use crate::mm::addrspace::AddressSpace;
use crate::sync::{Level, SpinLock};

/// The signals the kernel delivers itself (always fatal: no handlers yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Ill = 4,
    Trap = 5,
    Bus = 7,
    Fpe = 8,
    Kill = 9,
    Segv = 11,
}

/// Process and thread ids come from one space, as on Linux.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Every process, for diagnostics (`debug_dump`).
static PROCESSES: SpinLock<Vec<alloc::sync::Weak<Process>>> = SpinLock::new(Level::ProcessList, Vec::new());

/// Prints every live user thread's state (from the NMI diagnostics path:
/// only `try_lock`, never waits).
pub fn debug_dump() {
    let Some(processes) = PROCESSES.try_lock() else { return };
    for process in processes.iter().filter_map(|p| p.upgrade()) {
        let Some(threads) = process.threads.try_lock() else { continue };
        for t in threads.iter() {
            crate::console::emergency_print(format_args!(
                "  pid {} tid {} {:?} on_cpu={} last_cpu={}\n",
                process.pid,
                t.tid,
                t.state(),
                t.on_cpu.load(Ordering::Relaxed),
                t.last_cpu.load(Ordering::Relaxed)
            ));
        }
    }
}

/// Every process still alive (for /proc).
pub fn live() -> Vec<Arc<Process>> {
    PROCESSES.lock().iter().filter_map(|p| p.upgrade()).collect()
}

pub struct Process {
    pub pid: u32,
    pub parent_pid: u32,
    pub mm: Arc<AddressSpace>,
    /// Open files from fd 3 up (0-2 are the console).
    pub files: crate::fs::FdTable,
    /// Threads that have not exited yet.
    threads: SpinLock<Vec<Arc<Thread>>>,
    /// Every thread ever started, weakly (diagnostics of late teardown).
    all_threads: SpinLock<Vec<alloc::sync::Weak<Thread>>>,
    /// `Thread` objects of this process still allocated (their kernel
    /// stacks included); leak checks wait for zero.
    pub(super) thread_objects: AtomicUsize,
    /// The first thread's id is the pid.
    first_tid_taken: AtomicBool,
    /// Set once the group is going down; every thread leaves at its next
    /// return towards user mode.
    exiting: AtomicBool,
    /// The wait status: exit code, or 128 + signal. Set once, first wins.
    status: SpinLock<Option<u8>>,
    /// All threads have exited.
    done: AtomicBool,
    done_queue: WaitQueue,
    /// Signal actions and the process-wide pending set.
    pub signals: super::signal::ProcessSignals,
    /// Resource limits (getrlimit, setrlimit, prlimit64); RLIMIT_NOFILE and
    /// RLIMIT_AS are enforced.
    pub limits: SpinLock<[[u64; 2]; 16]>,
    /// membarrier's registrations (its REGISTER_* command bits).
    pub membarrier: AtomicU64,
}

impl Process {
    pub fn new(mm: AddressSpace, parent_pid: u32) -> Arc<Process> {
        let process = Arc::new(Process {
            pid: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            parent_pid,
            mm: Arc::new(mm),
            files: crate::fs::FdTable::new(),
            threads: SpinLock::new(Level::ProcessThreads, Vec::new()),
            all_threads: SpinLock::new(Level::ProcessThreads, Vec::new()),
            thread_objects: AtomicUsize::new(0),
            first_tid_taken: AtomicBool::new(false),
            exiting: AtomicBool::new(false),
            status: SpinLock::new(Level::ProcessStatus, None),
            done: AtomicBool::new(false),
            done_queue: WaitQueue::new(),
            signals: super::signal::ProcessSignals::default(),
            limits: SpinLock::new(Level::ProcessLimits, crate::syscall::default_limits()),
            membarrier: AtomicU64::new(0),
        });
        let mut all = PROCESSES.lock();
        all.retain(|p| p.strong_count() > 0);
        all.push(Arc::downgrade(&process));
        process
    }

    /// An id for a new thread: the pid for the first, fresh ones after.
    pub(super) fn next_tid(&self) -> u32 {
        if !self.first_tid_taken.swap(true, Ordering::AcqRel) {
            self.pid
        } else {
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        }
    }

    /// Registers a new thread and makes it runnable.
    pub fn start_thread(&self, thread: Arc<Thread>) {
        self.all_threads.lock().push(Arc::downgrade(&thread));
        self.threads.lock().push(thread.clone());
        sched::enqueue(thread);
    }

    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::Acquire)
    }

    /// Ends the whole group with `status` (exit_group).
    pub fn exit_group(&self, code: u8) {
        self.terminate(code);
    }

    /// Ends the whole group by a fatal signal: status 128 + signal.
    pub fn kill(&self, signal: Signal) {
        self.terminate(128 + signal as u8);
    }

    /// Ends the whole group by signal number `signo` (1 to 64): status 128 + signo.
    pub fn kill_by_signal(&self, signo: u8) {
        self.terminate(128u8.wrapping_add(signo));
    }

    /// The live threads, at one moment.
    pub fn threads_snapshot(&self) -> Vec<Arc<Thread>> {
        self.threads.lock().clone()
    }

    /// The live thread with id `tid`.
    pub fn find_thread(&self, tid: u32) -> Option<Arc<Thread>> {
        self.threads.lock().iter().find(|t| t.tid == tid).cloned()
    }

    fn terminate(&self, status: u8) {
        {
            let mut current = self.status.lock();
            if current.is_none() {
                *current = Some(status);
            }
        }
        self.exiting.store(true, Ordering::Release);
        self.kick_threads();
    }

    /// Gets every thread moving towards its exit: interruptible sleepers
    /// (futex, nanosleep, console read) return, threads on other CPUs are
    /// poked, and every thread leaves at its next return towards user mode.
    /// `sched::interrupt` decides under the scheduler lock, so a thread that
    /// is just going to sleep cannot miss it (it once could, and the process
    /// then never ended).
    fn kick_threads(&self) {
        let threads: Vec<Arc<Thread>> = self.threads.lock().clone();
        for thread in threads {
            sched::interrupt(&thread);
        }
    }

    /// Removes an exiting thread; the last one out finishes the process.
    pub(super) fn thread_exited(&self, thread: &Arc<Thread>, code: u8) {
        let last = {
            let mut threads = self.threads.lock();
            threads.retain(|t| !Arc::ptr_eq(t, thread));
            threads.is_empty()
        };
        if last {
            {
                let mut status = self.status.lock();
                if status.is_none() {
                    *status = Some(code);
                }
            }
            self.exiting.store(true, Ordering::Release);
            self.done.store(true, Ordering::Release);
            self.done_queue.wake_all();
        }
    }

    /// Waits until every thread has exited; returns the wait status.
    pub fn wait(&self) -> u8 {
        self.done_queue.wait_until(|| self.done.load(Ordering::Acquire));
        self.status.lock().unwrap_or(0)
    }

    /// Prints the threads of this process that are still allocated, and the
    /// scheduler's state: for diagnosing a teardown that does not finish.
    pub fn dump_lingering_threads(&self) {
        for thread in self.all_threads.lock().iter().filter_map(|t| t.upgrade()) {
            log::warn!(
                "  lingering tid {}: {:?}, on_cpu {}, last cpu {}, {} references \
                 ({} from timers, {} from futex wait queues, {} from run queues)",
                thread.tid,
                thread.state(),
                thread.on_cpu.load(Ordering::Relaxed),
                thread.last_cpu.load(Ordering::Relaxed),
                Arc::strong_count(&thread) - 1,
                super::timer::references_to(&thread),
                super::futex::references_to(&thread),
                sched::references_to(&thread),
            );
        }
        sched::debug_dump();
    }

    /// Thread objects still allocated.
    pub fn live_thread_objects(&self) -> usize {
        self.thread_objects.load(Ordering::Acquire)
    }
}
