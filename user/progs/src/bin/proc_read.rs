//! proc_read: /proc as Linux shows it. Reads /proc/self/maps and checks its
//! structure (every line parses; the stack and heap lines; a fresh mapping
//! with its protection, changed by mprotect, gone after munmap), /proc/vmstat
//! (pgfault grows as pages are touched; and, on `info: vmstat:` lines for
//! tests/programs.rs, how each counter moved over faults, a munmap beside a
//! thread on another CPU, page tables made and freed, and a wait for an RCU
//! grace period), /proc/meminfo (the three totals in
//! kB), and the errors of open/read/pread64/lseek/fstat/close (ENOENT,
//! EACCES, EBADF, EFAULT, EINVAL, ESPIPE, ENOTDIR, EISDIR) and fd numbering.
//!
//! On Linux as PID 1 nothing is mounted: it mounts /proc first (ignoring
//! the result; our kernel has /proc without mounting). Prints only verdicts
//! (`ok: ...` / `FAIL: ...`), never addresses or counts, so the output is
//! the same on both kernels; figures go to `info:` lines.
#![no_std]
#![no_main]

use core::fmt::Debug;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use ulib::sys::{self, *};
use ulib::{println, Errno};

ulib::entry!(main);

const PAGE: usize = PAGE_SIZE;
const BUF: usize = 128 * 1024;

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check(&mut self, what: &str, good: bool) {
        if good {
            self.passed += 1;
            println!("ok: {}", what);
        } else {
            self.failed += 1;
            println!("FAIL: {}", what);
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, what: &str, expected: T, got: T) {
        if expected == got {
            self.check(what, true);
        } else {
            self.failed += 1;
            println!("FAIL: {}: expected {:?}, got {:?}", what, expected, got);
        }
    }

    fn err<T: Debug>(&mut self, what: &str, expected: Errno, got: Result<T, Errno>) {
        let got = got.map(|_| ());
        self.eq(what, Err(expected), got);
    }
}

/// The whole file at `path` (NUL-terminated), read in one go into `buf`.
fn slurp<'a>(path: &[u8], buf: &'a mut [u8]) -> Result<&'a [u8], Errno> {
    let fd = sys::open(path, O_RDONLY)?;
    let mut len = 0;
    loop {
        let n = sys::read(fd as i32, &mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        assert!(len < buf.len(), "file larger than the buffer");
    }
    sys::close(fd)?;
    Ok(&buf[..len])
}

fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = v * 16 + d as u64;
    }
    Some(v)
}

fn dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| v.checked_mul(10)?.checked_add((c - b'0') as u64))
}

/// One line of maps: `start-end perms offset major:minor inode [path]`.
struct MapLine<'a> {
    start: u64,
    end: u64,
    perms: &'a [u8],
    path: &'a [u8],
}

fn parse_map_line(line: &[u8]) -> Option<MapLine<'_>> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let dev = fields.next()?;
    let inode = fields.next()?;
    let rest = fields.next().unwrap_or(b"");
    let dash = range.iter().position(|&b| b == b'-')?;
    let (start, end) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    let perms_ok = perms.len() == 4
        && matches!(perms[0], b'r' | b'-')
        && matches!(perms[1], b'w' | b'-')
        && matches!(perms[2], b'x' | b'-')
        && matches!(perms[3], b'p' | b's');
    let colon = dev.iter().position(|&b| b == b':')?;
    let dev_ok = colon == 2 && dev.len() >= 5 && hex(&dev[..colon]).is_some() && hex(&dev[colon + 1..]).is_some();
    let ok = start < end
        && start % PAGE as u64 == 0
        && end % PAGE as u64 == 0
        && range[..dash].len() >= 8
        && perms_ok
        && offset.len() >= 8
        && hex(offset).is_some()
        && dev_ok
        && dec(inode).is_some();
    ok.then(|| MapLine { start, end, perms, path: trim_start(rest) })
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    &s[n..]
}

/// The maps line whose range contains `addr`.
fn line_at(maps: &[u8], addr: u64) -> Option<MapLine<'_>> {
    lines(maps).filter_map(parse_map_line).find(|l| l.start <= addr && addr < l.end)
}

/// The value of `name` in a `name value` file (vmstat).
fn vmstat_value(text: &[u8], name: &[u8]) -> Option<u64> {
    lines(text).find_map(|l| {
        let sp = l.iter().position(|&b| b == b' ')?;
        (&l[..sp] == name).then(|| dec(&l[sp + 1..])).flatten()
    })
}

/// The kB value of `label` (with its colon) in meminfo, if the line has
/// Linux's shape: the label, spaces, the number ending at column 24 or
/// later, ` kB`.
fn meminfo_kb(text: &[u8], label: &[u8]) -> Option<u64> {
    lines(text).find_map(|l| {
        let rest = l.strip_prefix(label)?;
        let rest = rest.strip_suffix(b" kB")?;
        let number = trim_start(rest);
        (number.len() < rest.len() && l.len() >= 16 + 8 + 3).then(|| dec(number)).flatten()
    })
}

/// `/proc/PID/maps` with a NUL, in `buf`.
fn pid_maps_path(pid: u32, buf: &mut [u8; 32]) -> &[u8] {
    let mut digits = [0u8; 10];
    let (mut n, mut v) = (0, pid);
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut len = 0;
    for &b in b"/proc/".iter().chain(digits[..n].iter().rev()).chain(b"/maps\0") {
        buf[len] = b;
        len += 1;
    }
    &buf[..len]
}

/// The counters `tests/programs.rs` checks on our kernel (Linux has only
/// pgfault, and the vma_lock_* ones with CONFIG_PER_VMA_LOCK_STATS).
const COUNTERS: [&[u8]; 14] = [
    b"pgfault",
    b"vma_lock_success",
    b"vma_lock_abort",
    b"vma_lock_retry",
    b"vma_lock_miss",
    b"tlb_shootdowns",
    b"tlb_ipis",
    b"rcu_grace_periods",
    b"pgtables_allocated",
    b"pgtables_freed",
    b"pgfault_around",
    b"zero_pool_hits",
    b"zero_pool_misses",
    b"zero_pool_filled",
];

static SPINNER_CPU: AtomicU32 = AtomicU32::new(u32::MAX);
static STOP: AtomicBool = AtomicBool::new(false);

/// Moves every counter of [`COUNTERS`] that can move without a race, then
/// prints `info: vmstat: NAME +DELTA` for each the file has (only `info:`
/// lines: the figures differ between kernels and runs). `q` is a mapping of
/// `touched` pages, all written.
fn vmstat_deltas(buf: &mut [u8], q: usize, touched: usize) {
    let mut before = [None; COUNTERS.len()];
    let text = slurp(b"/proc/vmstat\0", buf).unwrap_or(b"");
    for (b, name) in before.iter_mut().zip(COUNTERS) {
        *b = vmstat_value(text, name);
    }
    // Faults: 64 fresh pages, one fault each (MADV_NOHUGEPAGE: no
    // fault-around on our kernel, no large folios on Linux).
    let fresh = sys::mmap_anon(touched * PAGE, PROT_READ | PROT_WRITE).expect("mmap") as usize;
    // SAFETY: a hint on our fresh mapping.
    unsafe { sys::madvise(fresh as *mut u8, touched * PAGE, MADV_NOHUGEPAGE) }.expect("madvise");
    for i in 0..touched {
        // SAFETY: the page is in our fresh read-write mapping.
        unsafe { core::ptr::write_volatile((fresh + i * PAGE) as *mut u8, 1) };
    }
    // Fault-around: 64 more written in order, with no hint, take a fault
    // per 64 KiB block once the run has begun; the rest are mapped ahead.
    let run = sys::mmap_anon(touched * PAGE, PROT_READ | PROT_WRITE).expect("mmap") as usize;
    for i in 0..touched {
        // SAFETY: the page is in our fresh read-write mapping.
        unsafe { core::ptr::write_volatile((run + i * PAGE) as *mut u8, 1) };
    }
    // SAFETY: nothing uses the mapping.
    unsafe { sys::munmap(run as *mut u8, touched * PAGE) }.expect("munmap");
    // Page tables: one page in each 2 MiB of a fresh 8 MiB mapping needs
    // page tables of its own; unmapping it all frees them.
    let big = 8 << 20;
    let far = sys::mmap_anon(big, PROT_READ | PROT_WRITE).expect("mmap 8 MiB") as usize;
    for i in 0..big / (2 << 20) {
        // SAFETY: inside our fresh mapping.
        unsafe { core::ptr::write_volatile((far + i * (2 << 20)) as *mut u8, 1) };
    }
    // SAFETY: nothing uses the mapping.
    unsafe { sys::munmap(far as *mut u8, big) }.expect("munmap 8 MiB");
    // A TLB shootdown with an IPI: munmap a touched page while a second
    // thread runs this address space on another CPU (with one CPU there is
    // none to interrupt, and a spinner would only take turns with us).
    if ulib::bench::cpu_count() > 1 {
        STOP.store(false, Ordering::SeqCst);
        let spinner = ulib::thread::spawn(|| {
            while !STOP.load(Ordering::Relaxed) {
                SPINNER_CPU.store(sys::getcpu().unwrap_or(u32::MAX), Ordering::Relaxed);
                core::hint::spin_loop();
            }
        })
        .expect("spawn the spinner");
        let mut apart = false;
        for _ in 0..1000 {
            let here = sys::getcpu().unwrap_or(u32::MAX);
            let there = SPINNER_CPU.load(Ordering::Relaxed);
            if there != u32::MAX && there != here {
                apart = true;
                break;
            }
            let _ = sys::sched_yield();
        }
        if !apart {
            println!("info: vmstat: the spinner never ran on another CPU");
        }
        // SAFETY: the first page of `q` holds nothing we use.
        unsafe { sys::munmap(q as *mut u8, PAGE) }.expect("munmap a page");
        STOP.store(true, Ordering::SeqCst);
        spinner.join();
    } else {
        // SAFETY: the first page of `q` holds nothing we use.
        unsafe { sys::munmap(q as *mut u8, PAGE) }.expect("munmap a page");
    }
    // SAFETY: nothing uses the mapping.
    unsafe { sys::munmap(fresh as *mut u8, touched * PAGE) }.expect("munmap");
    // The munmaps replaced the VMA tree, whose old version waits for a
    // grace period: wait for one to end (up to 5 s).
    let grace_before = before[7];
    for _ in 0..500 {
        let text = slurp(b"/proc/vmstat\0", buf).unwrap_or(b"");
        let now = vmstat_value(text, b"rcu_grace_periods");
        if now.is_none() || now > grace_before {
            break;
        }
        sys::sleep_ms(10);
    }
    let text = slurp(b"/proc/vmstat\0", buf).unwrap_or(b"");
    for (b, name) in before.iter().zip(COUNTERS) {
        if let (Some(b), Some(a)) = (b, vmstat_value(text, name)) {
            println!("info: vmstat: {} +{}", core::str::from_utf8(name).unwrap_or("?"), a.saturating_sub(*b));
        }
    }
}

fn main() -> i32 {
    // Linux as PID 1 has nothing mounted; ours has /proc from the start.
    let _ = sys::mkdir(b"/proc\0", 0o555);
    let _ = sys::mount(b"proc\0", b"/proc\0", b"proc\0", 0);
    let mut t = Tally { passed: 0, failed: 0 };
    let mut buf = [0u8; BUF];
    let mut other = [0u8; BUF];

    // --- /proc/self/maps ---
    // A heap: grow the break by 16 pages and touch it.
    let brk0 = sys::brk_current();
    // SAFETY: the new break is above the old one; nothing lives there yet.
    let brk1 = unsafe { sys::brk(brk0 + 16 * PAGE) };
    // SAFETY: [brk0, brk1) is the heap we just made, read-write.
    unsafe { core::ptr::write_volatile(brk0 as *mut u8, 1) };
    t.check("brk grows the heap", brk1 == brk0 + 16 * PAGE);
    let maps = match slurp(b"/proc/self/maps\0", &mut buf) {
        Ok(m) => m,
        Err(e) => {
            println!("FAIL: open and read /proc/self/maps: {:?}", e);
            return 1;
        }
    };
    ulib::println!("info: /proc/self/maps has {} lines", lines(maps).count());
    t.check("/proc/self/maps is not empty and ends with a newline", maps.last() == Some(&b'\n'));
    t.check("every line of /proc/self/maps parses", lines(maps).all(|l| parse_map_line(l).is_some()));
    let sorted = lines(maps).filter_map(parse_map_line).zip(lines(maps).filter_map(parse_map_line).skip(1));
    t.check("the lines are sorted and do not overlap", sorted.into_iter().all(|(a, b)| a.end <= b.start));
    let local = 0u64;
    let stack = line_at(maps, &local as *const u64 as u64);
    t.check("the line holding a local variable is [stack]", stack.as_ref().is_some_and(|l| l.path == b"[stack]"));
    t.check("the stack is rw-p", stack.as_ref().is_some_and(|l| l.perms == b"rw-p"));
    let heap = line_at(maps, brk0 as u64);
    t.check(
        "the line holding the heap is [heap], rw-p",
        heap.as_ref().is_some_and(|l| l.path == b"[heap]" && l.perms == b"rw-p"),
    );
    let code = line_at(maps, main as *const () as u64);
    t.check("the line holding main is executable", code.as_ref().is_some_and(|l| l.perms[2] == b'x'));

    let pid = sys::getpid();
    let mut path_buf = [0u8; 32];
    let path = pid_maps_path(pid, &mut path_buf);
    let by_pid = slurp(path, &mut other).unwrap_or(b"");
    let maps = slurp(b"/proc/self/maps\0", &mut buf).unwrap_or(b"");
    t.check("/proc/<own pid>/maps is /proc/self/maps", by_pid == maps && !maps.is_empty());

    // A fresh mapping: four pages, read-write; shows with rw-p.
    let p = sys::mmap_anon(4 * PAGE, PROT_READ | PROT_WRITE).expect("mmap") as u64;
    let maps = slurp(b"/proc/self/maps\0", &mut buf).unwrap_or(b"");
    let l = line_at(maps, p);
    t.check(
        "a new rw mapping appears, rw-p, covering all four pages",
        l.as_ref().is_some_and(|l| l.perms == b"rw-p" && l.start <= p && p + 4 * PAGE as u64 <= l.end),
    );
    // SAFETY: the second page is ours and nothing lives there.
    unsafe { sys::mprotect((p + PAGE as u64) as *mut u8, PAGE, PROT_READ).expect("mprotect") };
    let maps = slurp(b"/proc/self/maps\0", &mut buf).unwrap_or(b"");
    let mid = line_at(maps, p + PAGE as u64);
    t.check(
        "after mprotect(PROT_READ) of its second page: that page alone is r--p",
        mid.as_ref().is_some_and(|l| l.perms == b"r--p" && l.start == p + PAGE as u64 && l.end == p + 2 * PAGE as u64),
    );
    let first = line_at(maps, p);
    let last = line_at(maps, p + 2 * PAGE as u64);
    t.check(
        "and its neighbours stay rw-p",
        first.is_some_and(|l| l.perms == b"rw-p" && l.end == p + PAGE as u64)
            && last.is_some_and(|l| l.perms == b"rw-p" && l.start == p + 2 * PAGE as u64),
    );
    // SAFETY: the mapping is ours and unused.
    unsafe { sys::munmap(p as *mut u8, 4 * PAGE).expect("munmap") };
    let maps = slurp(b"/proc/self/maps\0", &mut buf).unwrap_or(b"");
    t.check(
        "after munmap no line covers it",
        (0..4).all(|i| line_at(maps, p + i * PAGE as u64).is_none()) && !maps.is_empty(),
    );
    let s = sys::mmap_anon(2 * PAGE, PROT_READ).map(|a| a as u64);
    let shared = s.and_then(|_| {
        // SAFETY: without MAP_FIXED no existing mapping is touched.
        unsafe { sys::mmap(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0) }.map(|a| a as u64)
    });
    let maps = slurp(b"/proc/self/maps\0", &mut buf).unwrap_or(b"");
    t.check(
        "a read-only private mapping is r--p",
        s.is_ok_and(|s| line_at(maps, s).is_some_and(|l| l.perms == b"r--p")),
    );
    t.check(
        "a shared anonymous mapping is rw-s",
        shared.is_ok_and(|s| line_at(maps, s).is_some_and(|l| l.perms == b"rw-s")),
    );

    // --- /proc/vmstat ---
    let vmstat = slurp(b"/proc/vmstat\0", &mut buf).unwrap_or(b"");
    t.check(
        "every line of /proc/vmstat is `name value`",
        !vmstat.is_empty()
            && lines(vmstat).all(|l| {
                let mut f = l.split(|&b| b == b' ');
                let (name, value, more) = (f.next(), f.next(), f.next());
                name.is_some_and(|n| !n.is_empty()) && value.is_some_and(|v| dec(v).is_some()) && more.is_none()
            }),
    );
    let before = vmstat_value(vmstat, b"pgfault");
    t.check("/proc/vmstat has pgfault", before.is_some());
    let touched = 64;
    let q = sys::mmap_anon(touched * PAGE, PROT_READ | PROT_WRITE).expect("mmap") as usize;
    // One fault per page on both kernels: no fault-around, no large folios.
    // SAFETY: a hint on our fresh mapping.
    unsafe { sys::madvise(q as *mut u8, touched * PAGE, MADV_NOHUGEPAGE) }.expect("madvise");
    for i in 0..touched {
        // SAFETY: the page is in our fresh read-write mapping.
        unsafe { core::ptr::write_volatile((q + i * PAGE) as *mut u8, 1) };
    }
    let vmstat = slurp(b"/proc/vmstat\0", &mut buf).unwrap_or(b"");
    let after = vmstat_value(vmstat, b"pgfault");
    if let (Some(b), Some(a)) = (before, after) {
        println!("info: pgfault {} -> {} after touching {} pages", b, a, touched);
    }
    t.check(
        "pgfault grows by at least 64 after touching 64 fresh pages",
        matches!((before, after), (Some(b), Some(a)) if a >= b + touched as u64),
    );

    vmstat_deltas(&mut buf, q, touched);

    // --- /proc/meminfo ---
    let meminfo = slurp(b"/proc/meminfo\0", &mut buf).unwrap_or(b"");
    let total = meminfo_kb(meminfo, b"MemTotal:");
    let free = meminfo_kb(meminfo, b"MemFree:");
    let available = meminfo_kb(meminfo, b"MemAvailable:");
    if let (Some(t), Some(f), Some(a)) = (total, free, available) {
        println!("info: MemTotal {} kB, MemFree {} kB, MemAvailable {} kB", t, f, a);
    }
    t.check(
        "meminfo has MemTotal, MemFree and MemAvailable in kB, in Linux's columns",
        total.is_some() && free.is_some() && available.is_some(),
    );
    t.check(
        "MemTotal > 0, MemFree and MemAvailable at most MemTotal",
        matches!((total, free, available), (Some(t), Some(f), Some(a)) if t > 0 && f <= t && a <= t),
    );
    t.check("the first three lines are MemTotal, MemFree, MemAvailable", {
        let mut l = lines(meminfo);
        l.next().is_some_and(|x| x.starts_with(b"MemTotal:"))
            && l.next().is_some_and(|x| x.starts_with(b"MemFree:"))
            && l.next().is_some_and(|x| x.starts_with(b"MemAvailable:"))
    });

    // --- fds ---
    let a = sys::open(b"/proc/vmstat\0", O_RDONLY);
    t.eq("the first file gets fd 3", Ok(3), a);
    let b = sys::open(b"/proc/meminfo\0", O_RDONLY);
    t.eq("the second fd 4", Ok(4), b);
    let _ = sys::close(3);
    t.eq("a closed fd is reused first", Ok(3), sys::open(b"/proc/self/maps\0", O_RDONLY | O_CLOEXEC));
    t.eq("close returns 0", Ok(0), sys::close(3));
    t.err("close of a closed fd: EBADF", Errno::EBADF, sys::close(3));
    t.err("close of fd 999: EBADF", Errno::EBADF, sys::close(999));
    t.eq("close 4", Ok(0), sys::close(4));

    // --- opening: errors ---
    t.err("open /proc/nonexistent: ENOENT", Errno::ENOENT, sys::open(b"/proc/nonexistent\0", O_RDONLY));
    t.err("open /nonexistent/file: ENOENT", Errno::ENOENT, sys::open(b"/nonexistent/file\0", O_RDONLY));
    t.err("open of the empty path: ENOENT", Errno::ENOENT, sys::open(b"\0", O_RDONLY));
    t.err("open /proc/vmstat/: ENOTDIR", Errno::ENOTDIR, sys::open(b"/proc/vmstat/\0", O_RDONLY));
    t.err(
        "open /proc/meminfo with O_DIRECTORY: ENOTDIR",
        Errno::ENOTDIR,
        sys::open(b"/proc/meminfo\0", O_RDONLY | O_DIRECTORY),
    );
    // PID 1 is root: CAP_DAC_OVERRIDE opens even a 0444 file for writing
    // (a user without it gets EACCES); the file has no write operation, so
    // writes fail (EIO from procfs's own files, whose write finds no
    // handler; EINVAL from per-process files, which have no write at all),
    // and a write-only fd cannot be read.
    let w = sys::open(b"/proc/vmstat\0", O_WRONLY);
    t.eq("open /proc/vmstat O_WRONLY as root succeeds", Ok(3), w);
    t.err("write to it: EIO", Errno::EIO, sys::write(3, b"x"));
    t.err("read from it: EBADF", Errno::EBADF, sys::read(3, &mut buf[..16]));
    t.err("pread from it: EBADF", Errno::EBADF, sys::pread(3, &mut buf[..16], 0));
    let _ = sys::close(3);
    t.eq("open /proc/self/maps O_RDWR as root succeeds", Ok(3), sys::open(b"/proc/self/maps\0", O_RDWR));
    t.err("write to it: EINVAL", Errno::EINVAL, sys::write(3, b"x"));
    let iov = [IoVec::new(b"x")];
    t.err("writev to it: EINVAL", Errno::EINVAL, sys::writev(3, &iov));
    t.check("and it reads", sys::read(3, &mut buf[..16]).is_ok_and(|n| n == 16));
    let _ = sys::close(3);
    t.eq("open /proc/meminfo with access mode 3 succeeds", Ok(3), sys::open(b"/proc/meminfo\0", 3));
    t.err("which can neither read (EBADF)", Errno::EBADF, sys::read(3, &mut buf[..16]));
    t.err("nor write (EBADF)", Errno::EBADF, sys::write(3, b"x"));
    let _ = sys::close(3);
    t.err("open /proc O_WRONLY: EISDIR", Errno::EISDIR, sys::open(b"/proc\0", O_WRONLY));
    t.err(
        "open /proc/vmstat O_CREAT|O_EXCL: EEXIST",
        Errno::EEXIST,
        sys::open(b"/proc/vmstat\0", O_RDONLY | O_CREAT | O_EXCL),
    );
    // SAFETY: the kernel only reads the (bad) path pointer.
    let bad_path = sys::check(unsafe { syscall(nr::OPEN, &[8, O_RDONLY, 0]) });
    t.err("open with a bad path pointer: EFAULT", Errno::EFAULT, bad_path);
    let long = [b'a'; 5000];
    let mut long_path = [0u8; 5001];
    long_path[..5000].copy_from_slice(&long);
    t.err("open of a 5000-byte path: ENAMETOOLONG", Errno::ENAMETOOLONG, sys::open(&long_path, O_RDONLY));
    t.eq("open //proc/./self/../vmstat", Ok(3), sys::open(b"//proc/./self/../vmstat\0", O_RDONLY));
    let _ = sys::close(3);
    t.eq("openat(AT_FDCWD, \"proc/vmstat\")", Ok(3), sys::openat(AT_FDCWD, b"proc/vmstat\0", O_RDONLY));
    let _ = sys::close(3);
    let dir = sys::open(b"/proc\0", O_RDONLY | O_DIRECTORY);
    t.eq("open /proc as a directory", Ok(3), dir);
    t.eq("openat(/proc fd, \"meminfo\")", Ok(4), sys::openat(3, b"meminfo\0", O_RDONLY));
    t.err("openat(fd 999, \"meminfo\"): EBADF", Errno::EBADF, sys::openat(999, b"meminfo\0", O_RDONLY));
    t.err("openat(a file's fd, \"x\"): ENOTDIR", Errno::ENOTDIR, sys::openat(4, b"x\0", O_RDONLY));
    t.eq("openat(fd 999, an absolute path) ignores the fd", Ok(5), sys::openat(999, b"/proc/vmstat\0", O_RDONLY));
    t.err("read of a directory: EISDIR", Errno::EISDIR, sys::read(3, &mut buf[..16]));
    let st = sys::fstat(3);
    t.check("fstat of /proc: a directory", st.is_ok_and(|s| s.mode & S_IFMT == S_IFDIR));
    for fd in [3, 4, 5] {
        let _ = sys::close(fd);
    }

    // --- reading, seeking, fstat ---
    let whole = slurp(b"/proc/self/maps\0", &mut other).unwrap_or(b"");
    let fd = sys::open(b"/proc/self/maps\0", O_RDONLY).expect("open maps");
    let mut pieced = [0u8; BUF];
    let mut len = 0;
    loop {
        match sys::read(fd as i32, &mut pieced[len..len + 7]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => break,
        }
    }
    t.check("maps read 7 bytes at a time is maps read at once", &pieced[..len] == whole);
    t.eq("read at the end returns 0", Ok(0), sys::read(fd as i32, &mut pieced[..64]));
    let st = sys::fstat(fd);
    t.check("fstat: a regular file", st.is_ok_and(|s| s.mode & S_IFMT == S_IFREG));
    t.check("fstat: size 0, as procfs reports", st.is_ok_and(|s| s.size == 0));
    t.eq("lseek(0, SEEK_SET) returns 0", Ok(0), sys::lseek(fd, 0, SEEK_SET));
    let mut head = [0u8; 20];
    t.eq("read 20 bytes after the seek", Ok(20), sys::read(fd as i32, &mut head));
    t.check("they are the first 20 bytes", whole.len() >= 20 && head[..] == whole[..20]);
    t.eq("lseek(5, SEEK_CUR) returns 25", Ok(25), sys::lseek(fd, 5, SEEK_CUR));
    t.eq("read 10 more", Ok(10), sys::read(fd as i32, &mut head[..10]));
    t.check("they are bytes 25-34", whole.len() >= 35 && head[..10] == whole[25..35]);
    t.err("lseek SEEK_END: EINVAL (seq_file)", Errno::EINVAL, sys::lseek(fd, 0, SEEK_END));
    t.err("lseek whence 7: EINVAL", Errno::EINVAL, sys::lseek(fd, 0, 7));
    t.err("lseek to -1: EINVAL", Errno::EINVAL, sys::lseek(fd, -1, SEEK_SET));
    t.err("lseek of fd 999: EBADF", Errno::EBADF, sys::lseek(999, 0, SEEK_SET));
    let mut at = [0u8; 10];
    t.eq("pread 10 bytes at 12", Ok(10), sys::pread(fd, &mut at, 12));
    t.check("they are bytes 12-21", whole.len() >= 22 && at[..] == whole[12..22]);
    t.eq("pread leaves the offset alone", Ok(35), sys::lseek(fd, 0, SEEK_CUR));
    t.err("pread at -1: EINVAL", Errno::EINVAL, sys::pread(fd, &mut at, -1));
    t.err("pread of fd 999: EBADF", Errno::EBADF, sys::pread(999, &mut at, 0));
    t.eq("pread past the end returns 0", Ok(0), sys::pread(fd, &mut at, 1 << 40));
    // SAFETY: the kernel writes only to the (bad) buffer address, which faults.
    let bad_buf = sys::check(unsafe { syscall(nr::READ, &[fd, 8, 16]) });
    t.err("read into a bad buffer: EFAULT", Errno::EFAULT, bad_buf);
    // SAFETY: as above.
    let kernel_buf = sys::check(unsafe { syscall(nr::READ, &[fd, 0xffff_8000_0000_0000, 16]) });
    t.err("read into a kernel address: EFAULT", Errno::EFAULT, kernel_buf);
    // SAFETY: the kernel writes only to the (bad) statbuf address, which faults.
    let bad_stat = sys::check(unsafe { syscall(nr::FSTAT, &[fd, 8]) });
    t.err("fstat into a bad buffer: EFAULT", Errno::EFAULT, bad_stat);
    t.err("write to a /proc fd: EBADF", Errno::EBADF, sys::write(fd as i32, b"x"));
    t.err("read of fd 999: EBADF", Errno::EBADF, sys::read(999, &mut at));
    t.err("fstat of fd 999: EBADF", Errno::EBADF, sys::fstat(999));
    t.err("lseek of the console (fd 1): ESPIPE", Errno::ESPIPE, sys::lseek(1, 0, SEEK_SET));
    t.err("pread of the console (fd 0): ESPIPE", Errno::ESPIPE, sys::pread(0, &mut at, 0));
    t.check("fstat of the console (fd 1): a character device", sys::fstat(1).is_ok_and(|s| s.mode & S_IFMT == S_IFCHR));
    let _ = sys::close(fd);

    println!("proc_read: {} passed, {} failed", t.passed, t.failed);
    if t.failed == 0 {
        0
    } else {
        1
    }
}
