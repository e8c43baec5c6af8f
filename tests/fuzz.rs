//! The fuzzers on 4 CPUs, once each per run with a fresh seed: the syscall
//! fuzzer (random and hostile arguments to every system call) and the
//! model-based mm fuzzer (threads checking their own regions against a
//! shadow model while the others change the same address space). The kernel
//! must survive, the program must end as on Linux (user/expected/), and every
//! frame must come back. A failure names the seed: `boot --arg SEED`
//! replays it.

use e2e::{problems_with, run_program, user_program};

/// A seed that differs from run to run (the host's clock and pid).
fn fresh_seed() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:#x}", (nanos as u64) ^ ((std::process::id() as u64) << 32))
}

/// One fuzzer boot at a time: each takes 4 vCPUs, and three at once on a
/// 2-core host left so little time to each vCPU that a flush IPI waited
/// milliseconds for its target to run, and mmfuzz ran past its time limit.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `pool`: `boot --zero-pool`, so that a fuzzer also runs with idle CPUs
/// zeroing frames into the pools the faults take from.
fn fuzz(name: &str, lock: &str, pool: &str) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let seed = fresh_seed();
    let run = run_program(&user_program(name), 4, &["--arg", &seed, "--lock", lock, "--zero-pool", pool]);
    let problems = problems_with(name, &run);
    let kernel_lines: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("[kernel]")).collect();
    let setting = format!("--lock {lock} --zero-pool {pool}");
    println!("{name} (seed {seed}, {setting}): {}", if problems.is_empty() { "ok" } else { "FAILED" });
    assert!(
        problems.is_empty(),
        "{name} with seed {seed} (replay: boot --smp 4 {setting} --init user/out/{name} --arg {seed} KERNEL): \
         {}\nkernel said:\n{}",
        problems.join("; "),
        kernel_lines.join("\n")
    );
}

#[test]
fn syscall_fuzzer_on_four_cpus() {
    fuzz("sysfuzz", "vma", "off");
}

#[test]
fn mm_model_fuzzer_on_four_cpus() {
    fuzz("mmfuzz", "vma", "off");
}

/// The same with every fault through the mmap lock: the fallback path is
/// the one the per-VMA path leans on, so it gets the same scrutiny.
#[test]
fn mm_model_fuzzer_on_four_cpus_with_mmap_locks() {
    fuzz("mmfuzz", "mmap", "off");
}

/// And with the zero pool on (off by default): faults take frames idle CPUs
/// zeroed while the others unmap, and the filler competes for the frames.
#[test]
fn mm_model_fuzzer_on_four_cpus_with_the_zero_pool() {
    fuzz("mmfuzz", "vma", "on");
}
