//! args: prints argc, argv and envp, and checks what the kernel put on the
//! initial stack: its alignment, %rdx at entry, and the auxiliary vector
//! (AT_PAGESZ, AT_ENTRY, AT_PHDR/AT_PHENT/AT_PHNUM against this executable's
//! own ELF headers, AT_RANDOM). argv and envp vary, so they are `info:` lines.
#![no_std]
#![no_main]

use core::fmt::Debug;
use core::ptr;

use ulib::env::{self, *};
use ulib::io::Bytes;
use ulib::println;
use ulib::sys::{futex, Timespec, FUTEX_PRIVATE_FLAG, FUTEX_WAIT};
use ulib::Errno;

ulib::entry!(main);

const PT_LOAD: u32 = 1;
const PT_PHDR: u32 = 6;
const PF_X: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
struct Phdr {
    p_type: u32,
    p_flags: u32,
    p_offset: u64,
    p_vaddr: u64,
    p_paddr: u64,
    p_filesz: u64,
    p_memsz: u64,
    p_align: u64,
}

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check<T: Debug>(&mut self, what: &str, pass: bool, expected: &str, got: T) {
        if pass {
            self.passed += 1;
            println!("ok: {}", what);
        } else {
            self.failed += 1;
            println!("FAIL: {}: expected {}, got {:?}", what, expected, got);
        }
    }
}

/// Whether the kernel can read the word holding address `p` (a FUTEX_WAIT with
/// a zero timeout reads it, or fails with EFAULT).
fn readable(p: usize) -> bool {
    // SAFETY: FUTEX_WAIT only reads the word; with a zero timeout it returns at once.
    let r = unsafe { futex((p & !3) as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0x5eed, &Timespec::default()) };
    r != Err(Errno::EFAULT)
}

fn main() -> i32 {
    let mut t = Tally { passed: 0, failed: 0 };
    let argc = env::argc();
    println!("args: argc = {}", argc);
    for (i, a) in env::args().enumerate() {
        println!("info: argv[{}] = {}", i, Bytes(a));
    }
    let mut nenv = 0;
    for (i, e) in env::envs().enumerate() {
        println!("info: envp[{}] = {}", i, Bytes(e));
        nenv += 1;
    }
    println!("info: {} environment entries", nenv);
    for (ty, v) in env::auxv() {
        println!("info: auxv {:>2} {:<15} = {:#x}", ty, auxv_name(ty), v);
    }

    let sp = env::initial_sp();
    t.check("the initial stack pointer is 16-byte aligned", sp.is_multiple_of(16), "sp % 16 == 0", sp);
    t.check("%rdx at entry is 0 (no atexit function)", env::entry_rdx() == 0, "0", env::entry_rdx());
    // SAFETY: argv has argc + 1 entries, the last one NULL, on the initial stack.
    let argv_end = unsafe { *(env::argv_ptr() as *const usize).add(argc) };
    t.check("argv[argc] is NULL", argv_end == 0, "0", argv_end);
    t.check(
        "argc >= 1 and argv[0] is not empty",
        argc >= 1 && env::arg(0).is_some_and(|a| !a.is_empty()),
        "a program name",
        argc,
    );

    let pagesz = getauxval(AT_PAGESZ);
    t.check("AT_PAGESZ is 4096", pagesz == Some(4096), "Some(4096)", pagesz);
    let entry = getauxval(AT_ENTRY);
    t.check("AT_ENTRY is the address of _start", entry == Some(ulib::start_address()), "address of _start", entry);

    let phent = getauxval(AT_PHENT);
    t.check("AT_PHENT is 56 (sizeof Elf64_Phdr)", phent == Some(56), "Some(56)", phent);
    let phdr = getauxval(AT_PHDR).unwrap_or(0);
    let phnum = getauxval(AT_PHNUM).unwrap_or(0);
    t.check("AT_PHDR and AT_PHNUM are present", phdr != 0 && phnum != 0 && phnum < 64, "non-zero", (phdr, phnum));
    if phdr != 0 && phnum != 0 && phnum < 64 && readable(phdr) && readable(phdr + phnum * 56 - 4) {
        // SAFETY: AT_PHDR points at AT_PHNUM program headers, just checked readable.
        let phdrs = unsafe { core::slice::from_raw_parts(phdr as *const Phdr, phnum) };
        let self_entry = phdrs.iter().find(|p| p.p_type == PT_PHDR);
        t.check(
            "PT_PHDR (if any) has p_vaddr = AT_PHDR",
            self_entry.is_none_or(|p| p.p_vaddr as usize == phdr),
            "AT_PHDR",
            self_entry.map(|p| p.p_vaddr),
        );
        let start = ulib::start_address() as u64;
        let text = phdrs.iter().any(|p| {
            p.p_type == PT_LOAD && p.p_flags & PF_X != 0 && (p.p_vaddr..p.p_vaddr + p.p_memsz).contains(&start)
        });
        t.check("an executable PT_LOAD covers _start", text, "one", ());
        let covers_phdr =
            phdrs.iter().any(|p| p.p_type == PT_LOAD && (p.p_vaddr..p.p_vaddr + p.p_filesz).contains(&(phdr as u64)));
        t.check("a PT_LOAD maps the program headers themselves", covers_phdr, "one", ());
        // The PT_LOAD at file offset 0 maps the ELF header: check it agrees.
        match phdrs.iter().find(|p| p.p_type == PT_LOAD && p.p_offset == 0) {
            Some(first) => {
                let ehdr = first.p_vaddr as usize;
                // SAFETY: that segment is loaded (it maps the program headers,
                // which follow the ELF header in the file) and is at least 64 bytes.
                let (magic, e_entry, e_phoff, e_phentsize, e_phnum) = unsafe {
                    (
                        ptr::read(ehdr as *const [u8; 4]),
                        ptr::read((ehdr + 24) as *const u64),
                        ptr::read((ehdr + 32) as *const u64),
                        ptr::read((ehdr + 54) as *const u16),
                        ptr::read((ehdr + 56) as *const u16),
                    )
                };
                let agrees = magic == *b"\x7fELF"
                    && Some(e_entry as usize) == entry
                    && ehdr + e_phoff as usize == phdr
                    && Some(e_phentsize as usize) == phent
                    && e_phnum as usize == phnum;
                t.check(
                    "the ELF header agrees with AT_ENTRY, AT_PHDR, AT_PHENT and AT_PHNUM",
                    agrees,
                    "agreement",
                    (e_entry, ehdr as u64 + e_phoff, e_phentsize, e_phnum),
                );
            }
            None => t.check("a PT_LOAD maps the ELF header (file offset 0)", false, "one", ()),
        }
    } else {
        t.check("AT_PHDR points at readable program headers", false, "readable", (phdr, phnum));
    }

    let random = getauxval(AT_RANDOM).unwrap_or(0);
    let ok = random != 0 && readable(random) && readable(random + 15);
    t.check("AT_RANDOM points at 16 readable bytes", ok, "readable", random);
    if ok {
        // SAFETY: just checked that both ends are readable.
        let bytes = unsafe { ptr::read_unaligned(random as *const [u8; 16]) };
        println!("info: AT_RANDOM bytes {:02x?}", bytes);
    }
    println!("args: {} passed, {} failed", t.passed, t.failed);
    if t.failed == 0 {
        0
    } else {
        1
    }
}
