//! End-to-end tests of `boot` and of a whole kernel boot.

use e2e::{boot, boot_kernel, boot_with_input, fake_qemu, kernel, run_program, scratch_dir, test_kernel, user_program};

#[test]
fn kernel_boots_runs_init_and_exits_with_its_status() {
    let hello = user_program("hello");
    let run = boot_kernel(2, &["--init", hello.to_str().unwrap()]);
    assert_eq!(run.status, Some(0), "{run:#?}");
    // Quiet by default: the summary line, then only the program.
    assert_eq!(run.stdout, "[kernel] smp: 2 CPUs online\nHello, world!\n");
    let run = run_program(&user_program("exit_status"), 2, &[]);
    assert_eq!(run.status, Some(42), "{run:#?}");
}

#[test]
fn missing_init_is_a_clear_failure() {
    let run = boot_kernel(1, &[]);
    assert_eq!(run.status, Some(127), "{run:#?}");
    assert!(run.stdout.contains("[kernel] error: no ramdisk, so no /init to run"), "{}", run.stdout);
}

#[test]
fn malformed_init_is_a_clear_failure() {
    let dir = scratch_dir("malformed");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("init.sh");
    std::fs::write(&script, "#!/bin/sh\necho not an ELF file\n").unwrap();
    let run = boot_kernel(1, &["--init", script.to_str().unwrap()]);
    assert_eq!(run.status, Some(126), "{run:#?}");
    assert!(run.stdout.contains("[kernel] error: cannot run /init"), "{}", run.stdout);
}

#[test]
fn bad_option_prints_usage_and_fails() {
    let run = boot(&["--frobnicate", "kernel"], &[]);
    assert_eq!(run.status, Some(2));
    assert!(run.stderr.contains("unknown option '--frobnicate'"), "{}", run.stderr);
    assert!(run.stderr.contains("usage: boot"), "{}", run.stderr);
}

#[test]
fn bad_values_are_rejected_with_a_reason() {
    for (args, reason) in [
        (&["--smp", "0", "k"][..], "--smp wants a number from 1 to 64"),
        (&["--mem", "lots", "k"][..], "--mem wants a size"),
        (&["--timeout", "soon", "k"][..], "--timeout wants whole seconds"),
        (&["--smp"][..], "option --smp needs a value"),
        (&["--log", "loud", "k"][..], "--log wants error, warn, info, debug or trace"),
        (&[][..], "no KERNEL file given"),
    ] {
        let run = boot(args, &[]);
        assert_eq!(run.status, Some(2), "{args:?}");
        assert!(run.stderr.starts_with(&format!("boot: {reason}")), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn help_prints_usage_and_succeeds() {
    let run = boot(&["--help"], &[]);
    assert_eq!(run.status, Some(0));
    assert!(run.stdout.starts_with("usage: boot"));
}

#[test]
fn missing_kernel_file_is_one_line() {
    let run = boot(&["/nonexistent/kernel"], &[]);
    assert_eq!(run.status, Some(2));
    assert_eq!(run.stderr, "boot: kernel '/nonexistent/kernel' does not exist\n");
}

#[test]
fn missing_qemu_is_reported() {
    let kernel = kernel().to_str().unwrap();
    let run = boot(&["--qemu", "/nonexistent/qemu-system-x86_64", kernel], &[]);
    assert_eq!(run.status, Some(2));
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
    assert!(run.stderr.contains("apt-get install qemu-system-x86"), "{}", run.stderr);
}

#[test]
fn hung_guest_is_killed_at_the_time_limit() {
    let qemu = fake_qemu(&scratch_dir("timeout"), "qemu", "exec sleep 60");
    let kernel = kernel().to_str().unwrap();
    let started = std::time::Instant::now();
    let run = boot(&["--qemu", qemu.to_str().unwrap(), "--timeout", "1", kernel], &[]);
    assert_eq!(run.status, Some(124));
    assert!(run.stderr.contains("timed out after 1 s"), "{}", run.stderr);
    assert!(started.elapsed().as_secs() < 30, "the fake QEMU was stopped, not waited for");
}

/// A fake QEMU that writes `status` to the debugcon file and exits with `code`,
/// as QEMU does when the kernel writes to isa-debug-exit.
fn exit_protocol(test: &str, code: i32, status: Option<u8>) -> Option<i32> {
    let write_status = match status {
        Some(byte) => format!("printf '\\{byte:03o}' > \"$debugcon\""),
        None => String::new(),
    };
    let script = format!(
        r#"while [ $# -gt 0 ]; do
  if [ "$1" = -debugcon ]; then debugcon="${{2#file:}}"; fi
  shift
done
{write_status}
exit {code}"#
    );
    let qemu = fake_qemu(&scratch_dir(test), "qemu", &script);
    let kernel = kernel().to_str().unwrap();
    boot(&["--qemu", qemu.to_str().unwrap(), kernel], &[]).status
}

#[test]
fn exit_status_follows_the_kernel() {
    assert_eq!(exit_protocol("shutdown0", 33, Some(0)), Some(0));
    assert_eq!(exit_protocol("shutdown139", 33, Some(139)), Some(139), "init's status passes through");
    assert_eq!(exit_protocol("failure", 35, None), Some(101), "kernel failure");
    assert_eq!(exit_protocol("lockup", 37, None), Some(102), "kernel lockup");
    assert_eq!(exit_protocol("reset", 0, None), Some(101), "a triple fault is not success");
}

#[test]
fn boots_on_one_cpu() {
    let hello = user_program("hello");
    let run = boot_kernel(1, &["--init", hello.to_str().unwrap()]);
    assert_eq!(run.status, Some(0), "{run:#?}");
    assert!(run.stdout.contains("[kernel] smp: 1 CPUs online\n"), "{}", run.stdout);
}

#[test]
fn boots_on_eight_cpus() {
    let threads = user_program("threads");
    let run = boot_kernel(8, &["--mem", "1G", "--init", threads.to_str().unwrap()]);
    assert_eq!(run.status, Some(0), "{run:#?}");
    assert!(run.stdout.contains("[kernel] smp: 8 CPUs online\n"), "{}", run.stdout);
    assert!(run.stdout.contains("threads: ok"), "{}", run.stdout);
}

#[test]
fn read_from_fd_0_gets_a_line_typed_on_the_console() {
    let program = user_program("read_line");
    let kernel = kernel().to_str().unwrap().to_string();
    let run = boot_with_input(&["--init", program.to_str().unwrap(), &kernel], b"hello kernel\n");
    assert_eq!(run.status, Some(0), "{run:#?}");
    // What Linux gives for the same line on a tty in canonical mode.
    assert!(run.stdout.contains("read_line: got 13 bytes: \"hello kernel\\n\"\n"), "{}", run.stdout);
}

#[test]
fn a_cpu_stuck_with_interrupts_off_is_reported_as_a_lockup() {
    // CPU 1 spins with interrupts off; "exit-status" tells the test kernel
    // to let the lockup stop the kernel as it would in a real run.
    let kernel = test_kernel("lockup");
    let run = boot(&["--smp", "2", kernel.to_str().unwrap(), "exit-status"], &[]);
    assert_eq!(run.status, Some(102), "{run:#?}");
    assert!(run.stderr.contains("boot: kernel lockup: a CPU stopped making progress"), "{}", run.stderr);
    for line in [
        "[kernel] lockup: cpu 1 took no timer tick for ",
        "hard lockup (stuck with interrupts off)",
        "[kernel] lockup: cpu 1 (stuck): kernel mode, rip 0x",
        "interrupts off, preempt count",
        "[kernel] lockup:   backtrace: +0x",
        "[kernel] lockup: cpu 0 (reporting): kernel mode, rip 0x",
        "[kernel] lockup: stopping the kernel",
    ] {
        assert!(run.stdout.contains(line), "no '{line}' in:\n{}", run.stdout);
    }
}
