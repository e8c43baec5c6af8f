//! mmap, munmap, mprotect, madvise, brk: argument checks in Linux's order,
//! then `mm::addrspace`.

use super::{current_process, Errno, SysResult};
use crate::mm::addrspace::{MapError, MmapRequest, Prot, PAGE};
use crate::mm::frame;

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_SHARED_VALIDATE: u64 = 0x03;
const MAP_TYPE: u64 = 0x0f;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_NORESERVE: u64 = 0x4000;
const MAP_POPULATE: u64 = 0x8000;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
/// Every flag Linux knows (MAP_SHARED_VALIDATE rejects others).
const MAP_KNOWN: u64 = 0x1f_ffff;

const PROT_GROWSDOWN: u64 = 0x0100_0000;
const PROT_GROWSUP: u64 = 0x0200_0000;

impl From<MapError> for Errno {
    fn from(e: MapError) -> Self {
        match e {
            MapError::Invalid => Errno::EINVAL,
            MapError::NoMemory => Errno::ENOMEM,
            MapError::Exists => Errno::EEXIST,
        }
    }
}

pub fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> SysResult {
    if !offset.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    if flags & MAP_ANONYMOUS == 0 {
        // There are no files: the console cannot be mapped, anything else is not a descriptor.
        return Err(if fd <= 2 { Errno::ENODEV } else { Errno::EBADF });
    }
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let shared = match flags & MAP_TYPE {
        MAP_SHARED => true,
        MAP_PRIVATE => false,
        MAP_SHARED_VALIDATE if flags & !MAP_KNOWN == 0 => true,
        MAP_SHARED_VALIDATE => return Err(Errno::EINVAL),
        _ => return Err(Errno::EINVAL),
    };
    let prot = Prot::from_bits_truncate(prot as u32);
    let pages = len.div_ceil(PAGE);
    // Linux's heuristic overcommit: one mapping may not exceed all of RAM,
    // unless it asks not to reserve.
    let accounted = shared || prot.contains(Prot::WRITE);
    if accounted && flags & MAP_NORESERVE == 0 && pages > frame::stats().total as u64 {
        return Err(Errno::ENOMEM);
    }
    let request = MmapRequest {
        addr,
        len,
        prot,
        shared,
        fixed: flags & MAP_FIXED != 0,
        fixed_noreplace: flags & MAP_FIXED_NOREPLACE != 0 && flags & MAP_FIXED == 0,
        populate: flags & MAP_POPULATE != 0,
    };
    Ok(current_process().mm.mmap(&request)?)
}

pub fn munmap(addr: u64, len: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE) || len == 0 {
        return Err(Errno::EINVAL);
    }
    current_process().mm.munmap(addr, len)?;
    Ok(0)
}

pub fn mprotect(addr: u64, len: u64, prot: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    if addr.checked_add(len.next_multiple_of(PAGE)).is_none() {
        return Err(Errno::ENOMEM);
    }
    if prot & !(7 | PROT_GROWSDOWN | PROT_GROWSUP) != 0
        || prot & (PROT_GROWSDOWN | PROT_GROWSUP) == PROT_GROWSDOWN | PROT_GROWSUP
    {
        return Err(Errno::EINVAL);
    }
    current_process().mm.mprotect(addr, len, Prot::from_bits_truncate(prot as u32))?;
    Ok(0)
}

const MADV_DONTNEED: u64 = 4;
const MADV_FREE: u64 = 8;

fn advice_is_valid(advice: u64) -> bool {
    matches!(advice, 0..=4 | 8..=25 | 100 | 101)
}

pub fn madvise(addr: u64, len: u64, advice: u64) -> SysResult {
    if !advice_is_valid(advice) {
        return Err(Errno::EINVAL);
    }
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    let len = len.checked_add(PAGE - 1).ok_or(Errno::EINVAL)? & !(PAGE - 1);
    if addr.checked_add(len).is_none() {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    let mm = current_process().mm.clone();
    match advice {
        MADV_DONTNEED | MADV_FREE => mm.madvise_dontneed(addr, len)?,
        // Accepted hints: nothing to do, but the range must be mapped.
        _ if !mm.is_mapped(addr, len) => return Err(Errno::ENOMEM),
        _ => {}
    }
    Ok(0)
}

pub fn brk(addr: u64) -> SysResult {
    Ok(current_process().mm.brk(addr))
}
