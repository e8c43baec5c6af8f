//! Published versions: they never change, they share nodes with the writer's
//! tree until the writer changes them, and what they hold is freed with the
//! last version that holds it. Plus the small cases: empty trees, edges of
//! the address space, the debug checks.

use std::sync::{Arc, Weak};
use std::vec::Vec;

use super::model::{same_tree, Model, R};
use crate::{Span, Tree, ORDER};

fn tree_of(vals: impl IntoIterator<Item = (u64, u64)>) -> (Tree<R>, Model) {
    let (mut t, mut m) = (Tree::new(), Model::default());
    for (tag, (start, end)) in vals.into_iter().enumerate() {
        let v = R { start, end, tag: tag as u64 };
        t.insert(v.clone());
        m.insert(&v);
    }
    (t, m)
}

/// A version published before thousands of changes answers as before them.
#[test]
fn published_version_never_changes() {
    let (mut t, mut m) = tree_of((0..3000).map(|i| (i * 100, i * 100 + 50)));
    let published = t.clone();
    let at_publish = m.clone();
    for i in 0..3000u64 {
        match i % 3 {
            0 => assert_eq!(t.remove(i * 100), m.remove(i * 100)),
            1 => {
                let v = R { start: i * 100, end: i * 100 + 90, tag: 10_000 + i };
                m.remove(i * 100);
                m.insert(&v);
                assert!(t.replace(v).is_some());
            }
            _ => {
                let v = R { start: i * 100 + 60, end: i * 100 + 70, tag: 20_000 + i };
                m.insert(&v);
                t.insert(v);
            }
        }
    }
    same_tree(&t, &m, 200).unwrap();
    same_tree(&published, &at_publish, 200).unwrap();
    // The published version really is the old one, not a copy of the model.
    assert_eq!(published.get(100).map(|v| v.end), Some(150));
    assert_eq!(t.get(100).map(|v| v.end), Some(190));
    assert!(published.get(0).is_some() && t.get(0).is_none());
}

/// Unshared nodes are changed in place; shared ones copied, the original
/// left alone.
#[test]
fn copies_only_shared_nodes() {
    let (mut t, _) = tree_of([(0, 10), (20, 30)]);
    let root = t.root_ptr();
    t.insert(R { start: 40, end: 50, tag: 0 });
    assert_eq!(t.root_ptr(), root, "an unshared root was copied");
    let published = t.clone();
    assert_eq!(published.root_ptr(), root, "a clone is not O(1): it does not share the root");
    t.insert(R { start: 60, end: 70, tag: 0 });
    assert_ne!(t.root_ptr(), root, "a shared root was changed in place");
    assert_eq!(published.root_ptr(), root);
    assert_eq!(published.len(), 3);
    let copy = t.root_ptr();
    t.remove(0);
    assert_eq!(t.root_ptr(), copy, "the writer's own copy was copied again");
    // A miss copies nothing, even of a shared tree.
    let again = t.clone();
    assert_eq!(t.remove(5), None);
    assert_eq!(t.replace(R { start: 5, end: 6, tag: 0 }), None);
    assert_eq!(t.root_ptr(), again.root_ptr());
}

/// Values (and so the nodes holding them) live exactly as long as the last
/// version that holds them. Uses `Arc` values, as the kernel does.
#[test]
fn shared_values_freed_with_last_version() {
    let vals: Vec<Arc<R>> = (0..500).map(|i| Arc::new(R { start: i * 10, end: i * 10 + 5, tag: i })).collect();
    let weak: Vec<Weak<R>> = vals.iter().map(Arc::downgrade).collect();
    let mut t = Tree::new();
    for v in vals {
        t.insert(v);
    }
    let v1 = t.clone();
    for i in 0..250 {
        assert_eq!(t.remove(i * 10).map(|v| v.tag), Some(i));
    }
    let v2 = t.clone();
    for i in 250..500 {
        assert!(t.remove(i * 10).is_some());
    }
    assert!(t.is_empty());
    // (A value is counted once per leaf holding it: a copied leaf holds
    // clones of the original's values.)
    assert!(weak.iter().all(|w| w.strong_count() >= 1), "a version lost values it held");
    assert_eq!(v1.len(), 500);
    assert_eq!(v1.find(2502).map(|v| v.start()), Some(2500));
    drop(v1);
    assert!(weak[..250].iter().all(|w| w.upgrade().is_none()), "values only v1 held outlived it");
    assert!(weak[250..].iter().all(|w| w.strong_count() >= 1), "v2 lost values");
    assert_eq!(v2.iter().map(|v| v.tag).collect::<Vec<_>>(), (250..500).collect::<Vec<_>>());
    drop(v2);
    assert!(weak.iter().all(|w| w.upgrade().is_none()), "values outlived every version");
}

/// Readers on other CPUs search a version the writer published.
#[test]
fn versions_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let (t, m) = tree_of((0..1000).map(|i| (i * 10, i * 10 + 5)));
    let t: Tree<Arc<R>> = t.iter().cloned().map(Arc::new).fold(Tree::new(), |mut a, v| {
        a.insert(v);
        a
    });
    send_sync(&t);
    let published = t.clone();
    let reader = std::thread::spawn(move || published.iter().map(|v| v.tag).sum::<u64>());
    let mut t = t;
    for i in 0..1000 {
        t.remove(i * 10);
    }
    assert_eq!(reader.join().unwrap(), m.values().iter().map(|v| v.tag).sum::<u64>());
    assert!(t.is_empty());
}

#[test]
fn empty_tree() {
    let t: Tree<R> = Tree::new();
    t.check_invariants().unwrap();
    assert!(t.is_empty() && t.depth() == 0);
    assert!(t.find(0).is_none() && t.prev(u64::MAX).is_none() && t.next(0).is_none());
    assert!(!t.overlaps(0, u64::MAX) && t.iter().next().is_none());
    assert_eq!(t.find_gap_top_down(0, 100, 10), Some(90));
    assert_eq!(t.find_gap_bottom_up(5, 100, 10), Some(5));
    assert_eq!(t.find_gap_top_down(0, 100, 0), None, "len 0");
    assert_eq!(t.find_gap_top_down(50, 40, 1), None, "low above high");
    assert_eq!(t.find_gap_bottom_up(0, 9, 10), None, "no room");
    assert_eq!(t.find_gap_top_down(0, u64::MAX, u64::MAX), Some(0));
}

#[test]
fn edges_of_the_address_space() {
    let (mut t, mut m) = tree_of([(0, 1), (u64::MAX - 1, u64::MAX)]);
    same_tree(&t, &m, 10).unwrap();
    assert_eq!(t.find(u64::MAX - 1).map(|v| v.start), Some(u64::MAX - 1));
    assert!(t.find(u64::MAX).is_none());
    assert_eq!(t.find_gap_top_down(0, u64::MAX, 10), Some(u64::MAX - 11));
    assert_eq!(t.find_gap_bottom_up(0, u64::MAX, 10), Some(1));
    assert_eq!(t.find_gap_top_down(0, u64::MAX, u64::MAX - 2), Some(1));
    assert_eq!(t.find_gap_top_down(0, u64::MAX, u64::MAX - 1), None);
    for i in 1..2000u64 {
        let v = R { start: u64::MAX - 1 - 4 * i, end: u64::MAX - 4 * i, tag: i };
        m.insert(&v);
        t.insert(v);
    }
    same_tree(&t, &m, 100).unwrap();
}

/// The order, the fill rule and the depth bound the crate doc states.
#[test]
fn depth_of_small_trees() {
    let (mut t, _) = tree_of((0..ORDER as u64).map(|i| (i * 2, i * 2 + 1)));
    assert_eq!(t.depth(), 1, "{ORDER} values fit in one leaf");
    t.insert(R { start: 1000, end: 1001, tag: 0 });
    assert_eq!(t.depth(), 2);
    t.check_invariants().unwrap();
    t.remove(1000);
    t.remove(0);
    assert_eq!(t.depth(), 1, "15 values went back into one leaf");
    t.check_invariants().unwrap();
}

/// A corrupted tree fails the check: `check_invariants` is not a no-op.
#[test]
fn check_catches_corruption() {
    let (t, _) = tree_of((0..100).map(|i| (i * 10, i * 10 + 5)));
    t.check_invariants().unwrap();
    // Break one thing in a copy at a time: the count, a stored summary, the
    // order of values.
    let mut bad = t.clone();
    bad.len += 1;
    assert!(bad.check_invariants().unwrap_err().contains("len"));
    let mut bad = t.clone();
    if let Some(root) = bad.root.as_mut() {
        if let crate::node::Node::Internal(children) = Arc::make_mut(root) {
            children[0].sum.gap += 1;
        }
    }
    assert!(bad.check_invariants().unwrap_err().contains("stored"));
    let mut bad = t.clone();
    if let Some(root) = bad.root.as_mut() {
        if let crate::node::Node::Internal(children) = Arc::make_mut(root) {
            if let crate::node::Node::Leaf(vals) = Arc::make_mut(&mut children[1].node) {
                vals[0].start -= 100;
            }
        }
    }
    assert!(bad.check_invariants().unwrap_err().contains("below the end"));
    t.check_invariants().unwrap();
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "overlaps a value")]
fn overlapping_insert_panics_in_debug() {
    let (mut t, _) = tree_of([(10, 20)]);
    t.insert(R { start: 15, end: 30, tag: 0 });
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "overlaps another value")]
fn overlapping_replace_panics_in_debug() {
    let (mut t, _) = tree_of([(10, 20), (30, 40)]);
    t.replace(R { start: 10, end: 31, tag: 0 });
}
