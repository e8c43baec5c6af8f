//! In-order iteration over the values intersecting a range.

use core::iter::FusedIterator;

use crate::node::{Child, Node, MAX_HEIGHT};
use crate::Span;

/// The values of a [`Tree`](crate::Tree) intersecting a range, in address
/// order: from [`Tree::range`](crate::Tree::range) or
/// [`Tree::iter`](crate::Tree::iter). Needs no allocation: the path from the
/// root is a fixed array (a tree has at most `MAX_HEIGHT` levels).
pub struct Iter<'a, V> {
    /// For each internal level above the current leaf: that node's children
    /// and the index of the one being walked.
    path: [(&'a [Child<V>], usize); MAX_HEIGHT],
    /// Levels of `path` in use.
    depth: usize,
    /// The values of the current leaf not yet returned.
    leaf: &'a [V],
    /// Stop at the first value starting at or above this.
    end: u64,
}

impl<'a, V: Span> Iter<'a, V> {
    pub(crate) fn new(root: Option<&'a Node<V>>, start: u64, end: u64) -> Self {
        let mut it = Iter { path: [(&[], 0); MAX_HEIGHT], depth: 0, leaf: &[], end };
        let Some(mut node) = root.filter(|_| start < end) else { return it };
        // Descend to the first value ending above start: values are sorted
        // and disjoint, so ends are sorted too, and every later value that
        // starts below end intersects the range.
        loop {
            match node {
                Node::Internal(children) => {
                    let i = children.partition_point(|c| c.sum.end <= start);
                    if i == children.len() {
                        it.depth = 0;
                        return it;
                    }
                    it.path[it.depth] = (children, i);
                    it.depth += 1;
                    node = &children[i].node;
                }
                Node::Leaf(vals) => {
                    it.leaf = &vals[vals.partition_point(|v| v.end() <= start)..];
                    return it;
                }
            }
        }
    }

    /// Moves to the first leaf after the current one; false at the end.
    fn next_leaf(&mut self) -> bool {
        while self.depth > 0 {
            let (children, i) = self.path[self.depth - 1];
            if i + 1 < children.len() {
                self.path[self.depth - 1].1 = i + 1;
                let mut node: &'a Node<V> = &children[i + 1].node;
                loop {
                    match node {
                        Node::Internal(c) => {
                            self.path[self.depth] = (c, 0);
                            self.depth += 1;
                            node = &c[0].node;
                        }
                        Node::Leaf(vals) => {
                            self.leaf = vals;
                            return true;
                        }
                    }
                }
            }
            self.depth -= 1;
        }
        false
    }
}

impl<'a, V: Span> Iterator for Iter<'a, V> {
    type Item = &'a V;

    fn next(&mut self) -> Option<&'a V> {
        loop {
            if let Some((v, rest)) = self.leaf.split_first() {
                if v.start() >= self.end {
                    self.leaf = &[];
                    self.depth = 0;
                    return None;
                }
                self.leaf = rest;
                return Some(v);
            }
            if !self.next_leaf() {
                return None;
            }
        }
    }
}

impl<V: Span> FusedIterator for Iter<'_, V> {}
