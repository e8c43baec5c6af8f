//! The fault path each lock mode takes, read off the kernel's counters for
//! init's address space (its `mm of init` line) after `fault_storm`: one
//! thread faulting and dropping pages while another maps and unmaps.
//! Per-VMA locks must carry nearly every fault even while the mappings
//! change; `--lock mmap` must send every one through the mmap lock.

use e2e::{run_program, user_program};

/// The numbers of the `mm of init` line, in order: faults, under the VMA
/// lock, (its percentage, two numbers), under the mmap lock, forced, ...
fn mm_counters(stdout: &str) -> Vec<u64> {
    let line = stdout.lines().find(|l| l.contains("mm of init")).expect("the kernel's mm line");
    line.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).filter_map(|w| w.parse().ok()).collect()
}

fn storm(lock: &str) -> (u64, u64, u64, u64) {
    let run = run_program(&user_program("fault_storm"), 2, &["--arg", "40", "--arg", "1", "--lock", lock]);
    assert_eq!(run.status, Some(0), "fault_storm failed:\n{}{}", run.stdout, run.stderr);
    let numbers = mm_counters(&run.stdout);
    println!("--lock {lock}: {}", run.stdout.lines().find(|l| l.contains("mm of init")).unwrap_or(""));
    (numbers[0], numbers[1], numbers[4], numbers[5])
}

#[test]
fn per_vma_locks_take_nearly_every_fault_beside_an_mmap_storm() {
    let (faults, per_vma, _, forced) = storm("vma");
    // 2 cases x 40 rounds x 512 pages, plus the program's own start-up.
    assert!(faults >= 2 * 40 * 512, "{faults} faults");
    assert_eq!(forced, 0);
    assert!(per_vma * 100 >= faults * 95, "only {per_vma} of {faults} faults under the VMA lock");
}

#[test]
fn mmap_locks_take_every_fault() {
    let (faults, per_vma, under_mmap, forced) = storm("mmap");
    assert!(faults >= 2 * 40 * 512, "{faults} faults");
    assert_eq!(per_vma, 0, "a fault took the per-VMA path with --lock mmap");
    assert_eq!((under_mmap, forced), (faults, faults));
}
