//! Helpers for the end-to-end tests: build the kernel and `boot` once, run
//! `boot` like a user would, and capture what it printed and returned.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status =
        Command::new(cargo).arg("build").args(args).current_dir(workspace_root()).status().expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// The kernel binary (`make run` boots the same one).
pub fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(|| {
        cargo_build(&["-p", "kernel", "--bin", "kernel", "--target", KERNEL_TARGET]);
        target_dir().join(KERNEL_TARGET).join("debug").join("kernel")
    })
}

/// A test kernel of the kernel crate (`kernel/tests/NAME.rs`), built as
/// `cargo test` builds it; cargo names the binary with a hash, so its path
/// comes from cargo's JSON messages.
pub fn test_kernel(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "-p", "kernel", "--test", name, "--target", KERNEL_TARGET, "--message-format=json"])
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo build --test {name} failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let artifact = stdout
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains(&format!(r#""name":"{name}""#)))
        .find(|l| l.contains(r#""kind":["test"]"#))
        .unwrap_or_else(|| panic!("cargo reported no test binary '{name}'"));
    let (_, rest) = artifact.split_once(r#""executable":""#).expect("a test artifact has an executable");
    PathBuf::from(&rest[..rest.find('"').expect("a JSON string ends")])
}

/// The `boot` host program.
pub fn boot_program() -> &'static Path {
    static BOOT: OnceLock<PathBuf> = OnceLock::new();
    BOOT.get_or_init(|| {
        cargo_build(&["-p", "boot", "--target", HOST_TARGET]);
        target_dir().join(HOST_TARGET).join("debug").join("boot")
    })
}

/// What one run of `boot` printed and returned.
#[derive(Debug)]
pub struct Run {
    pub status: Option<i32>,
    /// Serial console output, with the console's CR LF turned back into LF.
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            status: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n"),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `boot` with `args` and the given environment on top of ours.
pub fn boot(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(boot_program());
    command.args(args).env("BOOT_TIMEOUT", "120");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("boot runs").into()
}

/// Runs `boot` and types `input` on the console once the kernel has booted
/// (input sent earlier would be flushed when the kernel sets up the UART).
pub fn boot_with_input(args: &[&str], input: &[u8]) -> Run {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    let mut child = Command::new(boot_program())
        .args(args)
        .env("BOOT_TIMEOUT", "120")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("boot runs");
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read stdout") == 0 {
            break;
        }
        seen.push_str(&line);
        if line.contains("CPUs online") {
            stdin.write_all(input).expect("input written");
            break;
        }
    }
    stdout.read_to_string(&mut seen).expect("read stdout");
    drop(stdin);
    let output = child.wait_with_output().expect("boot finishes");
    Run {
        status: output.status.code(),
        stdout: seen.replace("\r\n", "\n"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Boots the kernel on `smp` CPUs with `extra` options.
pub fn boot_kernel(smp: u32, extra: &[&str]) -> Run {
    let smp = smp.to_string();
    let kernel = kernel().to_str().expect("UTF-8 path").to_string();
    let mut args = vec!["--smp", &smp];
    args.extend_from_slice(extra);
    args.push(&kernel);
    boot(&args, &[])
}

/// Writes an executable shell script standing in for QEMU; returns its path.
pub fn fake_qemu(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("scratch directory");
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write fake qemu");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

pub fn scratch_dir(test: &str) -> PathBuf {
    target_dir().join("e2e-scratch").join(test)
}

/// Our user programs (built by `make -C user`), by name.
pub fn user_program(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("make")
            .args(["-C", "user", "--no-print-directory"])
            .current_dir(workspace_root())
            .status()
            .expect("make runs");
        assert!(status.success(), "make -C user failed");
    });
    workspace_root().join("user").join("out").join(name)
}

/// What Linux printed and returned for `name` (user/expected/, from `make -C user bless`).
pub fn expected(name: &str) -> (String, i32) {
    let dir = workspace_root().join("user").join("expected");
    let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).expect("expected output");
    let status = std::fs::read_to_string(dir.join(format!("{name}.status"))).expect("expected status");
    (out, status.trim().parse().expect("a number"))
}

/// The program's own output: without kernel lines and `info:` lines
/// (which hold values that vary from run to run).
pub fn program_output(stdout: &str) -> String {
    stdout.lines().filter(|l| !l.starts_with("[kernel]") && !l.starts_with("info:")).map(|l| format!("{l}\n")).collect()
}

/// Boots `program` as /init on `smp` CPUs with kernel info logging.
pub fn run_program(program: &Path, smp: u32, extra: &[&str]) -> Run {
    let smp = smp.to_string();
    let init = program.to_str().expect("UTF-8 path").to_string();
    let kernel = kernel().to_str().expect("UTF-8 path").to_string();
    let mut args = vec!["--smp", &smp, "--log", "info", "--init", &init];
    args.extend_from_slice(extra);
    args.push(&kernel);
    boot(&args, &[])
}

/// The kernel's frame count before and after init ran, from its info line.
pub fn frames_before_after(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout.lines().find(|l| l.contains("frames in use before"))?;
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).filter_map(|w| w.parse().ok()).collect();
    // "... status S; frames in use before B, after A"
    match numbers.as_slice() {
        [.., before, after] => Some((*before, *after)),
        _ => None,
    }
}

/// What is wrong with a run of user program `name` against Linux's record
/// (user/expected/): its status, its output, frames it leaked, a kill without
/// its log line. Empty when the run is right.
pub fn problems_with(name: &str, run: &Run) -> Vec<String> {
    let (want_out, want_status) = expected(name);
    let got_out = program_output(&run.stdout);
    let mut problems = Vec::new();
    if run.status != Some(want_status) {
        problems.push(format!("status {:?}, Linux gave {want_status}", run.status));
    }
    if got_out != want_out {
        problems.push(format!("output differs:\n--- Linux\n{want_out}--- ours\n{got_out}"));
    }
    match frames_before_after(&run.stdout) {
        Some((before, after)) if before == after => {}
        Some((before, after)) => problems.push(format!("frames in use {before} before, {after} after")),
        None => problems.push("no frame count from the kernel".into()),
    }
    let killed_by = match want_status {
        139 => Some("killed by SIGSEGV"),
        137 => Some("killed: out of memory"),
        _ => None,
    };
    if let Some(line) = killed_by {
        if !run.stdout.contains(line) {
            problems.push(format!("no '{line}' log line"));
        }
    }
    problems
}
