//! The model the tree is checked against: a `BTreeMap` from start to
//! `(end, tag)`, with each query written the plainest way, and gap searches
//! by brute force.

use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::vec::Vec;

use crate::{Span, Tree};

/// A test value: a range and a tag that tells apart values with equal ranges
/// (a replace puts a new tag in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct R {
    pub start: u64,
    pub end: u64,
    pub tag: u64,
}

impl Span for R {
    fn start(&self) -> u64 {
        self.start
    }
    fn end(&self) -> u64 {
        self.end
    }
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub map: BTreeMap<u64, (u64, u64)>,
}

fn r((&start, &(end, tag)): (&u64, &(u64, u64))) -> R {
    R { start, end, tag }
}

impl Model {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn values(&self) -> Vec<R> {
        self.map.iter().map(r).collect()
    }

    pub fn insert(&mut self, v: &R) {
        assert!(self.map.insert(v.start, (v.end, v.tag)).is_none());
    }

    pub fn remove(&mut self, start: u64) -> Option<R> {
        self.map.remove(&start).map(|(end, tag)| R { start, end, tag })
    }

    pub fn find(&self, addr: u64) -> Option<R> {
        self.map.range(..=addr).next_back().map(r).filter(|v| addr < v.end)
    }

    pub fn get(&self, start: u64) -> Option<R> {
        self.map.get_key_value(&start).map(r)
    }

    pub fn prev(&self, addr: u64) -> Option<R> {
        self.map.range(..addr).next_back().map(r)
    }

    pub fn next(&self, addr: u64) -> Option<R> {
        self.map.range(addr..).next().map(r)
    }

    /// Every value intersecting `[start, end)`, by a scan of all values.
    pub fn range(&self, start: u64, end: u64) -> Vec<R> {
        self.map.iter().map(r).filter(|v| v.start < end && start < v.end).collect()
    }

    /// Whether `[s, s + len)` (which must not wrap) intersects no value.
    fn free(&self, s: u64, len: u64) -> bool {
        self.map.range(..s + len).next_back().is_none_or(|(_, &(end, _))| end <= s)
    }

    fn fits(&self, s: u64, low: u64, high: u64, len: u64) -> bool {
        low <= s && s.checked_add(len).is_some_and(|e| e <= high) && self.free(s, len)
    }

    /// Brute force: the highest fitting start is `high - len`, or just below
    /// some value (else one higher would fit too); try them all.
    pub fn gap_top(&self, low: u64, high: u64, len: u64) -> Option<u64> {
        if len == 0 {
            return None;
        }
        // (Only values starting in [low + len, high] give candidates in range.)
        let first = low.checked_add(len).filter(|&f| f <= high)?;
        let below_values = self.map.range(first..=high).map(|(&s, _)| s - len);
        high.checked_sub(len).into_iter().chain(below_values).filter(|&s| self.fits(s, low, high, len)).max()
    }

    /// Brute force: the lowest fitting start is `low`, or the end of a value.
    pub fn gap_bottom(&self, low: u64, high: u64, len: u64) -> Option<u64> {
        if len == 0 {
            return None;
        }
        // (Only values starting below high can end in range.)
        let ends = self.map.range(..high).map(|(_, &(e, _))| e);
        core::iter::once(low).chain(ends).filter(|&s| self.fits(s, low, high, len)).min()
    }
}

/// Checks that `tree` answers every query at `addr` (and `[addr, addr + len)`)
/// as `model` does.
pub fn same_queries(tree: &Tree<R>, model: &Model, addr: u64, len: u64) -> Result<(), String> {
    let end = addr.saturating_add(len);
    let checks: [(&str, Option<R>, Option<R>); 4] = [
        ("find", tree.find(addr).cloned(), model.find(addr)),
        ("get", tree.get(addr).cloned(), model.get(addr)),
        ("prev", tree.prev(addr).cloned(), model.prev(addr)),
        ("next", tree.next(addr).cloned(), model.next(addr)),
    ];
    for (what, got, want) in checks {
        if got != want {
            return Err(format!("{what}({addr:#x}): tree {got:?}, model {want:?}"));
        }
    }
    let want = model.range(addr, end);
    let got: Vec<R> = tree.range(addr, end).cloned().collect();
    if got != want {
        return Err(format!("range({addr:#x}, {end:#x}): tree {got:?}, model {want:?}"));
    }
    let want_overlap = !want.is_empty();
    if tree.overlaps(addr, end) != want_overlap {
        return Err(format!("overlaps({addr:#x}, {end:#x}) is not {want_overlap}"));
    }
    Ok(())
}

/// Checks both gap searches over `[low, high)` for `len` bytes.
/// Also checks that each search visits at most three nodes per level.
pub fn same_gaps(tree: &Tree<R>, model: &Model, low: u64, high: u64, len: u64) -> Result<(), String> {
    let most = 3 * tree.depth();
    let ((got, visits), want) = (tree.gap_top_visits(low, high, len), model.gap_top(low, high, len));
    if got != want || visits > most {
        return Err(format!(
            "find_gap_top_down({low:#x}, {high:#x}, {len:#x}): tree {got:?} ({visits} nodes visited, at most {most}), model {want:?}"
        ));
    }
    let ((got, visits), want) = (tree.gap_bottom_visits(low, high, len), model.gap_bottom(low, high, len));
    if got != want || visits > most {
        return Err(format!(
            "find_gap_bottom_up({low:#x}, {high:#x}, {len:#x}): tree {got:?} ({visits} nodes visited, at most {most}), model {want:?}"
        ));
    }
    // The public entry points answer as the counted ones do.
    if tree.find_gap_top_down(low, high, len) != tree.gap_top_visits(low, high, len).0
        || tree.find_gap_bottom_up(low, high, len) != got
    {
        return Err(format!("find_gap_*({low:#x}, {high:#x}, {len:#x}) differ from their counted forms"));
    }
    Ok(())
}

/// Checks all of `tree` against `model`: structure, contents, and the queries
/// at every value's edges (at most about `probes` values, spread evenly).
pub fn same_tree(tree: &Tree<R>, model: &Model, probes: usize) -> Result<(), String> {
    tree.check_invariants()?;
    if tree.len() != model.len() {
        return Err(format!("len: tree {}, model {}", tree.len(), model.len()));
    }
    let got: Vec<R> = tree.iter().cloned().collect();
    if got != model.values() {
        return Err(format!("iter: tree {got:?}, model {:?}", model.values()));
    }
    let step = (model.len() / probes.max(1)).max(1);
    for v in model.values().iter().step_by(step) {
        for addr in [v.start.wrapping_sub(1), v.start, v.start + 1, v.end - 1, v.end] {
            same_queries(tree, model, addr, 1)?;
            same_queries(tree, model, addr, 64)?;
        }
    }
    same_queries(tree, model, 0, u64::MAX)?;
    same_queries(tree, model, u64::MAX, 1)?;
    for len in [1, 2, 7, 33, 500, 1 << 20] {
        for (low, high) in [(0, u64::MAX), (0, 4096), (1000, 3000), (u64::MAX - 5000, u64::MAX)] {
            same_gaps(tree, model, low, high, len)?;
        }
    }
    Ok(())
}
