//! The structural check behind [`Tree::check_invariants`](crate::Tree::check_invariants).
//!
//! What it checks, walking the whole tree (O(n)):
//! - every value is non-empty (`start < end`), and each starts at or after
//!   the end of the one before it in address order: sorted, non-overlapping;
//! - every node holds at most `ORDER` entries; every node but the root at
//!   least `ORDER / 2`; an internal root at least two children and a leaf
//!   root at least one value (an empty tree has no root);
//! - all leaves are at the same depth, at most `MAX_HEIGHT`;
//! - every child's stored summary equals the one recomputed from its values;
//! - the tree's count equals the number of values.

use alloc::format;
use alloc::string::String;

use crate::node::{Node, Summary, MAX, MAX_HEIGHT, MIN};
use crate::Span;

struct Walk {
    /// End of the last value seen, in address order.
    prev_end: Option<u64>,
    values: usize,
    leaf_depth: Option<usize>,
}

pub(crate) fn check<V: Span + Clone>(root: Option<&Node<V>>, len: usize) -> Result<(), String> {
    let mut walk = Walk { prev_end: None, values: 0, leaf_depth: None };
    if let Some(root) = root {
        node(root, 1, &mut walk)?;
    }
    if walk.values != len {
        return Err(format!("len is {len} but the tree holds {} values", walk.values));
    }
    Ok(())
}

/// Checks `n` at `depth` (1: the root) and returns its subtree's summary,
/// computed from the values, not from stored summaries.
fn node<V: Span + Clone>(n: &Node<V>, depth: usize, walk: &mut Walk) -> Result<Summary, String> {
    if depth > MAX_HEIGHT {
        return Err(format!("a node at depth {depth}, deeper than {MAX_HEIGHT}"));
    }
    let entries = n.len();
    let fewest = match (depth, n) {
        (1, Node::Leaf(_)) => 1,
        (1, Node::Internal(_)) => 2,
        _ => MIN,
    };
    if entries > MAX || entries < fewest {
        return Err(format!("a node at depth {depth} holds {entries} entries, not {fewest}..={MAX}"));
    }
    match n {
        Node::Leaf(vals) => {
            if *walk.leaf_depth.get_or_insert(depth) != depth {
                return Err(format!("leaves at depths {} and {depth}", walk.leaf_depth.unwrap_or(0)));
            }
            let mut gap = 0;
            for (i, v) in vals.iter().enumerate() {
                let (s, e) = (v.start(), v.end());
                if s >= e {
                    return Err(format!("empty or inverted value {s:#x}..{e:#x}"));
                }
                if let Some(prev_end) = walk.prev_end {
                    if s < prev_end {
                        return Err(format!(
                            "value {s:#x}..{e:#x} starts below the end {prev_end:#x} of the one before"
                        ));
                    }
                    if i > 0 {
                        gap = gap.max(s - prev_end);
                    }
                }
                walk.prev_end = Some(e);
                walk.values += 1;
            }
            // fewest >= 1, so the leaf has a first and a last value.
            Ok(Summary { start: vals[0].start(), end: vals[entries - 1].end(), gap })
        }
        Node::Internal(children) => {
            let mut whole: Option<Summary> = None;
            for (i, c) in children.iter().enumerate() {
                let actual = node(&c.node, depth + 1, walk)?;
                if c.sum != actual {
                    return Err(format!("child {i} at depth {}: stored {:?}, actual {actual:?}", depth + 1, c.sum));
                }
                // The walk has checked that this child starts at or above the
                // end of the one before.
                whole = Some(match whole {
                    None => actual,
                    Some(w) => Summary {
                        start: w.start,
                        end: actual.end,
                        gap: w.gap.max(actual.gap).max(actual.start - w.end),
                    },
                });
            }
            whole.ok_or_else(|| format!("an internal node at depth {depth} without children"))
        }
    }
}
