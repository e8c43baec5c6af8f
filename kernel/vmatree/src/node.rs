//! Nodes, their summaries, and the operations that move entries between
//! sibling nodes (split, merge, shift), shared by insert and remove.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::Span;

/// Most entries (values in a leaf, children in an internal node) a node holds
/// between operations. A node may hold `MAX + 1` for a moment, inside an
/// insert, before its parent splits it or moves one entry to a sibling.
pub(crate) const MAX: usize = 16;
/// Fewest entries of every node but the root.
pub(crate) const MIN: usize = MAX / 2;
/// Most levels a tree can have: a tree of `h` levels holds at least
/// `2 * MIN^(h-1)` = `2^(3h-2)` values (the root has two children, every other
/// internal node `MIN`, every leaf `MIN` values), and a `usize` count stays
/// below `2^64`, so `3h - 2 <= 63`.
pub(crate) const MAX_HEIGHT: usize = 21;

/// What a parent knows of one child's subtree, for searches that skip whole
/// subtrees: where its values start and end, and its largest free gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Start of the subtree's first (lowest) value.
    pub start: u64,
    /// End of its last value; values do not overlap, so this is the largest end.
    pub end: u64,
    /// Largest free space strictly inside the subtree: `b.start - a.end` over
    /// consecutive values `a`, `b` of the subtree (0 with fewer than two).
    pub gap: u64,
}

/// A child of an internal node, with its summary.
#[derive(Clone)]
pub(crate) struct Child<V> {
    pub sum: Summary,
    pub node: Arc<Node<V>>,
}

/// A node. Shared nodes are never changed: `Arc::make_mut` copies one before a
/// change unless this version is its only owner.
pub(crate) enum Node<V> {
    /// Values sorted by start, non-overlapping.
    Leaf(Vec<V>),
    /// Children sorted by address; all at the same height.
    Internal(Vec<Child<V>>),
}

/// A copy gets room for `MAX + 1` entries, so an insert never reallocates.
impl<V: Clone> Clone for Node<V> {
    fn clone(&self) -> Self {
        match self {
            Node::Leaf(vals) => Node::Leaf(with_room(vals)),
            Node::Internal(children) => Node::Internal(with_room(children)),
        }
    }
}

fn with_room<T: Clone>(entries: &[T]) -> Vec<T> {
    let mut v = Vec::with_capacity(MAX + 1);
    v.extend_from_slice(entries);
    v
}

impl<V: Span + Clone> Node<V> {
    pub(crate) fn leaf(v: V) -> Self {
        let mut vals = Vec::with_capacity(MAX + 1);
        vals.push(v);
        Node::Leaf(vals)
    }

    /// An internal node over two siblings (a new root after a root split).
    pub(crate) fn parent_of(left: Arc<Node<V>>, right: Arc<Node<V>>) -> Self {
        let mut children = Vec::with_capacity(MAX + 1);
        children.push(Child { sum: left.summary(), node: left });
        children.push(Child { sum: right.summary(), node: right });
        Node::Internal(children)
    }

    /// Entries: values of a leaf, children of an internal node.
    pub(crate) fn len(&self) -> usize {
        match self {
            Node::Leaf(vals) => vals.len(),
            Node::Internal(children) => children.len(),
        }
    }

    /// The summary of this node's subtree, from its entries (O(MAX)).
    /// Meaningless for an empty leaf, which exists only for a moment as a
    /// root whose last value was just removed.
    pub(crate) fn summary(&self) -> Summary {
        match self {
            Node::Leaf(vals) => {
                let (Some(first), Some(last)) = (vals.first(), vals.last()) else {
                    return Summary { start: 0, end: 0, gap: 0 };
                };
                // Saturating: values of a valid tree are sorted, so this never
                // saturates; a broken tree gets gap 0, not a wrapped huge one.
                let gap = vals.windows(2).map(|w| w[1].start().saturating_sub(w[0].end())).max().unwrap_or(0);
                Summary { start: first.start(), end: last.end(), gap }
            }
            Node::Internal(children) => {
                combine(children.iter().map(|c| c.sum)).unwrap_or(Summary { start: 0, end: 0, gap: 0 })
            }
        }
    }

    /// Splits an overfull node (`MAX + 1` entries): keeps the lower `MIN`
    /// entries and returns a new sibling with the rest (`MIN + 1`).
    pub(crate) fn split(&mut self) -> Self {
        match self {
            Node::Leaf(vals) => Node::Leaf(upper_part(vals)),
            Node::Internal(children) => Node::Internal(upper_part(children)),
        }
    }
}

fn upper_part<T>(entries: &mut Vec<T>) -> Vec<T> {
    let mut upper = Vec::with_capacity(MAX + 1);
    upper.extend(entries.drain(MIN..));
    upper
}

/// Combines the summaries of consecutive subtrees, in address order, into the
/// summary of their union: the gaps between them count as inner gaps.
/// `None` for no summaries.
pub(crate) fn combine(mut sums: impl Iterator<Item = Summary>) -> Option<Summary> {
    let mut acc = sums.next()?;
    for s in sums {
        acc.gap = acc.gap.max(s.gap).max(s.start.saturating_sub(acc.end));
        acc.end = s.end;
    }
    Some(acc)
}

/// The index of the child whose subtree a value starting at `start` belongs
/// in: the last child starting at or below `start`, or the first child.
pub(crate) fn child_for<V>(children: &[Child<V>], start: u64) -> usize {
    children.partition_point(|c| c.sum.start <= start).saturating_sub(1)
}

/// Children `i` and `i + 1`, both mutable.
fn pair<V>(children: &mut [Child<V>], i: usize) -> (&mut Child<V>, &mut Child<V>) {
    let (lower, upper) = children.split_at_mut(i + 1);
    (&mut lower[i], &mut upper[0])
}

/// Moves the first entry of `right` to the end of `left`; both are siblings,
/// so both are leaves or both internal.
fn shift_left<V: Span + Clone>(left: &mut Node<V>, right: &mut Node<V>) {
    match (left, right) {
        (Node::Leaf(l), Node::Leaf(r)) => l.push(r.remove(0)),
        (Node::Internal(l), Node::Internal(r)) => l.push(r.remove(0)),
        _ => unreachable!("siblings of different heights"),
    }
}

/// Moves the last entry of `left` to the front of `right`.
fn shift_right<V: Span + Clone>(left: &mut Node<V>, right: &mut Node<V>) {
    match (left, right) {
        (Node::Leaf(l), Node::Leaf(r)) => r.insert(0, l.pop().expect("a sibling with entries to spare")),
        (Node::Internal(l), Node::Internal(r)) => r.insert(0, l.pop().expect("a sibling with entries to spare")),
        _ => unreachable!("siblings of different heights"),
    }
}

/// Appends all entries of `right` to `left`.
fn append<V: Span + Clone>(left: &mut Node<V>, right: Node<V>) {
    match (left, right) {
        (Node::Leaf(l), Node::Leaf(r)) => l.extend(r),
        (Node::Internal(l), Node::Internal(r)) => l.extend(r),
        _ => unreachable!("siblings of different heights"),
    }
}

/// Moves one entry between children `i` and `i + 1` (`to_left`: from `i + 1`
/// to `i`) and refreshes both summaries. Copies either child if it is shared.
fn shift<V: Span + Clone>(children: &mut [Child<V>], i: usize, to_left: bool) {
    let (a, b) = pair(children, i);
    let (l, r) = (Arc::make_mut(&mut a.node), Arc::make_mut(&mut b.node));
    if to_left {
        shift_left(l, r);
    } else {
        shift_right(l, r);
    }
    a.sum = l.summary();
    b.sum = r.summary();
}

/// After an insert below child `i` left it with `MAX + 1` entries: moves one
/// entry to a sibling with room (the emptier one), so that a run of inserts
/// into one place fills its neighbours before it splits anything; only when
/// both neighbours are full, splits the child in two. The parent may be left
/// with `MAX + 1` children, for its own parent to fix.
pub(crate) fn fix_overflow<V: Span + Clone>(children: &mut Vec<Child<V>>, i: usize) {
    let room = |j: usize| children.get(j).map_or(0, |c| MAX - c.node.len().min(MAX));
    let (left_room, right_room) = (if i > 0 { room(i - 1) } else { 0 }, room(i + 1));
    if left_room > 0 && left_room >= right_room {
        shift(children, i - 1, true);
    } else if right_room > 0 {
        shift(children, i, false);
    } else {
        // The child was just changed, so it is this version's own: no copy.
        let node = Arc::make_mut(&mut children[i].node);
        let upper = Arc::new(node.split());
        children[i].sum = node.summary();
        children.insert(i + 1, Child { sum: upper.summary(), node: upper });
    }
}

/// After a remove below child `i` left it with `MIN - 1` entries: borrows one
/// entry from a sibling that has more than `MIN`, or else merges the child
/// with a sibling (`MIN - 1 + MIN < MAX` entries). The parent may be left with
/// one child fewer, for its own parent to fix.
pub(crate) fn fix_underflow<V: Span + Clone>(children: &mut Vec<Child<V>>, i: usize) {
    let spare = |j: usize| children.get(j).is_some_and(|c| c.node.len() > MIN);
    if i > 0 && spare(i - 1) {
        shift(children, i - 1, false);
    } else if spare(i + 1) {
        shift(children, i, true);
    } else {
        // Merge the pair (j, j + 1) that includes child i.
        let j = if i > 0 { i - 1 } else { i };
        let upper = children.remove(j + 1);
        let lower = Arc::make_mut(&mut children[j].node);
        append(lower, Arc::unwrap_or_clone(upper.node));
        children[j].sum = lower.summary();
    }
}
