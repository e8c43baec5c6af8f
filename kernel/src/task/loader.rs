//! Starting a program: an address space from its ELF file, and the initial
//! stack Linux gives a process (argc, argv, envp, auxv).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::elf::{self, ElfError, Executable};
use super::process::Process;
use super::thread::Thread;
use crate::arch::context::{user_selectors, FpuState};
use crate::arch::traps::TrapFrame;
use crate::mm::addrspace::{AddressSpace, MapError, MmapRequest, Prot, PAGE, STACK_SIZE, STACK_TOP};
use crate::mm::frame::Frame;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    Elf(ElfError),
    Map(MapError),
}

impl From<ElfError> for LoadError {
    fn from(e: ElfError) -> Self {
        LoadError::Elf(e)
    }
}

impl From<MapError> for LoadError {
    fn from(e: MapError) -> Self {
        LoadError::Map(e)
    }
}

/// What the kernel passes the first process (as Linux does for /init).
pub const INIT_ARGV: &[&str] = &["/init"];
pub const INIT_ENVP: &[&str] = &["HOME=/", "TERM=linux"];

/// Loads `file` into a new process and starts its first thread.
pub fn spawn(file: &[u8], argv: &[&str], envp: &[&str]) -> Result<Arc<Process>, LoadError> {
    let exe = elf::parse(file)?;
    let mm = AddressSpace::new()?;
    load_segments(&mm, &exe, file)?;
    let sp = build_stack(&mm, &exe, argv, envp)?;
    let process = Process::new(mm, 0);
    let (cs, ss) = user_selectors();
    let frame = TrapFrame {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rbp: 0,
        rdi: 0,
        rsi: 0,
        // rdx = 0: no function for the program to register with atexit.
        rdx: 0,
        rcx: 0,
        rbx: 0,
        rax: 0,
        vector: 0,
        error_code: 0,
        rip: exe.entry,
        cs,
        rflags: 0x202,
        rsp: sp,
        ss,
    };
    let thread = Thread::new_user(process.clone(), &frame, FpuState::new()).map_err(|_| MapError::NoMemory)?;
    process.start_thread(thread);
    Ok(process)
}

/// Copies the PT_LOAD segments into fresh frames, page by page (segments
/// that share a page share its frame, with the union of their rights).
fn load_segments(mm: &AddressSpace, exe: &Executable, file: &[u8]) -> Result<(), LoadError> {
    let mut pages: BTreeMap<u64, (Prot, Frame)> = BTreeMap::new();
    let mut top = 0;
    for seg in &exe.segments {
        let first = seg.vaddr & !(PAGE - 1);
        let end = (seg.vaddr + seg.mem_size).next_multiple_of(PAGE);
        top = top.max(end);
        for page in (first..end).step_by(PAGE as usize) {
            let (prot, frame) = match pages.entry(page) {
                alloc::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                alloc::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((Prot::empty(), Frame::alloc_zeroed().map_err(|_| MapError::NoMemory)?))
                }
            };
            *prot |= seg.prot;
            // The file bytes of this segment that fall in this page.
            let from = page.max(seg.vaddr);
            let to = (page + PAGE).min(seg.vaddr + seg.file_size);
            if from < to {
                let src = (seg.file_offset + (from - seg.vaddr)) as usize;
                let dst = (from - page) as usize;
                let n = (to - from) as usize;
                frame.bytes_mut()[dst..dst + n].copy_from_slice(&file[src..src + n]);
            }
        }
    }
    for (page, (prot, frame)) in pages {
        mm.map_frame(page, prot, frame)?;
    }
    mm.set_brk_start(top);
    Ok(())
}

const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_EXECFN: u64 = 31;

/// Builds the initial stack below STACK_TOP; returns the stack pointer
/// (pointing at argc, 16-byte aligned).
fn build_stack(mm: &AddressSpace, exe: &Executable, argv: &[&str], envp: &[&str]) -> Result<u64, LoadError> {
    // Strings and random bytes go at the very top, the vectors below them.
    let mut info: Vec<u8> = Vec::new();
    let mut offsets = Vec::new();
    for s in argv.iter().chain(envp).chain(&["x86_64", argv.first().copied().unwrap_or("")]) {
        offsets.push(info.len());
        info.extend_from_slice(s.as_bytes());
        info.push(0);
    }
    let random_offset = info.len();
    info.extend_from_slice(&random_bytes());
    let info_start = (STACK_TOP - info.len() as u64) & !15;
    let addr_of = |i: usize| info_start + offsets[i] as u64;
    let platform = addr_of(argv.len() + envp.len());
    let execfn = addr_of(argv.len() + envp.len() + 1);

    let mut words: Vec<u64> = Vec::new();
    words.push(argv.len() as u64);
    words.extend((0..argv.len()).map(addr_of));
    words.push(0);
    words.extend((argv.len()..argv.len() + envp.len()).map(addr_of));
    words.push(0);
    let hwcap = core::arch::x86_64::__cpuid(1).edx as u64;
    for (key, value) in [
        (AT_PHDR, exe.phdr),
        (AT_PHENT, exe.phent as u64),
        (AT_PHNUM, exe.phnum as u64),
        (AT_PAGESZ, PAGE),
        (AT_BASE, 0),
        (AT_FLAGS, 0),
        (AT_ENTRY, exe.entry),
        (AT_UID, 0),
        (AT_EUID, 0),
        (AT_GID, 0),
        (AT_EGID, 0),
        (AT_PLATFORM, platform),
        (AT_HWCAP, hwcap),
        (AT_CLKTCK, crate::arch::time::HZ),
        (AT_SECURE, 0),
        (AT_RANDOM, info_start + random_offset as u64),
        (AT_EXECFN, execfn),
        (AT_NULL, 0),
    ] {
        words.push(key);
        words.push(value);
    }
    let sp = (info_start - words.len() as u64 * 8) & !15;

    // Lay out [low, STACK_TOP) in a buffer, then hand it over page by page.
    let low = sp & !(PAGE - 1);
    let mut image = alloc::vec![0u8; (STACK_TOP - low) as usize];
    for (i, word) in words.iter().enumerate() {
        let at = (sp - low) as usize + i * 8;
        image[at..at + 8].copy_from_slice(&word.to_le_bytes());
    }
    let at = (info_start - low) as usize;
    image[at..at + info.len()].copy_from_slice(&info);
    let rw = Prot::READ | Prot::WRITE;
    for (i, chunk) in image.chunks(PAGE as usize).enumerate() {
        let mut frame = Frame::alloc_zeroed().map_err(|_| MapError::NoMemory)?;
        frame.bytes_mut()[..chunk.len()].copy_from_slice(chunk);
        mm.map_frame(low + i as u64 * PAGE, rw, frame)?;
    }
    // The rest of the stack is demand-zero memory below.
    let bottom = STACK_TOP - STACK_SIZE;
    mm.mmap(&MmapRequest { addr: bottom, len: low - bottom, prot: rw, fixed: true, ..MmapRequest::default() })?;
    Ok(sp)
}

/// 16 bytes for AT_RANDOM: RDRAND when the CPU has it, else mixed TSC reads.
fn random_bytes() -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut state = crate::arch::read_tsc() | 1;
    for chunk in out.chunks_mut(8) {
        // xorshift over the TSC: not cryptographic, but different every boot.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state ^= crate::arch::read_tsc();
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    out
}
