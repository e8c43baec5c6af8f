//! The frame bitmap against a model (the set of frames handed out), over
//! random memory maps and random sequences of allocations and frees.

use std::collections::BTreeSet;
use std::ops::Range;

use frames::{words_for, FrameBitmap, FreeError};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc,
    /// `alloc_above_reserve(reserve)`.
    AllocAboveReserve(usize),
    AllocContiguous {
        count: usize,
        align_log2: u32,
    },
    /// Frees the `n % len`-th frame handed out.
    Free(usize),
    /// Frees it again right after (must be refused).
    DoubleFree(usize),
    /// Frees an arbitrary frame number: refused unless it is handed out.
    FreeAny(usize),
}

fn op(frames: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Alloc),
        1 => (0usize..64).prop_map(Op::AllocAboveReserve),
        1 => (1usize..12, 0u32..4).prop_map(|(count, align_log2)| Op::AllocContiguous { count, align_log2 }),
        4 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::DoubleFree),
        1 => (0..frames + 70).prop_map(Op::FreeAny),
    ]
}

/// A memory map: frames in [0, frames), some ranges usable, one reserved.
fn memory() -> impl Strategy<Value = (usize, Vec<Range<usize>>, Range<usize>)> {
    (1usize..400).prop_flat_map(|frames| {
        let range = (0..frames, 0..frames).prop_map(|(a, b)| a.min(b)..a.max(b) + 1);
        (Just(frames), prop::collection::vec(range.clone(), 0..5), range)
    })
}

/// Whether `count` free usable frames start at a multiple of `align`.
fn run_exists(usable: &BTreeSet<usize>, held: &BTreeSet<usize>, frames: usize, count: usize, align: usize) -> bool {
    (0..frames).step_by(align).any(|start| {
        start + count <= frames && (start..start + count).all(|f| usable.contains(&f) && !held.contains(&f))
    })
}

proptest! {

    #[test]
    fn never_hands_out_a_frame_twice_and_counts_match(
        (frames, ranges, reserved) in memory(),
        ops in prop::collection::vec(op(400), 0..200),
    ) {
        let (mut used, mut managed) = (vec![0xa5a5; words_for(frames)], vec![0x5a5a; words_for(frames)]);
        let mut bitmap = FrameBitmap::new(&mut used, &mut managed, frames);
        let mut usable = BTreeSet::new();
        for range in &ranges {
            bitmap.add_usable(range.clone(), &reserved);
            usable.extend(range.clone().filter(|f| !reserved.contains(f)));
        }
        prop_assert_eq!(bitmap.total(), usable.len());
        // Handed out, in order of allocation (frees pick by index).
        let mut held: Vec<usize> = Vec::new();
        let mut held_set = BTreeSet::new();
        let take = |frame: usize, held: &mut Vec<usize>, held_set: &mut BTreeSet<usize>| {
            assert!(usable.contains(&frame), "frame {frame} is not usable RAM");
            assert!(held_set.insert(frame), "frame {frame} handed out twice");
            held.push(frame);
        };
        for op in ops {
            let free_before = usable.len() - held_set.len();
            match op {
                Op::Alloc => match bitmap.alloc() {
                    Some(frame) => take(frame, &mut held, &mut held_set),
                    None => prop_assert_eq!(free_before, 0, "refused with frames free"),
                },
                Op::AllocAboveReserve(reserve) => match bitmap.alloc_above_reserve(reserve) {
                    Some(frame) => {
                        prop_assert!(free_before > reserve, "dipped into the reserve");
                        take(frame, &mut held, &mut held_set)
                    }
                    None => prop_assert!(free_before <= reserve, "refused above the reserve"),
                },
                Op::AllocContiguous { count, align_log2 } => {
                    let align = 1 << align_log2;
                    let exists = run_exists(&usable, &held_set, frames, count, align);
                    match bitmap.alloc_contiguous(count, align) {
                        Some(first) => {
                            prop_assert_eq!(first % align, 0);
                            (first..first + count).for_each(|f| take(f, &mut held, &mut held_set));
                        }
                        None => prop_assert!(!exists, "no run found of {} aligned {} although one exists", count, align),
                    }
                }
                Op::Free(n) | Op::DoubleFree(n) => {
                    if held.is_empty() {
                        continue;
                    }
                    let frame = held.swap_remove(n % held.len());
                    held_set.remove(&frame);
                    prop_assert_eq!(bitmap.free(frame), Ok(()));
                    if matches!(op, Op::DoubleFree(_)) {
                        prop_assert_eq!(bitmap.free(frame), Err(FreeError::NotAllocated(frame)));
                    }
                }
                Op::FreeAny(frame) => {
                    let expected = if !usable.contains(&frame) {
                        Err(FreeError::NotManaged(frame))
                    } else if held_set.contains(&frame) {
                        held.retain(|&f| f != frame);
                        held_set.remove(&frame);
                        Ok(())
                    } else {
                        Err(FreeError::NotAllocated(frame))
                    };
                    prop_assert_eq!(bitmap.free(frame), expected);
                }
            }
            prop_assert_eq!(bitmap.free_count(), usable.len() - held_set.len());
            prop_assert_eq!(bitmap.total(), usable.len());
            for frame in 0..frames + 64 {
                prop_assert_eq!(bitmap.is_allocated(frame), held_set.contains(&frame));
                prop_assert_eq!(bitmap.is_managed(frame), usable.contains(&frame));
            }
        }
        // Everything comes back.
        for frame in held {
            prop_assert_eq!(bitmap.free(frame), Ok(()));
        }
        prop_assert_eq!(bitmap.free_count(), bitmap.total());
    }
}

#[test]
fn exhaustion_then_everything_comes_back() {
    let (mut used, mut managed) = (vec![0; words_for(130)], vec![0; words_for(130)]);
    let mut bitmap = FrameBitmap::new(&mut used, &mut managed, 130);
    bitmap.add_usable(0..130, &(10..20));
    let got: BTreeSet<usize> = std::iter::from_fn(|| bitmap.alloc()).collect();
    assert_eq!(got.len(), 120);
    assert!(got.iter().all(|f| !(10..20).contains(f)));
    assert_eq!(bitmap.free_count(), 0);
    assert_eq!(bitmap.alloc_contiguous(1, 1), None);
    got.iter().for_each(|&f| bitmap.free(f).unwrap());
    assert_eq!(bitmap.free_count(), 120);
    assert_eq!(bitmap.free(15), Err(FreeError::NotManaged(15)));
    assert_eq!(bitmap.free(130), Err(FreeError::NotManaged(130)));
    assert_eq!(format!("{}", FreeError::NotAllocated(0x42)), "double free of frame 0x42");
}
