//! The frame allocator's bookkeeping, without the hardware: which frames
//! exist (are usable RAM), which are handed out, how many are free, and the
//! searches. The kernel (`kernel/src/mm/frame.rs`) keeps one [`FrameBitmap`]
//! under its spinlock, over words it carves out of physical memory at boot;
//! the host tests (`tests/`, `make host-test`) run the same code over
//! vectors against a model.
//!
//! Frames are numbers (physical address / 4 KiB). The storage is the only
//! thing the two users do differently, so it is the only parameter: two
//! borrowed word slices, one bit per frame. Nothing here allocates or
//! locks: the fault path's allocation costs what it did before the move.
#![no_std]

use core::fmt;
use core::ops::Range;

/// A bad free: the caller's bug (the kernel panics with this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The frame is not usable RAM this allocator manages.
    NotManaged(usize),
    /// The frame is managed but not handed out (a double free).
    NotAllocated(usize),
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FreeError::NotManaged(frame) => write!(f, "freeing frame {frame:#x} that the allocator does not manage"),
            FreeError::NotAllocated(frame) => write!(f, "double free of frame {frame:#x}"),
        }
    }
}

/// Words needed for a bitmap of `frames` frames.
pub const fn words_for(frames: usize) -> usize {
    frames.div_ceil(64)
}

pub struct FrameBitmap<'a> {
    /// Bit set: the frame is not available (in use, or never usable).
    used: &'a mut [u64],
    /// Bit set: the frame is managed here (usable RAM). Catches bad frees.
    managed: &'a mut [u64],
    /// Frames covered by the bitmaps, from frame 0.
    frames: usize,
    total: usize,
    free: usize,
    /// Word index where the next search starts (frees below it move it back).
    hint: usize,
}

impl fmt::Debug for FrameBitmap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameBitmap")
            .field("frames", &self.frames)
            .field("total", &self.total)
            .field("free", &self.free)
            .finish()
    }
}

impl<'a> FrameBitmap<'a> {
    /// A bitmap of `frames` frames, none of them usable yet. Each slice
    /// holds at least `words_for(frames)` words (their contents are reset).
    pub fn new(used: &'a mut [u64], managed: &'a mut [u64], frames: usize) -> FrameBitmap<'a> {
        let words = words_for(frames);
        assert!(used.len() >= words && managed.len() >= words, "bitmap words for {frames} frames");
        let (used, managed) = (&mut used[..words], &mut managed[..words]);
        used.fill(u64::MAX);
        managed.fill(0);
        FrameBitmap { used, managed, frames, total: 0, free: 0, hint: 0 }
    }

    /// Adds the frames of `range` (usable RAM) as free, except those in
    /// `reserved` (e.g. the bitmap's own frames) and those already added.
    pub fn add_usable(&mut self, range: Range<usize>, reserved: &Range<usize>) {
        for frame in range.start..range.end.min(self.frames) {
            if !reserved.contains(&frame) && !self.is_managed(frame) {
                self.managed[frame / 64] |= 1 << (frame % 64);
                self.set_used(frame, false);
                self.total += 1;
                self.free += 1;
            }
        }
    }

    /// Frames this allocator manages.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Of those, frames free right now.
    pub fn free_count(&self) -> usize {
        self.free
    }

    fn is_used(&self, frame: usize) -> bool {
        self.used[frame / 64] & (1 << (frame % 64)) != 0
    }

    fn set_used(&mut self, frame: usize, used: bool) {
        if used {
            self.used[frame / 64] |= 1 << (frame % 64);
        } else {
            self.used[frame / 64] &= !(1 << (frame % 64));
        }
    }

    /// Whether `frame` is usable RAM managed here.
    pub fn is_managed(&self, frame: usize) -> bool {
        frame < self.frames && self.managed[frame / 64] & (1 << (frame % 64)) != 0
    }

    /// Whether `frame` is managed and handed out.
    pub fn is_allocated(&self, frame: usize) -> bool {
        self.is_managed(frame) && self.is_used(frame)
    }

    /// One free frame (next-fit from the hint), or None if none is left.
    #[inline]
    pub fn alloc(&mut self) -> Option<usize> {
        let words = self.used.len();
        for step in 0..words {
            let index = (self.hint + step) % words;
            let word = self.used[index];
            if word != u64::MAX {
                let frame = index * 64 + (!word).trailing_zeros() as usize;
                self.set_used(frame, true);
                self.free -= 1;
                self.hint = index;
                return Some(frame);
            }
        }
        None
    }

    /// One free frame, but only while more than `reserve` are free (the
    /// kernel's `alloc_for_user`).
    #[inline]
    pub fn alloc_above_reserve(&mut self, reserve: usize) -> Option<usize> {
        if self.free > reserve {
            self.alloc()
        } else {
            None
        }
    }

    /// First-fit search for `count` free frames starting at a multiple of
    /// `align` (a power of two); returns the first.
    pub fn alloc_contiguous(&mut self, count: usize, align: usize) -> Option<usize> {
        assert!(count > 0 && align.is_power_of_two());
        let mut start = 0;
        while start + count <= self.frames {
            match (start..start + count).rev().find(|&f| self.is_used(f)) {
                None => {
                    (start..start + count).for_each(|f| self.set_used(f, true));
                    self.free -= count;
                    return Some(start);
                }
                // Skip past the used frame, keeping the alignment.
                Some(used) => start = (used + 1).next_multiple_of(align),
            }
        }
        None
    }

    /// Returns `frame`; refuses (changing nothing) a frame not managed here
    /// or not handed out.
    #[inline]
    pub fn free(&mut self, frame: usize) -> Result<(), FreeError> {
        if !self.is_managed(frame) {
            return Err(FreeError::NotManaged(frame));
        }
        if !self.is_used(frame) {
            return Err(FreeError::NotAllocated(frame));
        }
        self.set_used(frame, false);
        self.free += 1;
        self.hint = self.hint.min(frame / 64);
        Ok(())
    }
}
