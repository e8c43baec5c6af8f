//! The text of the memory files in /proc, in Linux's formats: a process's
//! maps, the system-wide fault and lock counters (vmstat) and the memory
//! totals (meminfo). The file system (`crate::fs`) takes a snapshot of one of
//! these when the file is opened; nothing here touches user memory.

use alloc::string::String;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use super::addrspace::{AddressSpace, MmStats, RETIRED_STATS, STACK_TOP};
use super::frame::{self, FRAME_SIZE, USER_RESERVE};
use super::pages;
use super::vma::{Backing, Prot};

/// Where the path column starts (Linux's `seq_setwidth(25 + 6 * 8 - 1)`
/// then `seq_pad`, which adds one space more).
const PATH_COLUMN: usize = 25 + 6 * 8 - 1;

/// `/proc/PID/maps`: one line per VMA, `start-end perms offset dev inode`,
/// then `[heap]` for the VMA over the program break and `[stack]` for the
/// initial stack. Anonymous lines end in a space, as Linux's do. Taken under
/// the `mmap_lock` for reading, so it is one consistent view.
pub fn maps(mm: &AddressSpace) -> String {
    let map = mm.read_lock();
    let (brk_start, brk) = (map.brk_start, map.brk);
    let brk_end = pages::round_up(brk).unwrap_or(brk);
    let mut out = String::new();
    for vma in map.iter() {
        let line_start = out.len();
        let shared = matches!(vma.backing, Backing::Shared { .. });
        let flag = |prot: Prot, c: char| if vma.prot.contains(prot) { c } else { '-' };
        let _ = write!(
            out,
            "{:08x}-{:08x} {}{}{}{} {:08x} 00:00 0 ",
            vma.start,
            vma.end,
            flag(Prot::READ, 'r'),
            flag(Prot::WRITE, 'w'),
            flag(Prot::EXEC, 'x'),
            if shared { 's' } else { 'p' },
            0,
        );
        let name = if brk > brk_start && vma.start < brk_end && vma.end > brk_start {
            Some("[heap]")
        } else if vma.start < STACK_TOP && STACK_TOP <= vma.end {
            Some("[stack]")
        } else {
            None
        };
        if let Some(name) = name {
            let width = out.len() - line_start;
            for _ in width..PATH_COLUMN {
                out.push(' ');
            }
            out.push(' ');
            out.push_str(name);
        }
        out.push('\n');
    }
    out
}

/// The counters of every address space, live (`live`) and gone (summed as
/// each is dropped): system-wide, as Linux's vm events are. Summed when read,
/// so the fault path pays no shared counter.
fn sum(live: &[&AddressSpace], field: impl Fn(&MmStats) -> &AtomicU64) -> u64 {
    let get = |stats: &MmStats| field(stats).load(Ordering::Relaxed);
    live.iter().map(|mm| get(&mm.stats)).sum::<u64>() + get(&RETIRED_STATS)
}

/// `/proc/vmstat`: `name value` lines. `pgfault` and the `vma_lock_*`
/// counters have Linux's names and meanings (the latter are Linux's
/// CONFIG_PER_VMA_LOCK_STATS events); `tlb_shootdowns`, `tlb_ipis`,
/// `tlb_skipped_lazy`, `tlb_lazy_catchups`, `rcu_grace_periods`,
/// `pgtables_allocated` (user page tables, since boot), `pgtables_freed`
/// (by munmap and brk), `pgfault_around` (pages mapped ahead by
/// fault-around, `fault_around.rs`) and the zero pools' `zero_pool_hits`,
/// `zero_pool_misses` and `zero_pool_filled` (`frame::ZeroPoolCounts`) are ours. `live` must hold every address space still
/// alive, each once.
pub fn vmstat(live: &[&AddressSpace]) -> String {
    let tlb = &crate::arch::tlb::STATS;
    let pool = frame::zero_pool_counts();
    let rows: [(&str, u64); 16] = [
        ("pgfault", sum(live, |s| &s.vma_lock_success) + sum(live, |s| &s.mmap_lock_faults)),
        ("vma_lock_success", sum(live, |s| &s.vma_lock_success)),
        ("vma_lock_abort", sum(live, |s| &s.vma_lock_abort_locked) + sum(live, |s| &s.vma_lock_abort_detached)),
        ("vma_lock_retry", sum(live, |s| &s.vma_lock_retries)),
        ("vma_lock_miss", sum(live, |s| &s.vma_lock_misses)),
        ("tlb_shootdowns", tlb.shootdowns.load(Ordering::Relaxed)),
        ("tlb_ipis", tlb.ipis.load(Ordering::Relaxed)),
        ("tlb_skipped_lazy", tlb.skipped_lazy.load(Ordering::Relaxed)),
        ("tlb_lazy_catchups", tlb.lazy_catchups.load(Ordering::Relaxed)),
        ("rcu_grace_periods", crate::sync::rcu::stats().grace_periods),
        ("pgtables_allocated", super::paging::user_tables_allocated() as u64),
        ("pgtables_freed", sum(live, |s| &s.tables_freed)),
        ("pgfault_around", sum(live, |s| &s.fault_around_pages)),
        ("zero_pool_hits", pool.hits),
        ("zero_pool_misses", pool.misses),
        ("zero_pool_filled", pool.filled),
    ];
    let mut out = String::new();
    for (name, value) in rows {
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// `/proc/meminfo`: `MemTotal`, `MemFree` and `MemAvailable` in kB, in
/// Linux's columns (a 16-character label, the number right-aligned in 8).
/// Available is what programs can still get: free frames above the reserve
/// the kernel keeps for itself.
pub fn meminfo() -> String {
    let stats = frame::stats();
    let kb = |frames: usize| frames as u64 * FRAME_SIZE / 1024;
    let mut out = String::new();
    for (label, value) in [
        ("MemTotal:", kb(stats.total)),
        ("MemFree:", kb(stats.free)),
        ("MemAvailable:", kb(stats.free.saturating_sub(USER_RESERVE))),
    ] {
        let _ = writeln!(out, "{label:<16}{value:>8} kB");
    }
    out
}
