//! `boot`: turns a kernel ELF into a BIOS disk image and runs it in QEMU.
//!
//! It is both the tool behind `make run` and the cargo runner for the kernel
//! target, so `cargo test -p kernel` boots every test binary through it.
//!
//! Exit status protocol with the kernel (see `kernel/src/arch/x86_64/qemu.rs`):
//! the kernel writes one status byte to the `debugcon` port (0xe9), then
//! writes a code to `isa-debug-exit` (0xf4). QEMU turns code `v` into its
//! own exit status `(v << 1) | 1`, so 0x10 ("shut down normally") becomes 33,
//! 0x11 ("kernel failure": panic, failed test) becomes 35 and 0x12 ("kernel
//! lockup": a CPU stopped making progress) becomes 37.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// QEMU's exit status when the kernel wrote 0x10 to `isa-debug-exit`.
const QEMU_KERNEL_OK: i32 = (0x10 << 1) | 1;
/// QEMU's exit status when the kernel wrote 0x11 to `isa-debug-exit`.
const QEMU_KERNEL_FAILED: i32 = (0x11 << 1) | 1;
/// QEMU's exit status when the kernel wrote 0x12 to `isa-debug-exit`.
const QEMU_KERNEL_LOCKUP: i32 = (0x12 << 1) | 1;

/// Our exit status when the kernel reported a failure (panic, failed test).
const EXIT_KERNEL_FAILED: u8 = 101;
/// Our exit status when the kernel's lockup detector stopped it.
const EXIT_KERNEL_LOCKUP: u8 = 102;
/// Our exit status when the time limit ran out (as `timeout(1)` does).
const EXIT_TIMEOUT: u8 = 124;
/// Our exit status when we could not even start: bad option, missing file, no QEMU.
const EXIT_USAGE: u8 = 2;

/// Marks a ramdisk that carries a test filter instead of a cpio archive.
const TEST_FILTER_MAGIC: &str = "KTEST-FILTER\n";

const USAGE: &str = "\
usage: boot [OPTIONS] KERNEL [TEST-FILTER]

Builds a BIOS disk image from the kernel ELF file KERNEL and runs it in QEMU,
with the serial console on standard output. QEMU emulates the `max` CPU
(-cpu max), so the kernel gets SMEP and SMAP. The exit status is the kernel's:
0-255 as reported by the kernel (init's status), 101 for a kernel failure
(panic or failed test), 102 for a kernel lockup (a CPU made no progress for
seconds; the kernel printed every CPU's state), 124 when the time limit ran
out, 2 for a usage error.

A KERNEL inside a cargo `deps` directory is a test binary; TEST-FILTER then
selects the tests whose names contain it.

options:
  --smp N          number of CPUs, 1-64 (default: $SMP or 2)
  --mem SIZE       memory, e.g. 512M or 1G (default: $MEM or 512M)
  --init FILE      run FILE as /init (packed into a cpio ramdisk)
  --arg ARG        with --init: pass ARG to /init (repeatable: argv[1], argv[2], ...)
  --ramdisk FILE   attach FILE as the ramdisk as it is (a cpio archive)
  --log LEVEL      kernel log level with --init: error, warn, info, debug, trace
                   (default: $KERNEL_LOG, else the kernel's: warn)
  --profile        with --init: sample where the CPUs are at 1000 Hz while /init
                   runs and print the busiest kernel addresses at its exit
                   (tests/profile.sh names their functions)
  --lock MODE      with --init: how page faults lock: vma (per-VMA locks, the
                   default) or mmap (always the address space's mmap lock)
                   (default: $KERNEL_LOCK, else vma)
  --zero-pool on|off
                   with --init: whether idle CPUs zero free frames ahead for
                   faults (default: $KERNEL_ZERO_POOL, else off)
  --fault-around on|off
                   with --init: whether a sequential run of anonymous faults
                   maps the rest of its 64 KiB block (default:
                   $KERNEL_FAULT_AROUND, else on)
  --timeout SECS   kill QEMU after SECS seconds, 0 for never
                   (default: $BOOT_TIMEOUT or 300)
  --image FILE     where to write the disk image (default: a temporary file)
  --image-only     build the disk image (needs --image) and exit without running QEMU
  --qemu PATH      the QEMU binary (default: $QEMU or qemu-system-x86_64)
  -h, --help       show this text
";

#[derive(Debug)]
struct Options {
    kernel: PathBuf,
    test_filter: Option<String>,
    smp: u32,
    mem: String,
    ramdisk: Option<PathBuf>,
    init: Option<PathBuf>,
    /// argv[1..] of /init, packed as `init.args` (each argument NUL-terminated).
    init_args: Vec<String>,
    log: Option<String>,
    lock: Option<String>,
    /// `--zero-pool` and `--fault-around`: "on" or "off", if given.
    zero_pool: Option<String>,
    fault_around: Option<String>,
    profile: bool,
    timeout: Option<Duration>,
    image: Option<PathBuf>,
    image_only: bool,
    qemu: OsString,
}

/// Why `boot` could not do what it was asked; each prints as one line.
#[derive(Debug)]
enum BootError {
    Usage(String),
    MissingFile { what: &'static str, path: PathBuf },
    Image(String),
    QemuMissing(OsString),
    Io { context: String, source: std::io::Error },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Usage(why) => write!(f, "{why} (see 'boot --help')"),
            BootError::MissingFile { what, path } => {
                write!(f, "{what} '{}' does not exist", path.display())
            }
            BootError::Image(why) => write!(f, "could not build the disk image: {why}"),
            BootError::QemuMissing(qemu) => write!(
                f,
                "cannot run '{}': not found (install it with 'apt-get install qemu-system-x86')",
                qemu.to_string_lossy()
            ),
            BootError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let options = match parse_args(args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("boot: {err}");
            if matches!(err, BootError::Usage(_)) {
                eprint!("{USAGE}");
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(&options) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("boot: {err}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn parse_args(args: Vec<OsString>) -> Result<Option<Options>, BootError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut smp = env("SMP").unwrap_or_else(|| "2".into());
    let mut mem = env("MEM").unwrap_or_else(|| "512M".into());
    let mut timeout = env("BOOT_TIMEOUT").unwrap_or_else(|| "300".into());
    let mut qemu: OsString = env("QEMU").unwrap_or_else(|| "qemu-system-x86_64".into()).into();
    let mut ramdisk = None;
    let mut init = None;
    let mut init_args: Vec<String> = Vec::new();
    let mut log = env("KERNEL_LOG");
    let mut lock = env("KERNEL_LOCK");
    let mut zero_pool = env("KERNEL_ZERO_POOL");
    let mut fault_around = env("KERNEL_FAULT_AROUND");
    let mut profile = false;
    let mut image = None;
    let mut image_only = false;
    let mut positional: Vec<OsString> = Vec::new();

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        if !text.starts_with('-') || text == "-" {
            positional.push(arg);
            continue;
        }
        let (name, inline_value) = match text.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (text.clone(), None),
        };
        let mut value = |name: &str| -> Result<OsString, BootError> {
            match inline_value.clone() {
                Some(v) => Ok(v.into()),
                None => args.next().ok_or_else(|| BootError::Usage(format!("option {name} needs a value"))),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--smp" => smp = value("--smp")?.to_string_lossy().into_owned(),
            "--mem" => mem = value("--mem")?.to_string_lossy().into_owned(),
            "--timeout" => timeout = value("--timeout")?.to_string_lossy().into_owned(),
            "--ramdisk" => ramdisk = Some(PathBuf::from(value("--ramdisk")?)),
            "--init" => init = Some(PathBuf::from(value("--init")?)),
            "--arg" => init_args.push(value("--arg")?.to_string_lossy().into_owned()),
            "--log" => log = Some(value("--log")?.to_string_lossy().into_owned()),
            "--lock" => lock = Some(value("--lock")?.to_string_lossy().into_owned()),
            "--zero-pool" => zero_pool = Some(value("--zero-pool")?.to_string_lossy().into_owned()),
            "--fault-around" => fault_around = Some(value("--fault-around")?.to_string_lossy().into_owned()),
            "--profile" => profile = true,
            "--image" => image = Some(PathBuf::from(value("--image")?)),
            "--qemu" => qemu = value("--qemu")?,
            "--image-only" => image_only = true,
            // After a test kernel, cargo may pass libtest's own flags (--quiet,
            // --nocapture, --test-threads=N, ...): they mean nothing to a kernel.
            _ if positional.first().is_some_and(|k| is_test_binary(Path::new(k))) => {}
            _ => return Err(BootError::Usage(format!("unknown option '{text}'"))),
        }
    }

    let mut positional = positional.into_iter();
    let kernel = PathBuf::from(positional.next().ok_or_else(|| BootError::Usage("no KERNEL file given".into()))?);
    let test_filter = positional.next().map(|f| f.to_string_lossy().into_owned());
    if let Some(extra) = positional.next() {
        return Err(BootError::Usage(format!("unexpected argument '{}'", extra.to_string_lossy())));
    }
    if test_filter.is_some() && !is_test_binary(&kernel) {
        return Err(BootError::Usage("a TEST-FILTER needs a test kernel".into()));
    }
    if image_only && image.is_none() {
        return Err(BootError::Usage("--image-only needs --image FILE".into()));
    }
    if test_filter.is_some() && (ramdisk.is_some() || init.is_some()) {
        return Err(BootError::Usage("a TEST-FILTER cannot be combined with --ramdisk or --init".into()));
    }
    if let Some(level) = &log {
        if !["off", "error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            return Err(BootError::Usage(format!("--log wants error, warn, info, debug or trace, not '{level}'")));
        }
    }
    if let Some(mode) = &lock {
        if !["vma", "mmap"].contains(&mode.as_str()) {
            return Err(BootError::Usage(format!("--lock wants vma or mmap, not '{mode}'")));
        }
    }
    for (option, setting) in [("--zero-pool", &zero_pool), ("--fault-around", &fault_around)] {
        if let Some(setting) = setting {
            if !["on", "off"].contains(&setting.as_str()) {
                return Err(BootError::Usage(format!("{option} wants on or off, not '{setting}'")));
            }
        }
    }
    if profile && init.is_none() {
        return Err(BootError::Usage("--profile goes with --init".into()));
    }
    if !init_args.is_empty() && init.is_none() {
        return Err(BootError::Usage("--arg goes with --init".into()));
    }
    if init_args.iter().any(|a| a.contains('\0')) {
        return Err(BootError::Usage("an --arg cannot contain a NUL byte".into()));
    }
    if ramdisk.is_some() && init.is_some() {
        return Err(BootError::Usage("--init and --ramdisk both give the ramdisk: choose one".into()));
    }

    let smp = match smp.parse::<u32>() {
        Ok(n) if (1..=64).contains(&n) => n,
        _ => return Err(BootError::Usage(format!("--smp wants a number from 1 to 64, not '{smp}'"))),
    };
    let mem =
        parse_mem(&mem).ok_or_else(|| BootError::Usage(format!("--mem wants a size like 512M or 1G, not '{mem}'")))?;
    let timeout = match timeout.parse::<u64>() {
        Ok(0) => None,
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => return Err(BootError::Usage(format!("--timeout wants whole seconds, not '{timeout}'"))),
    };

    Ok(Some(Options {
        kernel,
        test_filter,
        smp,
        mem,
        ramdisk,
        init,
        init_args,
        log,
        lock,
        zero_pool,
        fault_around,
        profile,
        timeout,
        image,
        image_only,
        qemu,
    }))
}

/// Accepts `<digits>[K|M|G]` (QEMU's own syntax, MiB when no suffix), at least 32 MiB.
fn parse_mem(text: &str) -> Option<String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "M"),
    };
    let n: u64 = digits.parse().ok()?;
    let mib = match unit.to_ascii_uppercase().as_str() {
        "K" => n / 1024,
        "M" => n,
        "G" => n.checked_mul(1024)?,
        _ => return None,
    };
    (32..=64 * 1024).contains(&mib).then(|| format!("{mib}M"))
}

/// Cargo puts test and benchmark binaries in a `deps` directory.
fn is_test_binary(kernel: &Path) -> bool {
    kernel.parent().and_then(Path::file_name).is_some_and(|d| d == "deps")
}

fn run(options: &Options) -> Result<u8, BootError> {
    if !options.kernel.is_file() {
        return Err(BootError::MissingFile { what: "kernel", path: options.kernel.clone() });
    }
    if let Some(ramdisk) = &options.ramdisk {
        if !ramdisk.is_file() {
            return Err(BootError::MissingFile { what: "ramdisk", path: ramdisk.clone() });
        }
    }
    if let Some(init) = &options.init {
        if !init.is_file() {
            return Err(BootError::MissingFile { what: "init program", path: init.clone() });
        }
    }
    // Each run gets its own image unless told otherwise: runs in parallel
    // (cargo test, the end-to-end tests) must not share a disk.
    let scratch = Scratch::new()?;
    let image = options.image.clone().unwrap_or_else(|| scratch.path("disk.img"));
    let ramdisk = match (&options.ramdisk, &options.test_filter) {
        (Some(ramdisk), _) => Some(ramdisk.clone()),
        (None, _) if options.init.is_some() => {
            let init = options.init.as_ref().expect("checked");
            let program = fs::read(init)
                .map_err(|source| BootError::Io { context: format!("reading {}", init.display()), source })?;
            let path = scratch.path("initrd.cpio");
            let mut files: Vec<(&str, u32, &[u8])> = vec![("init", 0o100755, &program)];
            if let Some(level) = &options.log {
                files.push(("kernel.log", 0o100644, level.as_bytes()));
            }
            if let Some(mode) = &options.lock {
                files.push(("kernel.lock", 0o100644, mode.as_bytes()));
            }
            if let Some(setting) = &options.zero_pool {
                files.push(("kernel.zeropool", 0o100644, setting.as_bytes()));
            }
            if let Some(setting) = &options.fault_around {
                files.push(("kernel.faultaround", 0o100644, setting.as_bytes()));
            }
            if options.profile {
                files.push(("kernel.profile", 0o100644, b"1"));
            }
            let args: Vec<u8> = options.init_args.iter().flat_map(|a| a.bytes().chain([0])).collect();
            if !args.is_empty() {
                files.push(("init.args", 0o100644, &args));
            }
            fs::write(&path, cpio_archive(&files))
                .map_err(|source| BootError::Io { context: "writing the ramdisk".into(), source })?;
            Some(path)
        }
        (None, Some(filter)) => {
            let path = scratch.path("filter");
            fs::write(&path, format!("{TEST_FILTER_MAGIC}{filter}\n"))
                .map_err(|source| BootError::Io { context: "writing the test filter".into(), source })?;
            Some(path)
        }
        (None, None) => None,
    };
    let kernel = strip_debug_info(&options.kernel, &scratch);
    build_image(&kernel, ramdisk.as_deref(), &image)?;
    if options.image_only {
        println!("{}", image.display());
        return Ok(0);
    }

    let status_file = scratch.path("status");
    let mut child = spawn_qemu(options, &image, &status_file)?;
    let status = match wait_with_timeout(&mut child, options.timeout)? {
        Some(status) => status,
        None => {
            eprintln!("boot: timed out after {} s; QEMU stopped", options.timeout.map_or(0, |t| t.as_secs()));
            return Ok(EXIT_TIMEOUT);
        }
    };
    Ok(exit_code_for(status, &status_file))
}

/// A copy of the kernel without debug info. The BIOS reads the kernel through
/// real-mode disk calls, which are slow under emulation: a debug kernel of a
/// few MiB takes seconds to load, its stripped copy a fraction of that. Falls
/// back to the original (slower, still correct) if llvm-objcopy is missing.
fn strip_debug_info(kernel: &Path, scratch: &Scratch) -> PathBuf {
    let stripped = scratch.path("kernel");
    let objcopy = llvm_tools::LlvmTools::new().ok().and_then(|tools| tools.tool(&llvm_tools::exe("llvm-objcopy")));
    let status = objcopy.map(|objcopy| Command::new(objcopy).arg("--strip-debug").arg(kernel).arg(&stripped).status());
    match status {
        Some(Ok(status)) if status.success() => stripped,
        _ => {
            eprintln!("boot: warning: llvm-objcopy unavailable, booting the unstripped kernel (slower)");
            kernel.to_path_buf()
        }
    }
}

fn build_image(kernel: &Path, ramdisk: Option<&Path>, image: &Path) -> Result<(), BootError> {
    // The bootloader reports only problems, and only on the serial port: drawing
    // its log into the framebuffer costs seconds under QEMU's emulation.
    let mut config = bootloader::BootConfig::default();
    config.log_level = bootloader_boot_config::LevelFilter::Warn;
    config.frame_buffer_logging = false;
    let mut bios = bootloader::BiosBoot::new(kernel);
    bios.set_boot_config(&config);
    if let Some(ramdisk) = ramdisk {
        bios.set_ramdisk(ramdisk);
    }
    bios.create_disk_image(image).map_err(|e| BootError::Image(format!("{e:#}")))
}

fn spawn_qemu(options: &Options, image: &Path, status_file: &Path) -> Result<Child, BootError> {
    let mut qemu = Command::new(&options.qemu);
    qemu.arg("-nodefaults")
        // The BIOS bootloader sets a VESA mode, so it needs a VGA card. The
        // `max` CPU model has every feature TCG emulates: SMEP and SMAP (the
        // kernel turns them on), x2APIC.
        .args(["-machine", "pc", "-cpu", "max", "-vga", "std"])
        .arg("-smp")
        .arg(options.smp.to_string())
        .arg("-m")
        .arg(&options.mem)
        .arg("-drive")
        .arg(format!("format=raw,file={}", image.display()))
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-debugcon")
        .arg(format!("file:{}", status_file.display()))
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // SAFETY: isatty(3) only inspects the descriptor.
    let interactive = unsafe { libc::isatty(0) } == 1;
    if !interactive {
        // QEMU drops serial input it has not delivered yet once its stdin
        // reaches end of file; feed it through a pipe that stays open.
        qemu.stdin(Stdio::piped());
    }
    let mut child = qemu.spawn().map_err(|source| match source.kind() {
        ErrorKind::NotFound => BootError::QemuMissing(options.qemu.clone()),
        _ => BootError::Io { context: format!("starting {}", options.qemu.to_string_lossy()), source },
    })?;
    if let Some(mut to_qemu) = child.stdin.take() {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_qemu);
            // Keep the pipe open (without end of file) for QEMU's whole run.
            loop {
                std::thread::park();
            }
        });
    }
    Ok(child)
}

/// Waits for QEMU; `None` when the time ran out (QEMU has then been stopped).
fn wait_with_timeout(child: &mut Child, timeout: Option<Duration>) -> Result<Option<ExitStatus>, BootError> {
    let io = |source| BootError::Io { context: "waiting for QEMU".into(), source };
    let Some(timeout) = timeout else {
        return child.wait().map(Some).map_err(io);
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(io)? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            stop(child);
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM first so QEMU restores the terminal it put in raw mode; SIGKILL if it lingers.
fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own
        // child, which has not been reaped yet, so the pid cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn exit_code_for(status: ExitStatus, status_file: &Path) -> u8 {
    match status.code() {
        Some(QEMU_KERNEL_OK) => {
            // The last byte the kernel wrote to debugcon is its exit status.
            fs::read(status_file).ok().and_then(|bytes| bytes.last().copied()).unwrap_or(0)
        }
        Some(QEMU_KERNEL_FAILED) => {
            eprintln!("boot: the kernel reported a failure");
            EXIT_KERNEL_FAILED
        }
        Some(QEMU_KERNEL_LOCKUP) => {
            eprintln!("boot: kernel lockup: a CPU stopped making progress (the kernel's report is above)");
            EXIT_KERNEL_LOCKUP
        }
        Some(0) => {
            // -no-reboot turns a triple fault (CPU reset) into a clean QEMU exit.
            eprintln!("boot: QEMU exited without a word from the kernel (triple fault?)");
            EXIT_KERNEL_FAILED
        }
        Some(code) => {
            eprintln!("boot: QEMU failed with exit status {code}");
            EXIT_KERNEL_FAILED
        }
        None => {
            eprintln!("boot: QEMU was killed by a signal");
            EXIT_KERNEL_FAILED
        }
    }
}

/// A cpio archive in the "newc" format (what Linux's initramfs reads):
/// each entry is a 110-byte ASCII header, the name, the data, 4-byte aligned.
fn cpio_archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut add = |ino: usize, name: &str, mode: u32, data: &[u8]| {
        let fields = [ino, mode as usize, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0];
        out.extend_from_slice(b"070701");
        for field in fields {
            out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    };
    for (i, (name, mode, data)) in files.iter().enumerate() {
        add(i + 1, name, *mode, data);
    }
    add(0, "TRAILER!!!", 0, &[]);
    out
}

/// A private temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, BootError> {
        let dir = std::env::temp_dir().join(format!("boot-{}", std::process::id()));
        fs::create_dir_all(&dir)
            .map_err(|source| BootError::Io { context: format!("creating {}", dir.display()), source })?;
        Ok(Scratch(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, BootError> {
        parse_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn cpio_layout() {
        let archive = cpio_archive(&[("init", 0o100755, b"abc")]);
        assert!(archive.starts_with(b"070701"));
        assert_eq!(&archive[110..115], b"init\0");
        assert_eq!(&archive[116..119], b"abc", "data starts 4-byte aligned");
        assert_eq!(archive.len() % 4, 0);
        assert!(archive.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mem("512M").as_deref(), Some("512M"));
        assert_eq!(parse_mem("1G").as_deref(), Some("1024M"));
        assert_eq!(parse_mem("256").as_deref(), Some("256M"));
        assert_eq!(parse_mem("1T"), None);
        assert_eq!(parse_mem("16M"), None, "below the minimum");
        assert_eq!(parse_mem("lots"), None);
    }

    #[test]
    fn options_and_errors() {
        let o = parse(&["--smp", "4", "--mem=1G", "k.elf"]).unwrap().unwrap();
        assert_eq!((o.smp, o.mem.as_str(), o.kernel.as_path()), (4, "1024M", Path::new("k.elf")));
        assert!(matches!(parse(&["--smp", "0", "k"]), Err(BootError::Usage(_))));
        assert!(matches!(parse(&["--bogus", "k"]), Err(BootError::Usage(_))));
        assert!(matches!(parse(&[]), Err(BootError::Usage(_))));
        assert!(matches!(parse(&["--help"]), Ok(None)));
        assert!(matches!(parse(&["k", "filter"]), Err(BootError::Usage(_))), "filter needs a test binary");
        assert!(parse(&["target/deps/kernel-1234", "frame"]).unwrap().is_some());
        assert!(parse(&["target/deps/kernel-1234", "--quiet", "--nocapture"]).unwrap().is_some());
        assert!(matches!(parse(&["kernel", "--quiet"]), Err(BootError::Usage(_))));
        assert!(matches!(parse(&["--image-only", "k"]), Err(BootError::Usage(_))));
        assert!(matches!(parse(&["--init", "a", "--ramdisk", "b", "k"]), Err(BootError::Usage(_))));
        let o = parse(&["--init", "p", "--arg", "42", "--arg=x y", "k"]).unwrap().unwrap();
        assert_eq!(o.init_args, ["42", "x y"]);
        assert!(matches!(parse(&["--arg", "1", "k"]), Err(BootError::Usage(_))), "--arg without --init");
        assert!(parse(&["--image-only", "--image", "k.img", "k"]).unwrap().is_some());
        let o = parse(&["--init", "p", "--lock", "mmap", "k"]).unwrap().unwrap();
        assert_eq!(o.lock.as_deref(), Some("mmap"));
        assert!(matches!(parse(&["--init", "p", "--lock=rcu", "k"]), Err(BootError::Usage(_))), "vma or mmap only");
        let o = parse(&["--init", "p", "--zero-pool", "off", "--fault-around=on", "k"]).unwrap().unwrap();
        assert_eq!((o.zero_pool.as_deref(), o.fault_around.as_deref()), (Some("off"), Some("on")));
        assert!(matches!(parse(&["--init", "p", "--zero-pool", "no", "k"]), Err(BootError::Usage(_))), "on or off");
        assert!(matches!(parse(&["--init", "p", "--fault-around", "k"]), Err(BootError::Usage(_))), "a value");
        assert!(parse(&["--init", "p", "--profile", "k"]).unwrap().unwrap().profile);
        assert!(matches!(parse(&["--profile", "k"]), Err(BootError::Usage(_))), "--profile without --init");
    }
}
