//! 100,000 values: build, look up all, remove half, look up again; the depth,
//! and the nodes a lookup and a gap search visit (logarithmic, not linear).

use std::vec::Vec;

use super::model::{same_gaps, Model, R};
use crate::node::MIN;
use crate::Tree;

const N: u64 = 100_000;

/// Value `i`: inside `[32i, 32i + 32)`, 8 to 20 bytes long, never touching
/// the next (free gaps of 8 to 28 bytes).
fn layout(i: u64) -> (u64, u64) {
    let s = 32 * i + i % 5;
    (s, s + 8 + i % 13)
}

/// The most levels a valid tree of `n` values can have: `h` levels hold at
/// least `2 * MIN^(h-1)` values.
fn max_depth(n: u64) -> usize {
    let mut h = 1;
    while 2 * (MIN as u64).pow(h as u32) <= n {
        h += 1;
    }
    h
}

fn mix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn shuffled(n: u64, rng: &mut u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    for i in (1..v.len()).rev() {
        v.swap(i, (mix(rng) % (i as u64 + 1)) as usize);
    }
    v
}

/// Looks up every value `i` with `present(i)` at its first, middle and last
/// byte (one node per level), and checks the others and the gaps are empty.
fn look_up_all(t: &Tree<R>, present: impl Fn(u64) -> bool) {
    let depth = t.depth();
    for i in 0..N {
        let (s, e) = layout(i);
        for a in [s, (s + e) / 2, e - 1] {
            let (v, visits) = t.find_visits(a);
            assert_eq!(v.map(|v| v.tag), present(i).then_some(i), "find({a})");
            if v.is_some() {
                assert_eq!(visits, depth, "find({a}) visited {visits} nodes in a tree of {depth} levels");
            }
        }
        assert!(t.find(e).is_none() && s.checked_sub(1).is_none_or(|a| t.find(a).is_none()));
        assert_eq!(t.get(s).is_some(), present(i));
        assert!(t.get(s + 1).is_none());
    }
}

/// Random gap searches against the model, each visiting at most three nodes
/// per level (`same_gaps` checks that).
fn gap_searches(t: &Tree<R>, m: &Model, rng: &mut u64) {
    for _ in 0..300 {
        let low = mix(rng) % (32 * N);
        let high = low + mix(rng) % 20_000;
        let len = 1 + mix(rng) % 70;
        same_gaps(t, m, low, high, len).unwrap();
    }
    for len in [1, 8, 20, 28, 29, 60, 100] {
        same_gaps(t, m, 0, 32 * N, len).unwrap();
    }
}

#[test]
fn hundred_thousand_values() {
    let mut rng = 42;
    let order = shuffled(N, &mut rng);
    let (mut t, mut m) = (Tree::new(), Model::default());
    for &i in &order {
        let (start, end) = layout(i);
        let v = R { start, end, tag: i };
        m.insert(&v);
        t.insert(v);
    }
    t.check_invariants().unwrap();
    assert_eq!(t.len(), N as usize);
    let depth = t.depth();
    std::eprintln!("100,000 values inserted in random order: {depth} levels");
    assert!(depth <= max_depth(N), "{depth} levels, more than the bound {}", max_depth(N));
    look_up_all(&t, |_| true);
    assert!(t.iter().map(|v| v.tag).eq(0..N));
    assert!(t.range(layout(10).1, layout(20).0).map(|v| v.tag).eq(11..20));
    assert_eq!(t.prev(layout(500).0).map(|v| v.tag), Some(499));
    assert_eq!(t.next(layout(500).0 + 1).map(|v| v.tag), Some(501));
    gap_searches(&t, &m, &mut rng);

    // Remove the odd ones, in random order.
    for &i in order.iter().filter(|&&i| i % 2 == 1) {
        let (start, _) = layout(i);
        assert_eq!(t.remove(start).map(|v| v.tag), Some(i));
        m.remove(start);
    }
    t.check_invariants().unwrap();
    assert_eq!(t.len(), N as usize / 2);
    let depth = t.depth();
    std::eprintln!("after removing half: {depth} levels");
    assert!(depth <= max_depth(N / 2));
    look_up_all(&t, |i| i % 2 == 0);
    assert!(t.iter().map(|v| v.tag).eq((0..N).step_by(2)));
    gap_searches(&t, &m, &mut rng);
}

/// Runs of inserts at one end (as mmap places mappings top-down) fill nodes:
/// an overfull node gives an entry to its neighbour before it splits, so
/// the tree is a level shallower than half-full nodes would make it.
#[test]
fn runs_of_inserts_fill_nodes() {
    for descending in [false, true] {
        let mut t = Tree::new();
        for k in 0..N {
            let i = if descending { N - 1 - k } else { k };
            let (start, end) = layout(i);
            t.insert(R { start, end, tag: i });
        }
        t.check_invariants().unwrap();
        // 100,000 / 16 = 6,250 full leaves, 391 parents, 25, 2, a root.
        assert_eq!(t.depth(), 5, "descending: {descending}");
        assert!(max_depth(N) > 5);
    }
}

/// One gap large enough among 100,000 values packed a byte apart: both
/// searches go straight to it, and a search for one byte more visits
/// nothing below the root's summary.
#[test]
fn gap_search_skips_subtrees() {
    const HOLE: u64 = 61_803;
    let start = |i: u64| 17 * i + if i > HOLE { 1000 } else { 0 };
    let mut t = Tree::new();
    for i in 0..N {
        t.insert(R { start: start(i), end: start(i) + 16, tag: i });
    }
    t.check_invariants().unwrap();
    let depth = t.depth();
    let top = start(N - 1);
    let hole = start(HOLE) + 16;
    assert_eq!(start(HOLE + 1) - hole, 1001);

    let (s, visits) = t.gap_top_visits(0, top, 1001);
    assert_eq!(s, Some(hole));
    assert!(visits <= 3 * depth, "top-down visited {visits} nodes");
    let (s, visits) = t.gap_top_visits(0, top, 900);
    assert_eq!(s, Some(hole + 101));
    assert!(visits <= 3 * depth, "top-down visited {visits} nodes");
    let (s, visits) = t.gap_bottom_visits(0, u64::MAX, 1001);
    assert_eq!(s, Some(hole));
    assert!(visits <= 3 * depth, "bottom-up visited {visits} nodes");

    assert_eq!(t.gap_top_visits(0, top, 1002), (None, 0));
    assert_eq!(t.gap_bottom_visits(0, u64::MAX, 1002), (Some(top + 16), 0));
    // The hole is there, but not in the window.
    let (s, visits) = t.gap_top_visits(hole + 1, top, 1001);
    assert_eq!(s, None);
    assert!(visits <= 3 * depth, "a failing search visited {visits} nodes");
    // One-byte gaps everywhere: the highest below a window's top.
    let (s, visits) = t.gap_top_visits(0, start(777), 1);
    assert_eq!(s, Some(start(777) - 1));
    assert!(visits <= 3 * depth);
}
