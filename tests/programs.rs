//! Every program in user/ booted as /init on 1, 2 and 4 CPUs: its output
//! (minus `info:` lines) and exit status must be what Linux gave
//! (user/expected/), no frame may leak, and kills must be logged. The
//! programs whose threads fault while others change mappings run once more
//! on 4 CPUs with every fault forced through the mmap lock (`--lock mmap`),
//! so both fault paths are held to the same results. `PROGRAMS=a,b`
//! (comma-separated names) narrows every test to those programs.

use e2e::{problems_with, run_program, user_program};

const PROGRAMS: &[&str] = &[
    "hello",
    "exit_status",
    "args",
    "demo",
    "syscalls",
    "threads",
    "many_vmas",
    "fault_rate",
    "oom",
    "segv_read",
    "segv_write_ro",
    "segv_exec_nx",
    "segv_munmap_race",
    "segv_mprotect_race",
    "c_hello",
    "c_exit7",
    "c_mmap",
    "c_segv",
    "c_threads",
    // Faults beside VMAs that change (guards the per-VMA-lock rewrite).
    "vma_neighbours",
    // Regression programs (user/README.md).
    "overflow_args",
    "huge_prot_none",
    "thread_limit",
    "vma_cap",
    "semantics",
    "console_write",
    "c_madv_loop",
    "stale_tlb_write",
    // Signals (issue 11): handlers for faults, sigaltstack, between threads.
    "c_sig_barrier",
    "c_sig_altstack",
    "c_sig_threads",
    "c_musl_sig_barrier",
    "c_sig_badframe",
    // /proc (expected output from linux-peer).
    "proc_read",
    // mremap: growth, moves, MREMAP_FIXED/DONTUNMAP, shared memory, realloc.
    "c_mremap",
    "c_musl_mremap",
    // Real programs (glibc and musl with pthreads): allocators under
    // threads, robust mutexes, EINTR and restarts, the calls they make.
    "c_malloc_stress",
    "c_musl_malloc_stress",
    "c_robust",
    "c_musl_robust",
    "c_eintr",
    "c_musl_eintr",
    "c_syscalls",
    // madvise hints as VMA flags (splits and merges) and fault-around's
    // effect on mincore.
    "c_madv_flags",
    // The console fds (expected output from linux-peer).
    "c_console",
];

/// Threads that fault while other threads change the address space.
const CONCURRENT: &[&str] = &[
    "threads",
    "segv_munmap_race",
    "segv_mprotect_race",
    "c_threads",
    "vma_neighbours",
    "c_madv_loop",
    "stale_tlb_write",
    // Threads mprotect from their SIGSEGV handlers while the others fault.
    "c_sig_barrier",
    "semantics",
    // One thread faults its mappings in while another moves a mapping with mremap.
    "c_mremap",
    // Eight threads malloc, realloc and free: the allocators map, unmap
    // and fault in arenas at once.
    "c_malloc_stress",
    "c_musl_malloc_stress",
];

fn check_all(smp: u32) {
    check(PROGRAMS, smp, &[]);
}

/// `PROGRAMS=a,b cargo test ...` runs only the programs named.
fn selected(name: &str) -> bool {
    std::env::var("PROGRAMS").map_or(true, |list| list.split(',').any(|p| p == name))
}

fn check(programs: &[&str], smp: u32, extra: &[&str]) {
    let mut failures = Vec::new();
    for name in programs.iter().filter(|name| selected(name)) {
        let run = run_program(&user_program(name), smp, extra);
        let problems = problems_with(name, &run);
        println!("smp {smp} {extra:?} {name}: {}", if problems.is_empty() { "ok" } else { "FAILED" });
        if !problems.is_empty() {
            let kernel_lines: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("[kernel]")).collect();
            failures.push(format!(
                "{name} on {smp} CPUs {extra:?}: {}\nkernel said:\n{}\n{}",
                problems.join("; "),
                kernel_lines.join("\n"),
                run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn programs_on_one_cpu() {
    check_all(1);
}

#[test]
fn programs_on_two_cpus() {
    check_all(2);
}

#[test]
fn programs_on_four_cpus() {
    check_all(4);
}

#[test]
fn concurrent_programs_on_four_cpus_with_mmap_locks() {
    check(CONCURRENT, 4, &["--lock", "mmap"]);
}

/// /proc/vmstat as a program sees it move: proc_read reads it before and
/// after faults, page tables made and freed, a munmap while a second
/// thread runs on another CPU and a wait for a grace period, and prints
/// each counter's growth on `info: vmstat: NAME +N` lines (Linux lacks most
/// of these counters, so they are not part of its compared output). With
/// `--lock mmap` no fault takes the VMA lock.
#[test]
fn proc_vmstat_counters_move_with_the_work_that_counts_them() {
    const NAMES: [&str; 14] = [
        "pgfault",
        "vma_lock_success",
        "vma_lock_abort",
        "vma_lock_retry",
        "vma_lock_miss",
        "tlb_shootdowns",
        "tlb_ipis",
        "rcu_grace_periods",
        "pgtables_allocated",
        "pgtables_freed",
        "pgfault_around",
        "zero_pool_hits",
        "zero_pool_misses",
        "zero_pool_filled",
    ];
    // The mmap-lock boot also has the zero pool on (off by default).
    for (lock, pool) in [("vma", "off"), ("mmap", "on")] {
        let run = run_program(&user_program("proc_read"), 2, &["--lock", lock, "--zero-pool", pool]);
        let problems = problems_with("proc_read", &run);
        assert!(problems.is_empty(), "proc_read with --lock {lock}: {}", problems.join("; "));
        let grew = |name: &str| -> Option<u64> {
            let prefix = format!("info: vmstat: {name} +");
            run.stdout.lines().find_map(|l| l.trim_end().strip_prefix(prefix.as_str())?.parse().ok())
        };
        for name in NAMES {
            assert!(grew(name).is_some(), "--lock {lock}: no {name} in /proc/vmstat:\n{}", run.stdout);
        }
        let at_least = |name: &str, n: u64| {
            let got = grew(name).unwrap_or(0);
            assert!(got >= n, "--lock {lock}: {name} grew by {got}, expected at least {n}");
        };
        // 64 fresh pages (MADV_NOHUGEPAGE) and 4 pages in 2 MiB steps, each
        // written once, fault once each.
        at_least("pgfault", 68);
        // 64 pages written in order: all but the first blocks' starts are
        // mapped ahead (64 KiB blocks; the run begins at the second page).
        at_least("pgfault_around", 48);
        if lock == "vma" {
            at_least("vma_lock_success", 68);
        } else {
            assert_eq!(grew("vma_lock_success"), Some(0), "--lock mmap: a fault took the VMA lock");
        }
        // Each munmap of written pages flushes; the one beside the spinner
        // sends it an IPI.
        at_least("tlb_shootdowns", 2);
        at_least("tlb_ipis", 1);
        // Four 2 MiB steps of one 8 MiB mapping need four page tables, and
        // unmapping the whole frees them.
        at_least("pgtables_allocated", 4);
        at_least("pgtables_freed", 4);
        at_least("rcu_grace_periods", 1);
        // Every fault on a fresh private page asks for a zeroed frame (one
        // the pool had, or one the faulting CPU zeroed); with the pool off
        // no idle CPU zeroes any, so none comes from a pool.
        let asked = grew("zero_pool_hits").unwrap_or(0) + grew("zero_pool_misses").unwrap_or(0);
        assert!(asked >= 68, "--lock {lock} --zero-pool {pool}: {asked} zeroed frames asked for, expected at least 68");
        if pool == "off" {
            assert_eq!(
                (grew("zero_pool_filled"), grew("zero_pool_hits")),
                (Some(0), Some(0)),
                "--zero-pool off: idle CPUs zeroed frames, or faults took them from a pool"
            );
        }
    }
    // Switched off at boot, fault-around maps nothing ahead.
    let run = run_program(&user_program("proc_read"), 2, &["--fault-around", "off"]);
    let problems = problems_with("proc_read", &run);
    assert!(problems.is_empty(), "proc_read with --fault-around off: {}", problems.join("; "));
    let around = run.stdout.lines().find_map(|l| l.trim_end().strip_prefix("info: vmstat: pgfault_around +"));
    assert_eq!(around, Some("0"), "--fault-around off:\n{}", run.stdout);
}
