//! Free-space searches: the highest (top-down) or lowest (bottom-up) place
//! for `len` bytes in `[low, high)` that no value intersects.
//!
//! The free gaps of a tree are the space below its first value, between each
//! two consecutive values, and above its last. A search walks the gaps in
//! order, from the top or the bottom, and takes the first one with room; it
//! descends into a child only when the child's summary says it has an inner
//! gap of at least `len` that reaches far enough into `[low, high)`. A child
//! lying wholly inside `[low, high)` with such a gap always yields an answer,
//! so the descents that come back empty are into children that straddle `low`
//! or `high`: at most two per level, plus the one that succeeds. A search
//! visits at most three nodes per level.

use crate::node::{Node, Summary};
use crate::Span;

/// The highest start for `len` bytes in the free gap `[a, b)` cut to
/// `[low, high)`, if they fit.
fn top_of(a: u64, b: u64, low: u64, high: u64, len: u64) -> Option<u64> {
    let (a, b) = (a.max(low), b.min(high));
    (b >= a && b - a >= len).then(|| b - len)
}

/// The lowest start for `len` bytes in `[a, b)` cut to `[low, high)`.
fn bottom_of(a: u64, b: u64, low: u64, high: u64, len: u64) -> Option<u64> {
    let (a, b) = (a.max(low), b.min(high));
    (b >= a && b - a >= len).then_some(a)
}

/// Whether a subtree with summary `s` may hold an inner gap with room for
/// `len` bytes in `[low, high)`: its largest gap is large enough, and the part
/// of its span inside `[low, high)` is too.
fn may_fit(s: &Summary, low: u64, high: u64, len: u64) -> bool {
    let (a, b) = (s.start.max(low), s.end.min(high));
    s.gap >= len && b >= a && b - a >= len
}

pub(crate) fn top_down<V: Span + Clone>(
    root: Option<&Node<V>>,
    low: u64,
    high: u64,
    len: u64,
    visits: &mut usize,
) -> Option<u64> {
    if len == 0 || high < low || high - low < len {
        return None;
    }
    let Some(root) = root else { return Some(high - len) };
    let s = root.summary();
    top_of(s.end, u64::MAX, low, high, len)
        .or_else(|| if may_fit(&s, low, high, len) { inner_top(root, low, high, len, visits) } else { None })
        .or_else(|| top_of(0, s.start, low, high, len))
}

pub(crate) fn bottom_up<V: Span + Clone>(
    root: Option<&Node<V>>,
    low: u64,
    high: u64,
    len: u64,
    visits: &mut usize,
) -> Option<u64> {
    if len == 0 || high < low || high - low < len {
        return None;
    }
    let Some(root) = root else { return Some(low) };
    let s = root.summary();
    bottom_of(0, s.start, low, high, len)
        .or_else(|| if may_fit(&s, low, high, len) { inner_bottom(root, low, high, len, visits) } else { None })
        .or_else(|| bottom_of(s.end, u64::MAX, low, high, len))
}

/// The highest fitting start among the gaps strictly inside `node`'s subtree.
fn inner_top<V: Span + Clone>(node: &Node<V>, low: u64, high: u64, len: u64, visits: &mut usize) -> Option<u64> {
    *visits += 1;
    match node {
        Node::Leaf(vals) => vals.windows(2).rev().find_map(|w| top_of(w[0].end(), w[1].start(), low, high, len)),
        Node::Internal(children) => {
            for (i, c) in children.iter().enumerate().rev() {
                // The gap above child i (between it and child i + 1), then
                // the gaps inside it.
                if let Some(above) = children.get(i + 1) {
                    if let Some(s) = top_of(c.sum.end, above.sum.start, low, high, len) {
                        return Some(s);
                    }
                }
                if c.sum.end <= low {
                    // This child and all below it lie under low.
                    return None;
                }
                if may_fit(&c.sum, low, high, len) {
                    if let Some(s) = inner_top(&c.node, low, high, len, visits) {
                        return Some(s);
                    }
                }
            }
            None
        }
    }
}

/// The lowest fitting start among the gaps strictly inside `node`'s subtree.
fn inner_bottom<V: Span + Clone>(node: &Node<V>, low: u64, high: u64, len: u64, visits: &mut usize) -> Option<u64> {
    *visits += 1;
    match node {
        Node::Leaf(vals) => vals.windows(2).find_map(|w| bottom_of(w[0].end(), w[1].start(), low, high, len)),
        Node::Internal(children) => {
            for (i, c) in children.iter().enumerate() {
                // The gap below child i (between child i - 1 and it), then
                // the gaps inside it.
                if let Some(below) = i.checked_sub(1).map(|j| &children[j]) {
                    if let Some(s) = bottom_of(below.sum.end, c.sum.start, low, high, len) {
                        return Some(s);
                    }
                }
                if c.sum.start >= high {
                    // This child and all above it lie over high.
                    return None;
                }
                if may_fit(&c.sum, low, high, len) {
                    if let Some(s) = inner_bottom(&c.node, low, high, len, visits) {
                        return Some(s);
                    }
                }
            }
            None
        }
    }
}
