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
//! takes it over). Single frames come from one global bitmap under a spinlock
//! (its bookkeeping is the `frames` crate, property-tested on the host);
//! a per-CPU cache can sit in front of `alloc`/`free` without changing callers.

use core::sync::atomic::{AtomicUsize, Ordering};

use bootloader_api::info::{MemoryRegion, MemoryRegionKind};
use frames::FrameBitmap;
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::phys_to_virt;
use crate::sync::{Level, SpinLock};

pub const FRAME_SIZE: u64 = 4096;
/// Frames below this address are never handed out.
const LOW_MEMORY_END: u64 = 1 << 20;
/// Frames kept back from user memory for the kernel (16 MiB).
pub const USER_RESERVE: usize = 4096;
/// Freed frames are filled with this in debug builds so use-after-free shows.
pub const POISON_BYTE: u8 = 0x6b;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    OutOfMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames this allocator manages.
    pub total: usize,
    /// Of those, frames free right now.
    pub free: usize,
}

/// The bookkeeping is the `frames` crate's (host-tested); its words live in
/// physical memory, carved out at boot.
static FRAMES: SpinLock<Option<FrameBitmap<'static>>> = SpinLock::new(Level::Frames, None);
/// Frames allocated since boot and not freed, for leak checks.
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

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
    *FRAMES.lock() = Some(bitmap);
}

fn with_bitmap<R>(f: impl FnOnce(&mut FrameBitmap<'static>) -> R) -> R {
    f(FRAMES.lock().as_mut().expect("frame allocator initialised"))
}

pub fn stats() -> FrameStats {
    with_bitmap(|b| FrameStats { total: b.total(), free: b.free_count() })
}

/// Frames handed out and not yet returned.
pub fn allocated() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

fn frame_at(number: usize) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(number as u64 * FRAME_SIZE))
}

/// An owned physical frame: freed (and poisoned in debug builds) on drop.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "dropping a Frame frees it"]
pub struct Frame(PhysFrame);

impl Frame {
    pub fn alloc() -> Result<Frame, FrameError> {
        let number = with_bitmap(FrameBitmap::alloc).ok_or(FrameError::OutOfMemory)?;
        ALLOCATED.fetch_add(1, Ordering::Relaxed);
        Ok(Frame(frame_at(number)))
    }

    pub fn alloc_zeroed() -> Result<Frame, FrameError> {
        let mut frame = Self::alloc()?;
        crate::arch::zero_page(frame.bytes_mut());
        Ok(frame)
    }

    /// A frame for something a user program caused (its pages, its page
    /// tables, its threads' kernel stacks): refused while fewer than
    /// `USER_RESERVE` frames are free, so a program that eats all memory is
    /// stopped (ENOMEM, EAGAIN, or killed) before the kernel's own
    /// allocations (the heap) fail.
    pub fn alloc_for_user() -> Result<Frame, FrameError> {
        let number = with_bitmap(|b| b.alloc_above_reserve(USER_RESERVE)).ok_or(FrameError::OutOfMemory)?;
        ALLOCATED.fetch_add(1, Ordering::Relaxed);
        Ok(Frame(frame_at(number)))
    }

    /// `alloc_for_user`, zeroed.
    pub fn alloc_zeroed_for_user() -> Result<Frame, FrameError> {
        let mut frame = Self::alloc_for_user()?;
        crate::arch::zero_page(frame.bytes_mut());
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
        let number = (self.start().as_u64() / FRAME_SIZE) as usize;
        with_bitmap(|b| b.free(number)).unwrap_or_else(|bad| panic!("{bad}"));
        ALLOCATED.fetch_sub(1, Ordering::Relaxed);
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
        let first = with_bitmap(|b| b.alloc_contiguous(count, align)).ok_or(FrameError::OutOfMemory)?;
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
}
