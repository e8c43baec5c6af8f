//! mmap, munmap, mprotect, mremap, madvise, brk: argument checks in Linux's order,
//! then `mm::addrspace`. Lengths and addresses are rounded and added only
//! through `mm::pages`, whose helpers check every overflow.

use super::{current_process, Errno, SysResult};
use crate::mm::addrspace::{Advice, MapError, MmapRequest, MremapRequest, Prot};
use crate::mm::frame;
use crate::mm::pages::{self, PAGE};

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
/// Private memory the kernel may drop under memory pressure (Linux 6.11);
/// we never reclaim, so it is private memory.
const MAP_DROPPABLE: u64 = 0x08;
const MAP_TYPE: u64 = 0x0f;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_GROWSDOWN: u64 = 0x100;
const MAP_NORESERVE: u64 = 0x4000;
const MAP_POPULATE: u64 = 0x8000;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

const PROT_RWX: u64 = 0x7;
const PROT_SEM: u64 = 0x8;
const PROT_GROWSDOWN: u64 = 0x0100_0000;
const PROT_GROWSUP: u64 = 0x0200_0000;

impl From<MapError> for Errno {
    fn from(e: MapError) -> Self {
        match e {
            MapError::Invalid => Errno::EINVAL,
            MapError::NoMemory => Errno::ENOMEM,
            MapError::Exists => Errno::EEXIST,
            MapError::Denied => Errno::EACCES,
            MapError::Unmapped => Errno::EFAULT,
        }
    }
}

pub fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> SysResult {
    if !pages::is_aligned(offset) {
        return Err(Errno::EINVAL);
    }
    if flags & MAP_ANONYMOUS == 0 {
        // There are no files: the console cannot be mapped, anything else is not a descriptor.
        return Err(if fd <= 2 { Errno::ENODEV } else { Errno::EBADF });
    }
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    // Anonymous memory knows only these types: MAP_SHARED_VALIDATE (3) is
    // for files, as are the others.
    let shared = match flags & MAP_TYPE {
        MAP_SHARED if flags & MAP_GROWSDOWN != 0 => return Err(Errno::EINVAL),
        MAP_SHARED => true,
        MAP_DROPPABLE if flags & MAP_GROWSDOWN != 0 => return Err(Errno::EINVAL),
        MAP_PRIVATE | MAP_DROPPABLE => false,
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
    // MAP_FIXED_NOREPLACE is MAP_FIXED that fails with EEXIST over a mapping,
    // with or without MAP_FIXED beside it.
    let request = MmapRequest {
        addr,
        len,
        prot,
        shared,
        fixed: flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0,
        fixed_noreplace: flags & MAP_FIXED_NOREPLACE != 0,
        populate: flags & MAP_POPULATE != 0,
    };
    // RLIMIT_AS, over the pages a fixed mapping does not replace.
    let bytes = pages.saturating_mul(PAGE);
    let replaced =
        if request.fixed { current_process().mm.mapped_bytes_in(addr, addr.saturating_add(bytes)) } else { 0 };
    may_expand(bytes, replaced)?;
    Ok(current_process().mm.mmap(&request)?)
}

pub fn munmap(addr: u64, len: u64) -> SysResult {
    if !pages::is_aligned(addr) || len == 0 {
        return Err(Errno::EINVAL);
    }
    current_process().mm.munmap(addr, len)?;
    Ok(0)
}

pub fn mprotect(addr: u64, len: u64, prot: u64) -> SysResult {
    let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
    if grows == PROT_GROWSDOWN | PROT_GROWSUP {
        return Err(Errno::EINVAL);
    }
    if !pages::is_aligned(addr) {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    // Linux: PAGE_ALIGN(len) may wrap to 0, then `end <= start` is ENOMEM.
    let end = pages::round_up(len).and_then(|len| addr.checked_add(len)).filter(|&end| end > addr);
    let Some(end) = end else { return Err(Errno::ENOMEM) };
    if prot & !(PROT_RWX | PROT_SEM | grows) != 0 {
        return Err(Errno::EINVAL);
    }
    let mm = current_process().mm.clone();
    if grows != 0 {
        // No VMA of ours grows (the stack is mapped whole): EINVAL where a
        // mapping is found, ENOMEM where none is, as Linux answers for an
        // ordinary mapping.
        return Err(if mm.has_vma_in(addr, end, grows == PROT_GROWSUP) { Errno::EINVAL } else { Errno::ENOMEM });
    }
    // Nothing is mapped above USER_END: a range reaching past it changes the
    // VMAs up to there, then fails at the hole, as Linux's does.
    let user_end = crate::mm::layout::USER_END;
    mm.mprotect(addr, end.min(user_end), Prot::from_bits_truncate(prot as u32))?;
    if end > user_end {
        return Err(Errno::ENOMEM);
    }
    Ok(0)
}

const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const MREMAP_DONTUNMAP: u64 = 4;

/// mremap, with Linux's checks in Linux's order: the flags, then the
/// address, then the lengths (page-aligned with wrap-around, as PAGE_ALIGN).
pub fn mremap(addr: u64, old_len: u64, new_len: u64, flags: u64, new_addr: u64) -> SysResult {
    if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 {
        return Err(Errno::EINVAL);
    }
    let may_move = flags & MREMAP_MAYMOVE != 0;
    let fixed = flags & MREMAP_FIXED != 0;
    let dont_unmap = flags & MREMAP_DONTUNMAP != 0;
    if fixed && !may_move {
        return Err(Errno::EINVAL);
    }
    // MREMAP_DONTUNMAP always moves, and never resizes (the raw lengths).
    if dont_unmap && (!may_move || old_len != new_len) {
        return Err(Errno::EINVAL);
    }
    if !pages::is_aligned(addr) {
        return Err(Errno::EINVAL);
    }
    let align = |len: u64| len.wrapping_add(PAGE - 1) & !(PAGE - 1);
    let (old_len, new_len) = (align(old_len), align(new_len));
    if new_len == 0 {
        return Err(Errno::EINVAL);
    }
    // RLIMIT_AS: what the call adds (Linux's vma_to_resize checks it once
    // the mapping is found; only a finite limit can tell the difference).
    let added = if dont_unmap { new_len } else { new_len.saturating_sub(old_len) };
    if added > 0 {
        may_expand(added, 0)?;
    }
    let request = MremapRequest { old_addr: addr, old_len, new_len, may_move, fixed, dont_unmap, new_addr };
    Ok(current_process().mm.mremap(&request)?)
}

const MADV_NORMAL: u64 = 0;
const MADV_RANDOM: u64 = 1;
const MADV_SEQUENTIAL: u64 = 2;
const MADV_DONTNEED: u64 = 4;
const MADV_HUGEPAGE: u64 = 14;
const MADV_NOHUGEPAGE: u64 = 15;
const MADV_FREE: u64 = 8;
const MADV_REMOVE: u64 = 9;
const MADV_WIPEONFORK: u64 = 18;
const MADV_POPULATE_READ: u64 = 22;
const MADV_POPULATE_WRITE: u64 = 23;
const MADV_DONTNEED_LOCKED: u64 = 24;

/// What the advice does to anonymous memory; `None` for numbers Linux 6.12 rejects.
fn advice(number: u64) -> Option<Advice> {
    Some(match number {
        MADV_DONTNEED | MADV_DONTNEED_LOCKED => Advice::DontNeed,
        MADV_FREE => Advice::Free,
        MADV_REMOVE => Advice::Remove,
        MADV_WIPEONFORK => Advice::WipeOnFork,
        MADV_POPULATE_READ => Advice::PopulateRead,
        MADV_POPULATE_WRITE => Advice::PopulateWrite,
        MADV_NORMAL => Advice::Normal,
        MADV_SEQUENTIAL => Advice::Sequential,
        MADV_RANDOM => Advice::Random,
        MADV_HUGEPAGE => Advice::HugePage,
        MADV_NOHUGEPAGE => Advice::NoHugePage,
        3 | 10..=13 | 16 | 17 | 19..=21 | 25 | 100 | 101 => Advice::Hint,
        _ => return None,
    })
}

pub fn madvise(addr: u64, len: u64, advice_number: u64) -> SysResult {
    let Some(advice) = advice(advice_number) else { return Err(Errno::EINVAL) };
    if !pages::is_aligned(addr) {
        return Err(Errno::EINVAL);
    }
    // A length that rounds up past 2^64 is EINVAL, as is a wrapping range.
    let len = pages::round_up(len).ok_or(Errno::EINVAL)?;
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    if len == 0 {
        return Ok(0);
    }
    current_process().mm.madvise(addr, end, advice)?;
    Ok(0)
}

/// brk: growing past RLIMIT_AS leaves the break where it was, as on Linux.
pub fn brk(addr: u64) -> SysResult {
    let mm = current_process().mm.clone();
    let old = mm.brk(0);
    let growth = pages::round_up(addr).unwrap_or(u64::MAX).saturating_sub(pages::round_up(old).unwrap_or(u64::MAX));
    if growth > 0 && may_expand(growth, 0).is_err() {
        return Ok(old);
    }
    Ok(mm.brk(addr))
}

/// Whether [base, base + len) is a user range (Linux's access_ok).
fn access_ok(base: u64, len: u64) -> bool {
    base.checked_add(len).is_some_and(|end| end <= crate::mm::layout::USER_END)
}

/// mincore: one byte per page of [start, start + len), 1 where a frame is
/// mapped; checks in Linux's order (EINVAL unaligned, ENOMEM outside user
/// space, EFAULT for the vector), and ENOMEM at a hole after the bytes
/// before it were copied.
pub fn mincore(start: u64, len: u64, vec: u64) -> SysResult {
    if !pages::is_aligned(start) {
        return Err(Errno::EINVAL);
    }
    if !access_ok(start, len) {
        return Err(Errno::ENOMEM);
    }
    let count = len.div_ceil(PAGE);
    if !access_ok(vec, count) {
        return Err(Errno::EFAULT);
    }
    let (bytes, hole) = current_process().mm.residency(start, start + count * PAGE);
    crate::mm::uaccess::copy_to_user(vec, &bytes)?;
    if hole {
        return Err(Errno::ENOMEM);
    }
    Ok(0)
}

const MS_ASYNC: u64 = 1;
const MS_INVALIDATE: u64 = 2;
const MS_SYNC: u64 = 4;

/// msync: anonymous memory has nowhere to be written back, so after
/// Linux's checks (EINVAL for flags and alignment, ENOMEM for a range
/// with a hole) it is done. No VMA is ever mlocked for MS_INVALIDATE's
/// EBUSY: mlock only populates.
pub fn msync(start: u64, len: u64, flags: u64) -> SysResult {
    if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0 || !pages::is_aligned(start) {
        return Err(Errno::EINVAL);
    }
    if flags & (MS_ASYNC | MS_SYNC) == MS_ASYNC | MS_SYNC {
        return Err(Errno::EINVAL);
    }
    let len = pages::round_up(len).ok_or(Errno::ENOMEM)?;
    let end = start.checked_add(len).ok_or(Errno::ENOMEM)?;
    if end == start {
        return Ok(0);
    }
    current_process().mm.msync(start, end, flags == MS_SYNC)?;
    Ok(0)
}

/// mlock's and munlock's range: the pages [start, start + len) touches.
/// We run as root (CAP_IPC_LOCK), so RLIMIT_MEMLOCK does not apply.
fn lock_range(start: u64, len: u64) -> Result<Option<(u64, u64)>, Errno> {
    let offset = start % PAGE;
    let len = len.checked_add(offset).and_then(pages::round_up).ok_or(Errno::EINVAL)?;
    let start = start - offset;
    let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
    Ok((end != start).then_some((start, end)))
}

/// mlock: every page is populated (nothing is ever reclaimed, so it stays).
/// ENOMEM for a hole or a PROT_NONE mapping.
pub fn mlock(start: u64, len: u64) -> SysResult {
    mlock2(start, len, 0)
}

const MLOCK_ONFAULT: u64 = 1;

/// mlock2: MLOCK_ONFAULT locks without populating.
pub fn mlock2(start: u64, len: u64, flags: u64) -> SysResult {
    if flags & !MLOCK_ONFAULT != 0 {
        return Err(Errno::EINVAL);
    }
    let Some((start, end)) = lock_range(start, len)? else { return Ok(0) };
    current_process().mm.mlock(start, end, flags & MLOCK_ONFAULT == 0)?;
    Ok(0)
}

pub fn munlock(start: u64, len: u64) -> SysResult {
    let Some((start, end)) = lock_range(start, len)? else { return Ok(0) };
    current_process().mm.mlock(start, end, false)?;
    Ok(0)
}

const MCL_CURRENT: u64 = 1;
const MCL_FUTURE: u64 = 2;
const MCL_ONFAULT: u64 = 4;

/// mlockall: MCL_CURRENT populates every mapping now; MCL_FUTURE is
/// accepted, and later mappings fault in as usual (nothing is reclaimed).
pub fn mlockall(flags: u64) -> SysResult {
    if flags == 0 || flags & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0 || flags == MCL_ONFAULT {
        return Err(Errno::EINVAL);
    }
    if flags & MCL_CURRENT != 0 && flags & MCL_ONFAULT == 0 {
        current_process().mm.populate_all();
    }
    Ok(0)
}

pub fn munlockall() -> SysResult {
    Ok(0)
}

const RLIMIT_AS: usize = 9;

/// Linux's may_expand_vm for RLIMIT_AS: mapping `new` more bytes (of which
/// `replaced` are already mapped) must keep the total within the soft limit.
fn may_expand(new: u64, replaced: u64) -> Result<(), Errno> {
    let process = current_process();
    let limit = process.limits.lock()[RLIMIT_AS][0];
    if limit == u64::MAX {
        return Ok(());
    }
    let total = process.mm.mapped_bytes() - replaced.min(process.mm.mapped_bytes());
    if total.saturating_add(new) > limit {
        return Err(Errno::ENOMEM);
    }
    Ok(())
}
