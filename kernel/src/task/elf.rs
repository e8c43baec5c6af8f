//! Parsing static ELF64 executables for x86_64 (ET_EXEC, and static-pie
//! ET_DYN without an interpreter).

use alloc::vec::Vec;

use crate::mm::addrspace::Prot;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
/// Where a position-independent executable is placed (Linux's ELF_ET_DYN_BASE).
pub const PIE_BASE: u64 = 0x5555_5555_4000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    TooShort,
    NotElf,
    Not64Bit,
    NotLittleEndian,
    NotX86_64,
    /// Not an executable (a relocatable object or core file).
    NotExecutable,
    /// Needs a dynamic loader (PT_INTERP), which we do not have.
    NeedsInterpreter,
    /// A segment lies outside the file or user space, or is inconsistent.
    BadSegment,
    NoLoadableSegment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub mem_size: u64,
    pub file_offset: u64,
    pub file_size: u64,
    pub prot: Prot,
}

#[derive(Clone, Debug)]
pub struct Executable {
    /// Added to every address in the file (0 for ET_EXEC).
    pub base: u64,
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// Where the program headers are in memory (AT_PHDR), if loaded.
    pub phdr: u64,
    pub phent: u16,
    pub phnum: u16,
}

fn u16_at(d: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([d[o], d[o + 1]])
}
fn u32_at(d: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(d[o..o + 4].try_into().expect("4 bytes"))
}
fn u64_at(d: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(d[o..o + 8].try_into().expect("8 bytes"))
}

pub fn parse(file: &[u8]) -> Result<Executable, ElfError> {
    if file.len() < 64 {
        return Err(ElfError::TooShort);
    }
    if &file[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if file[4] != 2 {
        return Err(ElfError::Not64Bit);
    }
    if file[5] != 1 {
        return Err(ElfError::NotLittleEndian);
    }
    let kind = u16_at(file, 16);
    if u16_at(file, 18) != EM_X86_64 {
        return Err(ElfError::NotX86_64);
    }
    let base = match kind {
        ET_EXEC => 0,
        ET_DYN => PIE_BASE,
        _ => return Err(ElfError::NotExecutable),
    };
    let entry = u64_at(file, 24);
    let phoff = u64_at(file, 32) as usize;
    let phent = u16_at(file, 54);
    let phnum = u16_at(file, 56);
    if (phent as usize) < 56 {
        return Err(ElfError::BadSegment);
    }
    let table_end = phoff.checked_add(phent as usize * phnum as usize).ok_or(ElfError::BadSegment)?;
    if table_end > file.len() {
        return Err(ElfError::TooShort);
    }
    let mut segments = Vec::new();
    let mut phdr = None;
    for i in 0..phnum as usize {
        let h = &file[phoff + i * phent as usize..];
        let kind = u32_at(h, 0);
        let flags = u32_at(h, 4);
        let offset = u64_at(h, 8);
        let vaddr = u64_at(h, 16).checked_add(base).ok_or(ElfError::BadSegment)?;
        let file_size = u64_at(h, 32);
        let mem_size = u64_at(h, 40);
        match kind {
            PT_INTERP => return Err(ElfError::NeedsInterpreter),
            PT_PHDR => phdr = Some(vaddr),
            PT_LOAD => {
                let in_file = offset.checked_add(file_size).is_some_and(|end| end <= file.len() as u64);
                let in_user = vaddr.checked_add(mem_size).is_some_and(|end| end <= crate::mm::layout::USER_END);
                if !in_file || !in_user || file_size > mem_size || vaddr % 4096 != offset % 4096 {
                    return Err(ElfError::BadSegment);
                }
                let mut prot = Prot::empty();
                if flags & 4 != 0 {
                    prot |= Prot::READ;
                }
                if flags & 2 != 0 {
                    prot |= Prot::WRITE;
                }
                if flags & 1 != 0 {
                    prot |= Prot::EXEC;
                }
                segments.push(Segment { vaddr, mem_size, file_offset: offset, file_size, prot });
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegment);
    }
    // Without PT_PHDR, the headers are wherever the segment holding their
    // file offset puts them.
    let phdr = phdr.or_else(|| {
        segments
            .iter()
            .find(|s| s.file_offset <= phoff as u64 && (phoff as u64) < s.file_offset + s.file_size)
            .map(|s| s.vaddr + (phoff as u64 - s.file_offset))
    });
    let entry = entry.checked_add(base).ok_or(ElfError::BadSegment)?;
    Ok(Executable { base, entry, segments, phdr: phdr.unwrap_or(0), phent, phnum })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_elf(kind: u16, machine: u16, interp: bool) -> Vec<u8> {
        let mut f = alloc::vec![0u8; 0x2000];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[16..18].copy_from_slice(&kind.to_le_bytes());
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph = |f: &mut Vec<u8>, i: usize, kind: u32, flags: u32, off: u64, vaddr: u64, filesz: u64, memsz: u64| {
            let o = 64 + i * 56;
            f[o..o + 4].copy_from_slice(&kind.to_le_bytes());
            f[o + 4..o + 8].copy_from_slice(&flags.to_le_bytes());
            f[o + 8..o + 16].copy_from_slice(&off.to_le_bytes());
            f[o + 16..o + 24].copy_from_slice(&vaddr.to_le_bytes());
            f[o + 32..o + 40].copy_from_slice(&filesz.to_le_bytes());
            f[o + 40..o + 48].copy_from_slice(&memsz.to_le_bytes());
        };
        ph(&mut f, 0, PT_LOAD, 4, 0, 0x400000, 0x1000, 0x1000);
        ph(&mut f, 1, if interp { PT_INTERP } else { PT_LOAD }, 5, 0x1000, 0x401000, 0x1000, 0x3000);
        f
    }

    #[test_case]
    fn parses_a_static_executable() {
        let exe = parse(&tiny_elf(ET_EXEC, EM_X86_64, false)).unwrap();
        assert_eq!(exe.entry, 0x401000);
        assert_eq!(exe.segments.len(), 2);
        assert_eq!(exe.segments[1].prot, Prot::READ | Prot::EXEC);
        assert_eq!(exe.segments[1].mem_size, 0x3000);
        assert_eq!(exe.phdr, 0x400040, "headers found through the first segment");
        assert_eq!((exe.phent, exe.phnum), (56, 2));
    }

    #[test_case]
    fn rejects_what_it_cannot_run() {
        assert_eq!(parse(b"#!/bin/sh\n").unwrap_err(), ElfError::TooShort);
        assert_eq!(parse(&[b'x'; 100]).unwrap_err(), ElfError::NotElf);
        assert_eq!(parse(&tiny_elf(ET_EXEC, 40, false)).unwrap_err(), ElfError::NotX86_64);
        assert_eq!(parse(&tiny_elf(1, EM_X86_64, false)).unwrap_err(), ElfError::NotExecutable);
        assert_eq!(parse(&tiny_elf(ET_EXEC, EM_X86_64, true)).unwrap_err(), ElfError::NeedsInterpreter);
        let mut truncated = tiny_elf(ET_EXEC, EM_X86_64, false);
        truncated.truncate(0x1800);
        assert_eq!(parse(&truncated).unwrap_err(), ElfError::BadSegment);
    }
}
