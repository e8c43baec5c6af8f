//! The VMA tree of an address space: a persistent B-tree of non-overlapping
//! half-open ranges `[start, end)` of `u64`, built so that lock-free (RCU)
//! readers can search a published version while one writer builds the next.
//!
//! # Versions
//!
//! A [`Tree`] is a root pointer and a count. [`Tree::clone`] is O(1): it
//! copies the root `Arc`, and the two trees then share every node. Every
//! change goes through `Arc::make_mut`, which changes a node in place when
//! the tree changing it is its only owner, and otherwise changes a private
//! copy (path copying: a change copies at most the nodes on its path from the
//! root, plus a sibling or two when it rebalances). Hence the guarantee the
//! kernel relies on:
//!
//! - **A version that has been cloned (published) never changes**, whatever
//!   the writer does to its own copy afterwards: no node reachable from it is
//!   ever written again, so a reader may search it without any lock for as
//!   long as it holds a reference to it.
//! - **Nodes a version shares are freed only when the last version that
//!   references them is dropped**, and with them the values they hold. The
//!   kernel keeps a published version alive until every reader that may have
//!   found it is done (an RCU grace period), then drops it.
//!
//! Changes take `&mut self`: the kernel has one writer, serialised by the
//! mmap write lock. Nodes the writer created since the last publication are
//! changed in place, without copies. The crate has no `unsafe` code.
//!
//! # Shape
//!
//! Leaves hold up to [`ORDER`] (16) values sorted by start; internal nodes up
//! to 16 children, each with a summary of its subtree: the start of its first
//! value, the end of its last, and the largest free gap between two
//! consecutive values inside it. Every node but the root holds at least 8
//! entries, and all leaves are at the same depth, so a tree of `n` values has
//! at most `1 + log8(n / 2)` levels: 5 for the kernel's limit of 65,530 VMAs,
//! 6 for 100,000. Why 16: a leaf's 16 `Arc<Vma>` entries are 128 bytes (two
//! cache lines) and an internal node's 16 children with their summaries 512
//! bytes, so a change to a published tree copies about 2 KiB over 5 levels,
//! while a reader's search touches one node per level; a larger order would
//! mean fewer levels but more bytes copied per change, a smaller one more
//! levels, each a likely cache miss. (Linux's maple tree chose 16-slot nodes
//! for the same job.)
//!
//! An insert into a full node moves one entry to a neighbour with room before
//! it splits anything, so the common runs of inserts at one end (mmap placing
//! each new mapping just below the last) leave nodes nearly full, not half.
//!
//! Lookups, inserts, removes, replaces and both gap searches are O(log n);
//! iterating over `k` values is O(log n + k). The gap searches use the
//! summaries to skip every subtree whose gaps are too small, so they visit at
//! most three nodes per level.
//!
//! ```
//! use vmatree::{Span, Tree};
//!
//! #[derive(Clone)]
//! struct R(u64, u64);
//! impl Span for R {
//!     fn start(&self) -> u64 { self.0 }
//!     fn end(&self) -> u64 { self.1 }
//! }
//!
//! let mut t = Tree::new();
//! t.insert(R(0x1000, 0x3000));
//! let published = t.clone();
//! t.insert(R(0x5000, 0x6000));
//! assert_eq!(t.find(0x5800).map(|r| r.0), Some(0x5000));
//! assert!(published.find(0x5800).is_none()); // the published version did not change
//! assert_eq!(t.find_gap_top_down(0, 0x8000, 0x2000), Some(0x6000));
//! assert_eq!(t.find_gap_bottom_up(0x1000, 0x8000, 0x2000), Some(0x3000));
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod check;
mod gap;
mod iter;
mod node;
#[cfg(test)]
mod tests;

use alloc::sync::Arc;
use core::fmt;

pub use iter::Iter;
use node::{child_for, fix_overflow, fix_underflow, Node, MAX, MIN};

/// Most entries of a node: values in a leaf, children in an internal node.
pub const ORDER: usize = MAX;

/// A half-open range `[start, end)` of addresses, `start < end`.
pub trait Span {
    fn start(&self) -> u64;
    fn end(&self) -> u64;
}

/// The kernel stores `Arc<Vma>`.
impl<T: Span + ?Sized> Span for Arc<T> {
    fn start(&self) -> u64 {
        (**self).start()
    }
    fn end(&self) -> u64 {
        (**self).end()
    }
}

/// A set of non-overlapping ranges, ordered by address. See the crate doc.
pub struct Tree<V: Span + Clone> {
    root: Option<Arc<Node<V>>>,
    len: usize,
}

/// O(1): the clone shares every node with `self` (see the crate doc).
impl<V: Span + Clone> Clone for Tree<V> {
    fn clone(&self) -> Self {
        Tree { root: self.root.clone(), len: self.len }
    }
}

impl<V: Span + Clone> Default for Tree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Span + Clone + fmt::Debug> fmt::Debug for Tree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, V: Span + Clone> IntoIterator for &'a Tree<V> {
    type Item = &'a V;
    type IntoIter = Iter<'a, V>;
    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

impl<V: Span + Clone> Tree<V> {
    pub const fn new() -> Self {
        Tree { root: None, len: 0 }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Levels of nodes on every path from the root to a leaf: 0 for an empty
    /// tree, 1 while all values fit in one leaf.
    pub fn depth(&self) -> usize {
        let mut depth = 0;
        let mut node = self.root.as_deref();
        while let Some(n) = node {
            depth += 1;
            node = match n {
                Node::Leaf(_) => None,
                Node::Internal(children) => Some(&children[0].node),
            };
        }
        depth
    }

    /// The value whose `[start, end)` contains `addr`.
    pub fn find(&self, addr: u64) -> Option<&V> {
        self.find_counted(addr, &mut 0)
    }

    /// [`find`](Self::find), counting the nodes it visits in `visits`.
    fn find_counted(&self, addr: u64, visits: &mut usize) -> Option<&V> {
        let mut node = self.root.as_deref()?;
        loop {
            *visits += 1;
            match node {
                Node::Internal(children) => {
                    // The last child starting at or below addr; addr is in
                    // it, or in no value.
                    let i = children.partition_point(|c| c.sum.start <= addr).checked_sub(1)?;
                    if children[i].sum.end <= addr {
                        return None;
                    }
                    node = &children[i].node;
                }
                Node::Leaf(vals) => {
                    let i = vals.partition_point(|v| v.start() <= addr).checked_sub(1)?;
                    return Some(&vals[i]).filter(|v| addr < v.end());
                }
            }
        }
    }

    /// The value starting exactly at `start`.
    pub fn get(&self, start: u64) -> Option<&V> {
        self.find(start).filter(|v| v.start() == start)
    }

    /// The last value starting below `addr`.
    pub fn prev(&self, addr: u64) -> Option<&V> {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Internal(children) => {
                    // Child i has a value starting below addr, child i + 1 none.
                    let i = children.partition_point(|c| c.sum.start < addr).checked_sub(1)?;
                    node = &children[i].node;
                }
                Node::Leaf(vals) => {
                    let i = vals.partition_point(|v| v.start() < addr).checked_sub(1)?;
                    return Some(&vals[i]);
                }
            }
        }
    }

    /// The first value starting at or above `addr`.
    pub fn next(&self, addr: u64) -> Option<&V> {
        next_in(self.root.as_deref()?, addr)
    }

    /// Whether any value intersects `[start, end)` (never, if `start >= end`).
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        // The first value ending above start is the only candidate: ends are
        // sorted as starts are.
        start < end && self.range(start, end).next().is_some()
    }

    /// The values intersecting `[start, end)`, in address order.
    pub fn range(&self, start: u64, end: u64) -> Iter<'_, V> {
        Iter::new(self.root.as_deref(), start, end)
    }

    /// All values, in address order.
    pub fn iter(&self) -> Iter<'_, V> {
        // Every value ends at or below u64::MAX, so it starts below it.
        self.range(0, u64::MAX)
    }

    /// Inserts `v`. The caller guarantees `v.start() < v.end()` and that `v`
    /// overlaps no value of the tree (checked in debug builds).
    pub fn insert(&mut self, v: V) {
        debug_assert!(v.start() < v.end(), "vmatree: empty range {:#x}..{:#x}", v.start(), v.end());
        debug_assert!(
            !self.overlaps(v.start(), v.end()),
            "vmatree: {:#x}..{:#x} overlaps a value of the tree",
            v.start(),
            v.end()
        );
        self.len += 1;
        let Some(mut root) = self.root.take() else {
            self.root = Some(Arc::new(Node::leaf(v)));
            return;
        };
        insert_in(&mut root, v);
        if root.len() > MAX {
            // insert_in made the root this version's own: no copy here.
            let upper = Arc::new(Arc::make_mut(&mut root).split());
            root = Arc::new(Node::parent_of(root, upper));
        }
        self.root = Some(root);
    }

    /// Removes and returns the value starting exactly at `start`.
    pub fn remove(&mut self, start: u64) -> Option<V> {
        // Look first: a miss must not copy the path of a published tree.
        self.get(start)?;
        let root = self.root.as_mut()?;
        let v = remove_in(root, start)?;
        self.len -= 1;
        let shrunk = match &**root {
            Node::Leaf(vals) if vals.is_empty() => Some(None),
            Node::Internal(children) if children.len() == 1 => Some(Some(children[0].node.clone())),
            _ => None,
        };
        if let Some(new_root) = shrunk {
            self.root = new_root;
        }
        Some(v)
    }

    /// Puts `v` in place of the value starting at `v.start()` and returns that
    /// value; `v` may end elsewhere, as long as it overlaps no other value
    /// (checked in debug builds). With no value starting there, changes
    /// nothing (drops `v`) and returns `None`.
    pub fn replace(&mut self, v: V) -> Option<V> {
        let start = v.start();
        self.get(start)?;
        debug_assert!(start < v.end(), "vmatree: empty range {:#x}..{:#x}", start, v.end());
        debug_assert!(
            self.range(start, v.end()).all(|o| o.start() == start),
            "vmatree: {:#x}..{:#x} overlaps another value of the tree",
            start,
            v.end()
        );
        replace_in(self.root.as_mut()?, v)
    }

    /// The highest `s` with `low <= s`, `s + len <= high` and `[s, s + len)`
    /// free (intersecting no value); the space below the first value and above
    /// the last counts. `None` if there is none, or if `len` is 0.
    pub fn find_gap_top_down(&self, low: u64, high: u64, len: u64) -> Option<u64> {
        gap::top_down(self.root.as_deref(), low, high, len, &mut 0)
    }

    /// The lowest such `s`: like [`find_gap_top_down`](Self::find_gap_top_down).
    pub fn find_gap_bottom_up(&self, low: u64, high: u64, len: u64) -> Option<u64> {
        gap::bottom_up(self.root.as_deref(), low, high, len, &mut 0)
    }

    /// Checks the whole tree (O(n)): every value non-empty, values sorted and
    /// non-overlapping, at most [`ORDER`] entries per node and at least half
    /// that in every node but the root (an internal root has two children),
    /// all leaves at one depth, every stored summary equal to the one
    /// recomputed from the values, and `len` equal to the number of values.
    /// Returns what it found wrong first.
    pub fn check_invariants(&self) -> Result<(), alloc::string::String> {
        check::check(self.root.as_deref(), self.len)
    }
}

/// The first value starting at or above `addr` in `node`'s subtree.
fn next_in<V: Span + Clone>(node: &Node<V>, addr: u64) -> Option<&V> {
    match node {
        Node::Internal(children) => {
            // Children ending at or below addr hold only values starting
            // below it. The first other child holds the answer unless all its
            // values start below addr (its last contains addr): then it is
            // the first value of the child after.
            let i = children.partition_point(|c| c.sum.end <= addr);
            let c = children.get(i)?;
            next_in(&c.node, addr).or_else(|| children.get(i + 1).map(|c| first_in(&c.node)))
        }
        Node::Leaf(vals) => vals.get(vals.partition_point(|v| v.start() < addr)),
    }
}

/// The first value of a (non-empty) subtree.
fn first_in<V>(mut node: &Node<V>) -> &V {
    loop {
        match node {
            Node::Internal(children) => node = &children[0].node,
            Node::Leaf(vals) => return &vals[0],
        }
    }
}

fn insert_in<V: Span + Clone>(node: &mut Arc<Node<V>>, v: V) {
    match Arc::make_mut(node) {
        Node::Leaf(vals) => {
            let i = vals.partition_point(|x| x.start() < v.start());
            vals.insert(i, v);
        }
        Node::Internal(children) => {
            let i = child_for(children, v.start());
            insert_in(&mut children[i].node, v);
            children[i].sum = children[i].node.summary();
            if children[i].node.len() > MAX {
                fix_overflow(children, i);
            }
        }
    }
}

/// Removes the value starting at `start`, which the caller has seen exists.
fn remove_in<V: Span + Clone>(node: &mut Arc<Node<V>>, start: u64) -> Option<V> {
    match Arc::make_mut(node) {
        Node::Leaf(vals) => {
            let i = vals.binary_search_by_key(&start, |v| v.start()).ok()?;
            Some(vals.remove(i))
        }
        Node::Internal(children) => {
            let i = child_for(children, start);
            let v = remove_in(&mut children[i].node, start)?;
            if children[i].node.len() < MIN {
                fix_underflow(children, i);
            } else {
                children[i].sum = children[i].node.summary();
            }
            Some(v)
        }
    }
}

/// Replaces the value starting at `v.start()`, which the caller has seen exists.
fn replace_in<V: Span + Clone>(node: &mut Arc<Node<V>>, v: V) -> Option<V> {
    match Arc::make_mut(node) {
        Node::Leaf(vals) => {
            let i = vals.binary_search_by_key(&v.start(), |x| x.start()).ok()?;
            Some(core::mem::replace(&mut vals[i], v))
        }
        Node::Internal(children) => {
            let i = child_for(children, v.start());
            let old = replace_in(&mut children[i].node, v)?;
            children[i].sum = children[i].node.summary();
            Some(old)
        }
    }
}

/// Probes for the tests: nodes visited, and node identity.
#[cfg(test)]
impl<V: Span + Clone> Tree<V> {
    pub(crate) fn find_visits(&self, addr: u64) -> (Option<&V>, usize) {
        let mut visits = 0;
        (self.find_counted(addr, &mut visits), visits)
    }

    pub(crate) fn gap_top_visits(&self, low: u64, high: u64, len: u64) -> (Option<u64>, usize) {
        let mut visits = 0;
        (gap::top_down(self.root.as_deref(), low, high, len, &mut visits), visits)
    }

    pub(crate) fn gap_bottom_visits(&self, low: u64, high: u64, len: u64) -> (Option<u64>, usize) {
        let mut visits = 0;
        (gap::bottom_up(self.root.as_deref(), low, high, len, &mut visits), visits)
    }

    /// The root node's address, to tell a copied root from one changed in place.
    pub(crate) fn root_ptr(&self) -> Option<*const ()> {
        self.root.as_ref().map(|r| Arc::as_ptr(r).cast())
    }
}
