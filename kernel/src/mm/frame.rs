//! The physical frame allocator.
//!
//! A bitmap over physical memory, built from the boot memory map: a frame is
//! handed out only if the map calls it usable, it lies above 1 MiB (low memory
//! is kept for the SMP trampoline and the BIOS), and it is not the bitmap
//! itself. Kernel image, page tables, boot info and ramdisk are not "usable"
//! in the map, so they are never handed out.
//!
//! Frames are owned values: a `Frame` frees itself when dropped, so a frame
//! can only be leaked on purpose (`Frame::into_raw`, e.g. when a page table
//! takes it over). The frames live in one global bitmap under a spinlock
//! (its bookkeeping is the `frames` crate, property-tested on the host).
//!
//! In front of it each CPU has a cache: a small stack of free frame numbers
//! that single-frame `alloc` and `free` use without touching the global
//! lock, refilled from and drained to the bitmap `CACHE_BATCH` frames at a
//! time under one acquisition. Beside the cache sits the CPU's zero pool:
//! free frames an idle CPU has already zeroed (`fill_zero_pools`), which the
//! fault path takes so that zeroing is off its critical path. Each CPU's
//! cache and pool share one lock (`Level::FrameCache`): frees come from any
//! context (interrupts off, IPI and RCU callbacks), and other CPUs reach in
//! when memory is short.
//!
//! Accounting: `FREE` counts every free frame wherever it sits (bitmap,
//! caches, pools), so cached frames are free in `stats()` and never look
//! leaked. An allocation first takes a *credit* from `FREE` (a compare and
//! swap that fails when too few are free: out of memory, or the user
//! reserve), then finds a frame; since credits never exceed the free frames,
//! one is always somewhere: this CPU's cache or pool, the bitmap, or
//! another CPU's cache or pool (the slow path looks there).

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bootloader_api::info::{MemoryRegion, MemoryRegionKind};
use frames::FrameBitmap;
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::phys_to_virt;
use crate::arch::percpu::{self, MAX_CPUS};
use crate::sync::{Level, SpinLock};

pub const FRAME_SIZE: u64 = 4096;
/// Frames below this address are never handed out.
const LOW_MEMORY_END: u64 = 1 << 20;
/// Frames kept back from user memory for the kernel (16 MiB).
pub const USER_RESERVE: usize = 4096;
/// Freed frames are filled with this in debug builds so use-after-free shows.
pub const POISON_BYTE: u8 = 0x6b;
/// Free frames a CPU's cache holds at most.
pub const CACHE_CAPACITY: usize = 64;
/// Frames moved between a cache and the bitmap per global-lock acquisition.
pub const CACHE_BATCH: usize = 32;
/// Zeroed frames a CPU's pool holds at most (1 MiB).
pub const ZERO_POOL_CAPACITY: usize = 256;
/// Idle CPUs fill zero pools only while the bitmap has more free frames than
/// this, so that the pools never eat into memory the system needs.
const ZERO_POOL_MIN_FREE: usize = SPARE_RESERVE;
/// Frames `Frame::alloc_spare_batch` hands out at most at once.
pub const SPARE_BATCH: usize = 16;
/// Frames that stay free whatever speculative work (zero pools, fault-around)
/// wants: it stops before memory gets this low.
const SPARE_RESERVE: usize = 2 * USER_RESERVE;
/// Frames an idle CPU zeroes before it looks at its other work again.
const ZERO_POOL_FILL_BATCH: usize = 16;
/// A CPU whose pool falls to this many frames wakes an idle CPU to refill it.
const ZERO_POOL_LOW: usize = ZERO_POOL_CAPACITY / 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    OutOfMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames this allocator manages.
    pub total: usize,
    /// Of those, frames free right now (in the bitmap, caches or pools).
    pub free: usize,
}

/// The bookkeeping is the `frames` crate's (host-tested); its words live in
/// physical memory, carved out at boot. A frame in a cache or pool is "used"
/// here: the bitmap sees it as handed out (to the cache).
static FRAMES: SpinLock<Option<FrameBitmap<'static>>> = SpinLock::new(Level::Frames, None);
/// Frames managed (fixed after `init`).
static TOTAL: AtomicUsize = AtomicUsize::new(0);
/// Free frames anywhere (bitmap, caches, pools) minus the credits taken and
/// not yet turned into a frame. Never more than the frames really free.
static FREE: AtomicUsize = AtomicUsize::new(0);
/// Frames allocated since boot and not freed, for leak checks.
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// A fixed-capacity stack of frame numbers.
struct FrameStack<const N: usize> {
    len: usize,
    frames: [u32; N],
}

impl<const N: usize> FrameStack<N> {
    const fn new() -> Self {
        FrameStack { len: 0, frames: [0; N] }
    }

    fn pop(&mut self) -> Option<usize> {
        self.len = self.len.checked_sub(1)?;
        Some(self.frames[self.len] as usize)
    }

    /// Pushes `frame`; the caller checked `is_full`.
    fn push(&mut self, frame: usize) {
        self.frames[self.len] = u32::try_from(frame).expect("frame numbers fit 32 bits (16 TiB)");
        self.len += 1;
    }

    fn is_full(&self) -> bool {
        self.len == N
    }

    fn contains(&self, frame: usize) -> bool {
        self.frames[..self.len].iter().any(|&f| f as usize == frame)
    }
}

/// One CPU's free frames in front of the bitmap.
struct CpuFrames {
    /// Free frames, contents undefined (poisoned in debug builds).
    cache: FrameStack<CACHE_CAPACITY>,
    /// Free frames known to be all zeros.
    zeroed: FrameStack<ZERO_POOL_CAPACITY>,
    /// Statistics: zeroed-frame requests the pool served, and not; frames
    /// idle CPUs zeroed into the pool.
    pool_hits: u64,
    pool_misses: u64,
    pool_filled: u64,
}

/// Indexed by CPU. Code picks its CPU's entry by `cpu_id()` before locking
/// it; a migration in between only means it uses another CPU's entry, which
/// is just as correct (it is locked), only less local.
static CPU_FRAMES: [SpinLock<CpuFrames>; MAX_CPUS] = [const {
    SpinLock::new(
        Level::FrameCache,
        CpuFrames { cache: FrameStack::new(), zeroed: FrameStack::new(), pool_hits: 0, pool_misses: 0, pool_filled: 0 },
    )
}; MAX_CPUS];
/// Whether a wake-up for pool filling is outstanding (one at a time).
static FILL_KICKED: AtomicBool = AtomicBool::new(false);

/// Builds the allocator from the boot memory map.
pub fn init(regions: &[MemoryRegion]) {
    let usable = || {
        regions.iter().filter(|r| r.kind == MemoryRegionKind::Usable).map(|r| {
            let start = r.start.max(LOW_MEMORY_END).next_multiple_of(FRAME_SIZE);
            let end = r.end & !(FRAME_SIZE - 1);
            (start, end.max(start))
        })
    };
    let top = usable().map(|(_, end)| end).max().expect("the memory map has usable memory");
    let frames = (top / FRAME_SIZE) as usize;
    let words = frames::words_for(frames);
    let bitmap_bytes = (2 * words * 8) as u64;

    // The bitmaps live in the first usable range big enough to hold them.
    let (bitmap_start, _) =
        usable().find(|(start, end)| end - start >= bitmap_bytes).expect("a usable range can hold the frame bitmap");
    let bitmap_frames = bitmap_bytes.div_ceil(FRAME_SIZE);

    let base = phys_to_virt(PhysAddr::new(bitmap_start)).as_mut_ptr::<u64>();
    // SAFETY: [bitmap_start, +bitmap_bytes) is usable RAM that nothing else owns
    // (it is excluded from allocation below) and is mapped through the physical
    // map; the two slices do not overlap and live for the rest of the run.
    let (used, managed) = unsafe {
        (core::slice::from_raw_parts_mut(base, words), core::slice::from_raw_parts_mut(base.add(words), words))
    };
    let mut bitmap = FrameBitmap::new(used, managed, frames);
    let reserved = (bitmap_start / FRAME_SIZE) as usize..(bitmap_start / FRAME_SIZE + bitmap_frames) as usize;
    for (start, end) in usable() {
        bitmap.add_usable((start / FRAME_SIZE) as usize..(end / FRAME_SIZE) as usize, &reserved);
    }
    TOTAL.store(bitmap.total(), Ordering::Relaxed);
    FREE.store(bitmap.free_count(), Ordering::Release);
    *FRAMES.lock() = Some(bitmap);
}

fn with_bitmap<R>(f: impl FnOnce(&mut FrameBitmap<'static>) -> R) -> R {
    f(FRAMES.lock().as_mut().expect("frame allocator initialised"))
}

pub fn stats() -> FrameStats {
    FrameStats { total: TOTAL.load(Ordering::Relaxed), free: FREE.load(Ordering::Acquire) }
}

/// Frames handed out and not yet returned.
pub fn allocated() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// Zeroed frames waiting in pools, over all CPUs.
pub fn pooled() -> usize {
    CPU_FRAMES.iter().map(|cpu| cpu.lock().zeroed.len).sum()
}

/// The zero pools' counters since boot, summed over the CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZeroPoolCounts {
    /// Requests for a zeroed frame that the requester's CPU's pool served.
    pub hits: u64,
    /// Those it could not (the requester zeroed a frame itself).
    pub misses: u64,
    /// Frames idle CPUs zeroed into a pool.
    pub filled: u64,
}

pub fn zero_pool_counts() -> ZeroPoolCounts {
    CPU_FRAMES.iter().fold(ZeroPoolCounts::default(), |sum, cpu| {
        let cpu = cpu.lock();
        ZeroPoolCounts {
            hits: sum.hits + cpu.pool_hits,
            misses: sum.misses + cpu.pool_misses,
            filled: sum.filled + cpu.pool_filled,
        }
    })
}

fn frame_at(number: usize) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(number as u64 * FRAME_SIZE))
}

fn frame_bytes(number: usize) -> *mut [u8; FRAME_SIZE as usize] {
    phys_to_virt(PhysAddr::new(number as u64 * FRAME_SIZE)).as_mut_ptr()
}

/// Takes `count` frames' worth of credit from `FREE`, leaving at least
/// `reserve` free; fails (out of memory) otherwise.
fn take_credits(count: usize, reserve: usize) -> Result<(), FrameError> {
    FREE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
        (free >= count.saturating_add(reserve)).then(|| free - count)
    })
    .map(drop)
    .map_err(|_| FrameError::OutOfMemory)
}

/// Where a frame came from: a zero pool's frames are known to be zero.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Any,
    Zeroed,
}

/// Finds a free frame for a caller that holds a credit, preferring a zeroed
/// one if `want_zeroed`. Always succeeds: the credit says a frame is free
/// somewhere.
fn take_frame(want_zeroed: bool) -> (usize, Source) {
    let cpu = &CPU_FRAMES[percpu::cpu_id()];
    {
        let mut here = cpu.lock();
        if want_zeroed {
            if let Some(frame) = here.zeroed.pop() {
                here.pool_hits += 1;
                let low = here.zeroed.len <= ZERO_POOL_LOW;
                drop(here);
                if low {
                    kick_filler();
                }
                return (frame, Source::Zeroed);
            }
        }
        here.pool_misses += u64::from(want_zeroed);
        if let Some(frame) = here.cache.pop() {
            return (frame, Source::Any);
        }
        // Refill: a batch from the bitmap under one acquisition.
        {
            let mut guard = FRAMES.lock();
            let bitmap = guard.as_mut().expect("frame allocator initialised");
            for _ in 0..CACHE_BATCH {
                match bitmap.alloc() {
                    Some(frame) => here.cache.push(frame),
                    None => break,
                }
            }
        }
        if let Some(frame) = here.cache.pop() {
            return (frame, Source::Any);
        }
        if let Some(frame) = here.zeroed.pop() {
            return (frame, Source::Zeroed);
        }
    }
    if want_zeroed {
        kick_filler();
    }
    // The bitmap is empty and so are this CPU's cache and pool: our frame is
    // in another CPU's, or on its way there (a batch moving, a frame being
    // zeroed with interrupts off), so look until it turns up.
    loop {
        for other in &CPU_FRAMES {
            let mut other = other.lock();
            if let Some(frame) = other.cache.pop() {
                return (frame, Source::Any);
            }
            if let Some(frame) = other.zeroed.pop() {
                return (frame, Source::Zeroed);
            }
        }
        if let Some(frame) = with_bitmap(FrameBitmap::alloc) {
            return (frame, Source::Any);
        }
        core::hint::spin_loop();
    }
}

/// Returns a free frame (its contents do not matter) to this CPU's cache,
/// draining a batch to the bitmap when the cache is full.
fn give_back(frame: usize) {
    let mut here = CPU_FRAMES[percpu::cpu_id()].lock();
    give_back_locked(&mut here, frame);
    drop(here);
    // Only now: a credit taken for it must be able to find it.
    FREE.fetch_add(1, Ordering::Release);
}

/// `give_back` of up to `CACHE_BATCH` frames under one lock acquisition
/// and one `FREE` update (a munmap or MADV_DONTNEED of touched pages frees
/// hundreds; `Frame::free_raw_all` hands them over in such batches).
fn give_back_batch(frames: &[usize]) {
    debug_assert!(frames.len() <= CACHE_BATCH, "a batch of {} frames", frames.len());
    let mut here = CPU_FRAMES[percpu::cpu_id()].lock();
    for &frame in frames {
        give_back_locked(&mut here, frame);
    }
    drop(here);
    FREE.fetch_add(frames.len(), Ordering::Release);
}

/// Puts `frame` in the cache `here` (locked), draining a batch to the
/// bitmap first if the cache is full; the caller then credits `FREE`.
fn give_back_locked(here: &mut CpuFrames, frame: usize) {
    if cfg!(debug_assertions) {
        // The bitmap catches frees of frames it never handed out; a double
        // free into a cache is caught here when it is this CPU's (a double
        // free across CPUs shows when the second copy reaches the bitmap).
        with_bitmap(|b| {
            if !b.is_allocated(frame) {
                let bad = if b.is_managed(frame) {
                    frames::FreeError::NotAllocated(frame)
                } else {
                    frames::FreeError::NotManaged(frame)
                };
                panic!("{bad}");
            }
        });
        assert!(
            !here.cache.contains(frame) && !here.zeroed.contains(frame),
            "{}",
            frames::FreeError::NotAllocated(frame)
        );
    }
    if here.cache.is_full() {
        let mut guard = FRAMES.lock();
        let bitmap = guard.as_mut().expect("frame allocator initialised");
        for _ in 0..CACHE_BATCH {
            let old = here.cache.pop().expect("a full cache");
            bitmap.free(old).unwrap_or_else(|bad| panic!("{bad}"));
        }
    }
    here.cache.push(frame);
}

/// Moves every CPU's cached and pooled frames back to the bitmap (for a
/// contiguous allocation that found the bitmap too holey). Returns how many.
fn drain_all() -> usize {
    let mut moved = 0;
    for cpu in &CPU_FRAMES {
        let mut cpu = cpu.lock();
        let mut guard = FRAMES.lock();
        let bitmap = guard.as_mut().expect("frame allocator initialised");
        while let Some(frame) = cpu.cache.pop() {
            bitmap.free(frame).unwrap_or_else(|bad| panic!("{bad}"));
            moved += 1;
        }
        while let Some(frame) = cpu.zeroed.pop() {
            bitmap.free(frame).unwrap_or_else(|bad| panic!("{bad}"));
            moved += 1;
        }
    }
    moved
}

/// Wakes an idle CPU (if any) to refill zero pools.
fn kick_filler() {
    // Switched off, nobody fills: waking an idle CPU would only cost an IPI
    // per call (pools stay empty, so every call finds them "low").
    if !ZERO_POOL_ON.load(Ordering::Relaxed) {
        return;
    }
    // A load first: while a wake-up is outstanding this costs no write.
    if !FILL_KICKED.load(Ordering::Relaxed) && !FILL_KICKED.swap(true, Ordering::AcqRel) {
        FILL_WAKEUPS.fetch_add(1, Ordering::Relaxed);
        crate::task::sched::wake_an_idle_cpu();
    }
}

/// Wake-ups `kick_filler` sent for pool filling, since boot.
static FILL_WAKEUPS: AtomicUsize = AtomicUsize::new(0);

/// Whether idle CPUs fill zero pools (`boot --zero-pool`; off by default:
/// the time it saves a faulting thread is another CPU's, spent whether or
/// not anyone asked, and with every CPU busy it saves nothing; see
/// docs/performance.md).
static ZERO_POOL_ON: AtomicBool = AtomicBool::new(false);

/// Turns the zero pools' filling on or off (frames already pooled stay
/// usable: they are zero and free).
pub fn set_zero_pool(on: bool) {
    ZERO_POOL_ON.store(on, Ordering::Relaxed);
}

/// Whether a CPU asked for its pool to be refilled since the last
/// `fill_zero_pools` began (an idle CPU checks this, interrupts off, before
/// it halts, so that a wake-up that came in while it filled is not lost).
pub fn fill_wanted() -> bool {
    FILL_KICKED.load(Ordering::Acquire)
}

/// Idle-time work: zeroes free frames into the CPUs' zero pools, until
/// `stop()` says there is real work, every online CPU's pool is full, free
/// memory is low, or it has zeroed `ZERO_POOL_FILL_BATCH` frames (so that
/// the idle loop goes round, serving cross-CPU calls and RCU, between
/// batches). Returns whether it zeroed anything.
pub fn fill_zero_pools(mut stop: impl FnMut() -> bool) -> bool {
    FILL_KICKED.store(false, Ordering::Release);
    if !ZERO_POOL_ON.load(Ordering::Relaxed) {
        return false;
    }
    let mut filled = false;
    let mut budget = ZERO_POOL_FILL_BATCH;
    // Other CPUs' pools first: this one is idle, those may be faulting.
    let me = percpu::cpu_id();
    let online = crate::arch::ipi::online();
    for target in online.iter().filter(|&cpu| cpu != me).chain(online.contains(me).then_some(me)) {
        loop {
            // The switch too: `set_zero_pool(false)` stops a batch under way.
            if stop() || budget == 0 || !ZERO_POOL_ON.load(Ordering::Relaxed) {
                return filled;
            }
            budget -= 1;
            if CPU_FRAMES[target].lock().zeroed.is_full() {
                break;
            }
            // Interrupts off from taking the frame to pooling it: nothing on
            // this CPU can wait for it meanwhile (other CPUs that need it,
            // memory being short, look again until it shows up).
            let saved = crate::arch::disable_interrupts();
            let Some(frame) = with_bitmap(|b| if b.free_count() > ZERO_POOL_MIN_FREE { b.alloc() } else { None })
            else {
                crate::arch::restore_interrupts(saved);
                return filled;
            };
            // SAFETY: the frame was free in the bitmap and is now ours alone
            // (counted free but in no structure, so no one else reaches it);
            // the physical map covers it.
            crate::arch::zero_page(unsafe { &mut *frame_bytes(frame) });
            let mut pool = CPU_FRAMES[target].lock();
            if pool.zeroed.is_full() {
                drop(pool);
                with_bitmap(|b| b.free(frame)).unwrap_or_else(|bad| panic!("{bad}"));
            } else {
                pool.zeroed.push(frame);
                pool.pool_filled += 1;
                drop(pool);
                filled = true;
            }
            // Only now that the pool lock is released (its guard restores
            // "interrupts off", the state it found).
            crate::arch::restore_interrupts(saved);
        }
    }
    filled
}

/// Debug builds: checks (a sample of) a zero-pool frame's bytes are zero.
fn debug_check_zero(frame: &mut Frame) {
    if cfg!(debug_assertions) {
        let start = frame.start();
        let bytes = frame.bytes_mut();
        for offset in (0..FRAME_SIZE as usize).step_by(512) {
            debug_assert_eq!(bytes[offset], 0, "a zero-pool frame {start:#x} was written to");
        }
    }
}

/// An owned physical frame: freed (and poisoned in debug builds) on drop.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "dropping a Frame frees it"]
pub struct Frame(PhysFrame);

impl Frame {
    fn take(reserve: usize, want_zeroed: bool) -> Result<(Frame, bool), FrameError> {
        take_credits(1, reserve)?;
        let (number, source) = take_frame(want_zeroed);
        ALLOCATED.fetch_add(1, Ordering::Relaxed);
        let mut frame = Frame(frame_at(number));
        let zeroed = source == Source::Zeroed;
        if zeroed {
            debug_check_zero(&mut frame);
        }
        Ok((frame, zeroed))
    }

    pub fn alloc() -> Result<Frame, FrameError> {
        Self::take(0, false).map(|(frame, _)| frame)
    }

    pub fn alloc_zeroed() -> Result<Frame, FrameError> {
        let (mut frame, zeroed) = Self::take(0, true)?;
        if !zeroed {
            crate::arch::zero_page(frame.bytes_mut());
        }
        Ok(frame)
    }

    /// A frame for something a user program caused (its pages, its page
    /// tables, its threads' kernel stacks): refused while fewer than
    /// `USER_RESERVE` frames are free, so a program that eats all memory is
    /// stopped (ENOMEM, EAGAIN, or killed) before the kernel's own
    /// allocations (the heap) fail.
    pub fn alloc_for_user() -> Result<Frame, FrameError> {
        Self::take(USER_RESERVE, false).map(|(frame, _)| frame)
    }

    /// `alloc_for_user`, taken from this CPU's zero pool if it has one; the
    /// flag says whether it is known to be zero (else the caller zeroes it).
    pub fn alloc_for_user_maybe_zeroed() -> Result<(Frame, bool), FrameError> {
        Self::take(USER_RESERVE, true)
    }

    /// Up to `want` (at most `SPARE_BATCH`) frames for pages nobody asked
    /// for yet (fault-around), each handed to `put` with whether it is known
    /// to be zero: this CPU's pool first, then its cache, then batches from
    /// the bitmap, all under one acquisition of this CPU's lock and one
    /// credit update. None while memory is not plentiful (fewer than
    /// `want` plus twice `USER_RESERVE` frames free), so that mapping ahead
    /// never takes memory a program's own faults need; fewer than `want`
    /// when this CPU's cache and the bitmap run dry (other CPUs' caches are
    /// not searched; the unused credits go back). `put` runs after the lock
    /// is released, so it may zero the frame, or drop it.
    pub fn alloc_spare_batch(want: usize, mut put: impl FnMut(Frame, bool)) {
        let want = want.min(SPARE_BATCH);
        if want == 0 || take_credits(want, SPARE_RESERVE).is_err() {
            return;
        }
        let mut taken = [(0usize, false); SPARE_BATCH];
        let mut count = 0;
        let low = {
            let mut here = CPU_FRAMES[percpu::cpu_id()].lock();
            while count < want {
                if let Some(frame) = here.zeroed.pop() {
                    here.pool_hits += 1;
                    taken[count] = (frame, true);
                } else if let Some(frame) = here.cache.pop() {
                    here.pool_misses += 1;
                    taken[count] = (frame, false);
                } else {
                    // The cache is empty: a batch from the bitmap, if it has any.
                    let mut guard = FRAMES.lock();
                    let bitmap = guard.as_mut().expect("frame allocator initialised");
                    let mut refilled = false;
                    while let Some(frame) = (here.cache.len < CACHE_BATCH).then(|| bitmap.alloc()).flatten() {
                        here.cache.push(frame);
                        refilled = true;
                    }
                    if !refilled {
                        break;
                    }
                    continue;
                }
                count += 1;
            }
            here.zeroed.len <= ZERO_POOL_LOW
        };
        if low {
            kick_filler();
        }
        if count < want {
            FREE.fetch_add(want - count, Ordering::Release);
        }
        ALLOCATED.fetch_add(count, Ordering::Relaxed);
        for &(number, zeroed) in &taken[..count] {
            let mut frame = Frame(frame_at(number));
            if zeroed {
                debug_check_zero(&mut frame);
            }
            put(frame, zeroed);
        }
    }

    /// `alloc_for_user`, zeroed.
    pub fn alloc_zeroed_for_user() -> Result<Frame, FrameError> {
        let (mut frame, zeroed) = Self::take(USER_RESERVE, true)?;
        if !zeroed {
            crate::arch::zero_page(frame.bytes_mut());
        }
        Ok(frame)
    }

    pub fn phys(&self) -> PhysFrame {
        self.0
    }

    pub fn start(&self) -> PhysAddr {
        self.0.start_address()
    }

    /// The frame's contents, through the physical map.
    pub fn bytes_mut(&mut self) -> &mut [u8; FRAME_SIZE as usize] {
        // SAFETY: a `Frame` is the only owner of its memory (it was allocated
        // to it and is not mapped elsewhere until `into_raw`), the physical map
        // covers all RAM, and the borrow of `self` bounds the reference.
        unsafe { &mut *phys_to_virt(self.start()).as_mut_ptr() }
    }

    /// Gives up ownership without freeing: the caller (a page table) keeps the frame.
    pub fn into_raw(self) -> PhysFrame {
        let frame = self.0;
        core::mem::forget(self);
        frame
    }

    /// Frees frames that `into_raw` gave away, all at once (cheaper than
    /// `from_raw` and a drop for each).
    ///
    /// # Safety
    /// As `from_raw`, for each frame: it came from `Frame::into_raw` (or a
    /// `FrameRun`), no one else owns it, and it appears once in `frames`.
    pub unsafe fn free_raw_all(frames: &[PhysFrame]) {
        if frames.is_empty() {
            return;
        }
        let mut numbers = [0usize; CACHE_BATCH];
        for chunk in frames.chunks(CACHE_BATCH) {
            for (number, frame) in numbers.iter_mut().zip(chunk) {
                if cfg!(debug_assertions) {
                    // SAFETY: ours now (the contract), through the physical map.
                    unsafe { &mut *frame_bytes((frame.start_address().as_u64() / FRAME_SIZE) as usize) }
                        .fill(POISON_BYTE);
                }
                *number = (frame.start_address().as_u64() / FRAME_SIZE) as usize;
            }
            ALLOCATED.fetch_sub(chunk.len(), Ordering::Relaxed);
            give_back_batch(&numbers[..chunk.len()]);
        }
    }

    /// Takes ownership of a frame that `into_raw` gave away.
    ///
    /// # Safety
    /// `frame` came from `Frame::into_raw` (or a `FrameRun`) and no one else
    /// owns it now: no mapping or other `Frame` will use it again.
    pub unsafe fn from_raw(frame: PhysFrame) -> Frame {
        Frame(frame)
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if cfg!(debug_assertions) {
            self.bytes_mut().fill(POISON_BYTE);
        }
        ALLOCATED.fetch_sub(1, Ordering::Relaxed);
        give_back((self.start().as_u64() / FRAME_SIZE) as usize);
    }
}

/// `count` physically contiguous frames, freed together on drop.
#[derive(Debug)]
#[must_use = "dropping a FrameRun frees it"]
pub struct FrameRun {
    first: usize,
    count: usize,
}

impl FrameRun {
    /// `count` contiguous frames whose first frame number is a multiple of `align`.
    pub fn alloc(count: usize, align: usize) -> Result<FrameRun, FrameError> {
        take_credits(count, 0)?;
        // Frames in caches and pools are holes in the bitmap: on failure put
        // them all back and look once more.
        let first = with_bitmap(|b| b.alloc_contiguous(count, align))
            .or_else(|| (drain_all() > 0).then(|| with_bitmap(|b| b.alloc_contiguous(count, align))).flatten());
        let Some(first) = first else {
            FREE.fetch_add(count, Ordering::Release);
            return Err(FrameError::OutOfMemory);
        };
        ALLOCATED.fetch_add(count, Ordering::Relaxed);
        Ok(FrameRun { first, count })
    }

    pub fn start(&self) -> PhysAddr {
        frame_at(self.first).start_address()
    }

    pub fn count(&self) -> usize {
        self.count
    }
}

impl Drop for FrameRun {
    fn drop(&mut self) {
        with_bitmap(|b| (self.first..self.first + self.count).try_for_each(|f| b.free(f)))
            .unwrap_or_else(|bad| panic!("{bad}"));
        ALLOCATED.fetch_sub(self.count, Ordering::Relaxed);
        FREE.fetch_add(self.count, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;

    #[test_case]
    fn alloc_then_free_restores_the_count() {
        let before = stats();
        let frame = Frame::alloc().expect("a free frame");
        assert_eq!(stats().free, before.free - 1);
        assert!(frame.start().as_u64() >= LOW_MEMORY_END, "low memory is never handed out");
        drop(frame);
        assert_eq!(stats(), before);
    }

    #[test_case]
    fn no_frame_is_handed_out_twice() {
        let frames: Vec<Frame> = (0..2000).map(|_| Frame::alloc().unwrap()).collect();
        let distinct: BTreeSet<u64> = frames.iter().map(|f| f.start().as_u64()).collect();
        assert_eq!(distinct.len(), frames.len());
    }

    #[test_case]
    fn zeroed_frame_is_zero_and_freed_frame_is_poisoned() {
        // zero_page clears every byte (a dirty frame first, so it has work).
        let mut dirty = Frame::alloc().unwrap();
        dirty.bytes_mut().fill(0x5a);
        crate::arch::zero_page(dirty.bytes_mut());
        assert!(dirty.bytes_mut().iter().all(|&b| b == 0), "zero_page left bytes set");
        drop(dirty);
        let mut frame = Frame::alloc_zeroed().unwrap();
        assert!(frame.bytes_mut().iter().all(|&b| b == 0));
        frame.bytes_mut()[0] = 0x42;
        let phys = frame.start();
        drop(frame);
        // SAFETY: reading a freed frame through the physical map, which still maps it;
        // no one else can have allocated it in this single-threaded test.
        let first = unsafe { *phys_to_virt(phys).as_ptr::<u8>() };
        assert_eq!(first, if cfg!(debug_assertions) { POISON_BYTE } else { 0x42 });
    }

    #[test_case]
    fn exhaustion_returns_an_error_and_everything_comes_back() {
        // The vector first: making room for it may grow the heap (by frames).
        let mut frames = Vec::with_capacity(stats().free + 16);
        let before = stats();
        loop {
            match Frame::alloc() {
                Ok(frame) => frames.push(frame),
                Err(err) => {
                    assert_eq!(err, FrameError::OutOfMemory);
                    break;
                }
            }
        }
        assert_eq!(frames.len(), before.free);
        assert_eq!(stats().free, 0);
        assert_eq!(FrameRun::alloc(1, 1).unwrap_err(), FrameError::OutOfMemory);
        drop(frames);
        assert_eq!(stats(), before);
    }

    #[test_case]
    fn contiguous_runs_are_aligned_and_disjoint() {
        let before = stats();
        let a = FrameRun::alloc(16, 16).unwrap();
        let b = FrameRun::alloc(3, 1).unwrap();
        assert_eq!(a.start().as_u64() % (16 * FRAME_SIZE), 0);
        let a_range = a.start().as_u64()..a.start().as_u64() + 16 * FRAME_SIZE;
        assert!(!a_range.contains(&b.start().as_u64()));
        assert_eq!(stats().free, before.free - 19);
        drop((a, b));
        assert_eq!(stats(), before);
    }

    #[test_case]
    fn frames_the_memory_map_reserves_are_never_managed() {
        let regions = crate::mm::boot_memory_regions();
        let frames: Vec<Frame> = (0..500).map(|_| Frame::alloc().unwrap()).collect();
        for frame in &frames {
            let addr = frame.start().as_u64();
            let region = regions.iter().find(|r| r.start <= addr && addr < r.end);
            assert_eq!(region.map(|r| r.kind), Some(MemoryRegionKind::Usable), "frame {addr:#x}");
        }
    }

    /// The other online CPUs (empty on one CPU).
    fn other_cpus() -> crate::arch::ipi::CpuSet {
        let mut others = crate::arch::ipi::online();
        others.remove(percpu::cpu_id());
        others
    }

    /// Frees `frames` on every other CPU (in the call IPI, interrupts off),
    /// an equal share each; on one CPU, here.
    fn free_on_other_cpus(frames: Vec<Frame>) {
        let others = other_cpus();
        if others.is_empty() {
            drop(frames);
            return;
        }
        let share = frames.len().div_ceil(others.len());
        let queue = SpinLock::new(Level::TestState, frames);
        crate::arch::ipi::call_on(others, &|| {
            let mine: Vec<Frame> = {
                let mut queue = queue.lock();
                let keep = queue.len().saturating_sub(share);
                queue.split_off(keep)
            };
            drop(mine);
        });
        assert!(queue.lock().is_empty(), "every frame was freed");
    }

    #[test_case]
    fn counts_stay_exact_through_the_caches() {
        // More frames than a cache holds: refills and drains both happen.
        let mut frames = Vec::with_capacity(3 * CACHE_CAPACITY);
        let (before, allocated_before) = (stats(), allocated());
        for n in 1..=3 * CACHE_CAPACITY {
            frames.push(Frame::alloc().unwrap());
            assert_eq!(stats().free, before.free - n, "a cached frame is still free, a handed-out one is not");
        }
        assert_eq!(allocated(), allocated_before + 3 * CACHE_CAPACITY);
        frames.truncate(CACHE_CAPACITY / 2);
        assert_eq!(stats().free, before.free - CACHE_CAPACITY / 2);
        drop(frames);
        assert_eq!((stats(), allocated()), (before, allocated_before));
    }

    #[test_case]
    fn frames_freed_on_other_cpus_are_counted_and_reused() {
        let mut frames = Vec::with_capacity(2 * CACHE_CAPACITY);
        let (before, allocated_before) = (stats(), allocated());
        frames.extend((0..2 * CACHE_CAPACITY).map(|_| Frame::alloc().unwrap()));
        free_on_other_cpus(frames);
        assert_eq!((stats(), allocated()), (before, allocated_before), "frames in other CPUs' caches are free");
        // They are not handed out twice either: a fresh batch is distinct.
        let again: Vec<Frame> = (0..4 * CACHE_CAPACITY).map(|_| Frame::alloc().unwrap()).collect();
        let distinct: BTreeSet<u64> = again.iter().map(|f| f.start().as_u64()).collect();
        assert_eq!(distinct.len(), again.len());
        drop(again);
        assert_eq!(stats(), before);
    }

    #[test_case]
    fn exhaustion_finds_the_frames_other_cpus_cache() {
        // Park frames in the other CPUs' caches, then take everything from here:
        // exactly `free` frames come out (the cached ones too), then errors.
        let parked: Vec<Frame> = (0..CACHE_CAPACITY).map(|_| Frame::alloc().unwrap()).collect();
        free_on_other_cpus(parked);
        let mut frames = Vec::with_capacity(stats().free + 16);
        let before = stats();
        while let Ok(frame) = Frame::alloc() {
            frames.push(frame);
        }
        assert_eq!(frames.len(), before.free);
        assert_eq!(stats().free, 0);
        assert_eq!(Frame::alloc_for_user().unwrap_err(), FrameError::OutOfMemory);
        // Give some back on the other CPUs: a contiguous run must still be
        // found (the caches are drained into the bitmap for it).
        let back = frames.split_off(frames.len() - 4 * CACHE_CAPACITY);
        free_on_other_cpus(back);
        assert_eq!(stats().free, 4 * CACHE_CAPACITY);
        drop(FrameRun::alloc(1, 1).expect("a run out of frames cached elsewhere"));
        drop(frames);
        assert_eq!(stats(), before);
    }

    #[test_case]
    fn the_user_reserve_holds_with_frames_cached() {
        let mut frames = Vec::with_capacity(stats().free + 16);
        let before = stats();
        while let Ok(frame) = Frame::alloc_for_user() {
            frames.push(frame);
        }
        assert_eq!(stats().free, USER_RESERVE, "user allocations stop at the reserve");
        let kernel = Frame::alloc().expect("the kernel still gets frames");
        drop(kernel);
        drop(frames);
        assert_eq!(stats(), before);
    }

    #[test_case]
    fn spare_batches_are_counted_truthful_about_zeros_and_stop_before_memory_is_short() {
        let (before, allocated_before) = (stats(), allocated());
        let mut got: Vec<(Frame, bool)> = Vec::new();
        Frame::alloc_spare_batch(10, |frame, zeroed| got.push((frame, zeroed)));
        assert_eq!(got.len(), 10, "memory is plentiful");
        assert_eq!((stats().free, allocated()), (before.free - 10, allocated_before + 10));
        for (frame, zeroed) in &mut got {
            if *zeroed {
                assert!(frame.bytes_mut().iter().all(|&b| b == 0), "a frame said to be zero is not");
            }
        }
        Frame::alloc_spare_batch(100, |frame, zeroed| got.push((frame, zeroed)));
        assert_eq!(got.len(), 10 + SPARE_BATCH, "at most a batch at once");
        Frame::alloc_spare_batch(0, |frame, zeroed| got.push((frame, zeroed)));
        assert_eq!(got.len(), 10 + SPARE_BATCH);
        drop(got);
        assert_eq!((stats(), allocated()), (before, allocated_before));

        // Memory no longer plentiful: nothing, and no credit kept.
        let mut held = Vec::with_capacity(stats().free);
        while stats().free > SPARE_RESERVE + 4 {
            held.push(Frame::alloc_for_user().expect("above the user reserve"));
        }
        let free = stats().free;
        let mut none = 0;
        Frame::alloc_spare_batch(5, |_, _| none += 1);
        assert_eq!((none, stats().free), (0, free), "a spare batch dug into the reserve");
        drop(held);
        assert_eq!((stats(), allocated()), (before, allocated_before));
    }

    #[test_case]
    fn frames_freed_all_at_once_are_counted_poisoned_and_reused() {
        let (before, allocated_before) = (stats(), allocated());
        // More than a cache holds, and not a multiple of the batch.
        let raw: Vec<PhysFrame> = (0..3 * CACHE_CAPACITY + 5)
            .map(|_| {
                let mut frame = Frame::alloc().unwrap();
                frame.bytes_mut().fill(0x11);
                frame.into_raw()
            })
            .collect();
        assert_eq!(allocated(), allocated_before + raw.len());
        // SAFETY: every frame came from `into_raw` just now, once each.
        unsafe { Frame::free_raw_all(&raw) };
        assert_eq!((stats(), allocated()), (before, allocated_before), "all freed and counted");
        // SAFETY: a free frame, read through the physical map; nobody writes it now.
        let first = unsafe { (*frame_bytes((raw[0].start_address().as_u64() / FRAME_SIZE) as usize))[0] };
        assert_eq!(first, if cfg!(debug_assertions) { POISON_BYTE } else { 0x11 });
        // They are allocatable again, every one.
        let again: Vec<Frame> = (0..raw.len()).map(|_| Frame::alloc().unwrap()).collect();
        drop(again);
        assert_eq!((stats(), allocated()), (before, allocated_before));
    }

    #[test_case]
    fn with_the_zero_pool_switched_off_idle_cpus_zero_nothing() {
        set_zero_pool(false);
        // A filler already past the switch finishes its frame: let it.
        crate::task::timer::sleep_ns(10_000_000);
        // Room in this CPU's pool, made while nobody refills it (taken with
        // the switch on, other CPUs' idle loops could fill it straight back).
        let taken: Vec<Frame> = (0..ZERO_POOL_CAPACITY).map(|_| Frame::alloc_zeroed().unwrap()).collect();
        let pooled_before = pooled();
        let filled = fill_zero_pools(|| false);
        // Other CPUs' idle loops call it too; none may add a frame either.
        crate::task::timer::sleep_ns(10_000_000);
        let pooled_after = pooled();
        set_zero_pool(true);
        assert!(!filled, "it zeroed frames while switched off");
        assert!(pooled_after <= pooled_before, "pools grew from {pooled_before} to {pooled_after} while off");
        // On again, the pools fill: by this call, or by an idle CPU that
        // got there first (then this call finds nothing to do).
        let deadline = crate::arch::time::now_ns() + 1_000_000_000;
        let mut refilled = false;
        while !refilled && crate::arch::time::now_ns() < deadline {
            refilled = fill_zero_pools(|| false) || pooled() > pooled_after;
        }
        assert!(refilled, "on again, the pools fill");
        drop(taken);
    }

    #[test_case]
    fn with_the_zero_pool_switched_off_faults_wake_no_idle_cpu() {
        set_zero_pool(false);
        crate::task::timer::sleep_ns(10_000_000);
        // Empty this CPU's pool, as it is when the pool was never on.
        let mut held = Vec::new();
        while CPU_FRAMES[percpu::cpu_id()].lock().zeroed.len > 0 {
            held.push(Frame::alloc_zeroed().unwrap());
        }
        let wakeups = FILL_WAKEUPS.load(Ordering::Relaxed);
        for _ in 0..10 {
            // What a fault and a fault-around window take; idle CPUs that a
            // kick woke clear the kick before the next round.
            held.push(Frame::alloc_for_user_maybe_zeroed().unwrap().0);
            Frame::alloc_spare_batch(SPARE_BATCH, |frame, _| held.push(frame));
            crate::task::timer::sleep_ns(1_000_000);
        }
        let woken = FILL_WAKEUPS.load(Ordering::Relaxed) - wakeups;
        set_zero_pool(true);
        assert_eq!(woken, 0, "faults woke an idle CPU {woken} times to fill switched-off pools");
        drop(held);
    }

    #[test_case]
    fn zero_pool_frames_are_zero_and_count_as_free() {
        let (before, allocated_before) = (stats(), allocated());
        // Dirty frames first, so that a pool frame zeroed from them shows.
        let dirty: Vec<Frame> = (0..2 * CACHE_CAPACITY)
            .map(|_| {
                let mut frame = Frame::alloc().unwrap();
                frame.bytes_mut().fill(0x5a);
                frame
            })
            .collect();
        drop(dirty);
        // Batch after batch until every pool is full.
        while fill_zero_pools(|| false) {}
        assert!(pooled() >= ZERO_POOL_CAPACITY, "the pools were filled");
        assert_eq!((stats(), allocated()), (before, allocated_before), "pooled frames are free");
        let mut taken = Vec::new();
        for _ in 0..ZERO_POOL_CAPACITY / 2 {
            let (mut frame, zeroed) = Frame::alloc_for_user_maybe_zeroed().unwrap();
            if zeroed {
                assert!(frame.bytes_mut().iter().all(|&b| b == 0), "a pool frame is all zeros");
            }
            taken.push((frame, zeroed));
        }
        assert!(taken.iter().any(|(_, zeroed)| *zeroed), "the pool handed out frames");
        drop(taken);
        assert_eq!((stats(), allocated()), (before, allocated_before));
        // A run drains the pools back when it needs their frames.
        let run = FrameRun::alloc(64, 64).unwrap();
        drop(run);
        assert_eq!(stats(), before);
    }
}
