//! The initial process stack as the kernel laid it out (System V x86_64 ABI):
//! argc, argv[0..argc], NULL, envp..., NULL, auxv pairs..., AT_NULL.
//! `_start` records where it is; these accessors read it.

use core::sync::atomic::{AtomicUsize, Ordering};

static INITIAL_SP: AtomicUsize = AtomicUsize::new(0);
static ENTRY_RDX: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn init(sp: *const usize, rdx: usize) {
    INITIAL_SP.store(sp as usize, Ordering::Relaxed);
    ENTRY_RDX.store(rdx, Ordering::Relaxed);
}

/// The stack pointer at process entry (it points at argc).
pub fn initial_sp() -> usize {
    INITIAL_SP.load(Ordering::Relaxed)
}

/// %rdx at process entry: the ABI's "function to register with atexit", which
/// Linux sets to 0 for a static program.
pub fn entry_rdx() -> usize {
    ENTRY_RDX.load(Ordering::Relaxed)
}

fn word(i: usize) -> usize {
    // SAFETY: the kernel's initial stack stays mapped and unmodified for the
    // whole run (nothing writes above the stack pointer _start started with),
    // and callers only index within argc/argv/envp/auxv, each NULL-terminated.
    unsafe { *(initial_sp() as *const usize).add(i) }
}

pub fn argc() -> usize {
    word(0)
}

/// The address of argv[0] (the argv array itself).
pub fn argv_ptr() -> usize {
    initial_sp() + 8
}

/// A NUL-terminated string from the initial stack, without its NUL.
///
/// # Safety
/// `p` must point at a NUL-terminated string that lives for the whole run.
pub unsafe fn cstr(p: *const u8) -> &'static [u8] {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated, so every byte up to the NUL is readable.
    unsafe {
        while *p.add(n) != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(p, n)
    }
}

pub fn arg(i: usize) -> Option<&'static [u8]> {
    if i >= argc() {
        return None;
    }
    // SAFETY: argv[i] for i < argc is a string on the initial stack.
    Some(unsafe { cstr(word(1 + i) as *const u8) })
}

pub fn args() -> impl Iterator<Item = &'static [u8]> {
    (0..argc()).filter_map(arg)
}

/// Index (in words from the initial sp) of envp[0].
fn envp_index() -> usize {
    argc() + 2
}

pub fn envs() -> impl Iterator<Item = &'static [u8]> {
    let start = envp_index();
    (start..)
        .map(word)
        .take_while(|&p| p != 0)
        // SAFETY: each non-NULL envp entry is a string on the initial stack.
        .map(|p| unsafe { cstr(p as *const u8) })
}

/// Index (in words from the initial sp) of the first auxv pair.
fn auxv_index() -> usize {
    let mut i = envp_index();
    while word(i) != 0 {
        i += 1;
    }
    i + 1
}

/// Address of the auxiliary vector.
pub fn auxv_ptr() -> usize {
    initial_sp() + auxv_index() * 8
}

/// All auxv (type, value) pairs before AT_NULL.
pub fn auxv() -> impl Iterator<Item = (usize, usize)> {
    let start = auxv_index();
    (0..).map(move |k| (word(start + 2 * k), word(start + 2 * k + 1))).take_while(|&(t, _)| t != 0)
}

/// The value of auxv entry `ty` (one of the AT_ constants).
pub fn getauxval(ty: usize) -> Option<usize> {
    auxv().find(|&(t, _)| t == ty).map(|(_, v)| v)
}

pub const AT_NULL: usize = 0;
pub const AT_PHDR: usize = 3;
pub const AT_PHENT: usize = 4;
pub const AT_PHNUM: usize = 5;
pub const AT_PAGESZ: usize = 6;
pub const AT_BASE: usize = 7;
pub const AT_FLAGS: usize = 8;
pub const AT_ENTRY: usize = 9;
pub const AT_UID: usize = 11;
pub const AT_EUID: usize = 12;
pub const AT_GID: usize = 13;
pub const AT_EGID: usize = 14;
pub const AT_PLATFORM: usize = 15;
pub const AT_HWCAP: usize = 16;
pub const AT_CLKTCK: usize = 17;
pub const AT_SECURE: usize = 23;
pub const AT_RANDOM: usize = 25;
pub const AT_HWCAP2: usize = 26;
pub const AT_EXECFN: usize = 31;
pub const AT_SYSINFO_EHDR: usize = 33;
pub const AT_RSEQ_FEATURE_SIZE: usize = 27;
pub const AT_RSEQ_ALIGN: usize = 28;
pub const AT_MINSIGSTKSZ: usize = 51;

/// A name for an auxv type, for printing.
pub fn auxv_name(ty: usize) -> &'static str {
    match ty {
        AT_PHDR => "AT_PHDR",
        AT_PHENT => "AT_PHENT",
        AT_PHNUM => "AT_PHNUM",
        AT_PAGESZ => "AT_PAGESZ",
        AT_BASE => "AT_BASE",
        AT_FLAGS => "AT_FLAGS",
        AT_ENTRY => "AT_ENTRY",
        AT_UID => "AT_UID",
        AT_EUID => "AT_EUID",
        AT_GID => "AT_GID",
        AT_EGID => "AT_EGID",
        AT_PLATFORM => "AT_PLATFORM",
        AT_HWCAP => "AT_HWCAP",
        AT_CLKTCK => "AT_CLKTCK",
        AT_SECURE => "AT_SECURE",
        AT_RANDOM => "AT_RANDOM",
        AT_HWCAP2 => "AT_HWCAP2",
        AT_EXECFN => "AT_EXECFN",
        AT_SYSINFO_EHDR => "AT_SYSINFO_EHDR",
        AT_RSEQ_FEATURE_SIZE => "AT_RSEQ_FEATURE_SIZE",
        AT_RSEQ_ALIGN => "AT_RSEQ_ALIGN",
        AT_MINSIGSTKSZ => "AT_MINSIGSTKSZ",
        _ => "AT_?",
    }
}

/// Parses a decimal number (for argv values).
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// Parses a decimal number or a `0x`-prefixed hexadecimal one (seeds are
/// printed in hex, so they can be pasted back as arguments).
pub fn parse_num(s: &[u8]) -> Option<u64> {
    let Some(hex) = s.strip_prefix(b"0x").or_else(|| s.strip_prefix(b"0X")) else {
        return parse_u64(s);
    };
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in hex {
        let digit = (b as char).to_digit(16)?;
        v = v << 4 | digit as u64;
    }
    Some(v)
}

/// The first 8 of the 16 random bytes the kernel put on the initial stack
/// (AT_RANDOM), or 0 if there is no AT_RANDOM entry.
pub fn at_random_u64() -> u64 {
    match getauxval(AT_RANDOM) {
        // SAFETY: AT_RANDOM points at 16 bytes on the initial stack, which
        // stays mapped and unmodified for the whole run.
        Some(p) if p != 0 => unsafe { (p as *const u64).read_unaligned() },
        _ => 0,
    }
}
