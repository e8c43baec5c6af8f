//! Property tests: random sequences of changes and queries, the tree against
//! the model after every step, and published versions against the model as
//! it was when they were published.

use proptest::prelude::*;
use proptest::sample::Index;
use std::string::String;
use std::vec::Vec;

use super::model::{same_gaps, same_queries, same_tree, Model, R};
use crate::Tree;

/// An address: anywhere, or near the start or end of the `Index`-th value
/// (so that edges, where bugs live, come up often).
#[derive(Clone, Debug)]
enum Addr {
    Raw(u64),
    Start(Index, i64),
    End(Index, i64),
}

#[derive(Clone, Debug)]
enum Op {
    /// Insert at the address with this length, cut short where it would
    /// overlap the next value; nothing (but a check) if the address is taken.
    Insert(Addr, u64),
    /// Remove the value starting at the address (a miss, if none does).
    Remove(Addr),
    /// Remove this many values from the address up (merges up the tree).
    RemoveRun(Addr, usize),
    /// Replace the value starting at the address by one of this length (cut
    /// short before the next value) and a new tag.
    Replace(Addr, u64),
    /// Every query at the address, and over `[addr, addr + len)`.
    Query(Addr, u64),
    /// Both gap searches in `[low, low + span)` for `len` bytes.
    Gap(Addr, u64, u64),
    /// Keep a clone of the tree as it is now (a published version).
    Publish,
    /// Drop one of the kept versions.
    Unpublish(Index),
}

/// Addresses: mostly in `[0, space)`, some at the very top of the `u64` range.
fn addr(space: u64) -> impl Strategy<Value = Addr> {
    let raw = prop_oneof![9 => 0..space, 1 => (u64::MAX - space)..=u64::MAX];
    prop_oneof![
        3 => raw.prop_map(Addr::Raw),
        3 => (any::<Index>(), -2i64..=2).prop_map(|(i, d)| Addr::Start(i, d)),
        2 => (any::<Index>(), -2i64..=2).prop_map(|(i, d)| Addr::End(i, d)),
    ]
}

fn length() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 1..48u64, 1 => 48..5000u64, 1 => Just(u64::MAX)]
}

fn op(space: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (addr(space), length()).prop_map(|(a, l)| Op::Insert(a, l)),
        3 => addr(space).prop_map(Op::Remove),
        1 => (addr(space), 1..300usize).prop_map(|(a, n)| Op::RemoveRun(a, n)),
        2 => (addr(space), length()).prop_map(|(a, l)| Op::Replace(a, l)),
        3 => (addr(space), length()).prop_map(|(a, l)| Op::Query(a, l)),
        3 => (addr(space), prop_oneof![0..6000u64, Just(u64::MAX)], 1..3000u64).prop_map(|(a, s, l)| Op::Gap(a, s, l)),
        1 => Just(Op::Publish),
        1 => any::<Index>().prop_map(Op::Unpublish),
    ]
}

fn resolve(model: &Model, a: &Addr) -> u64 {
    let near = |i: &Index, end: bool, d: i64| {
        if model.len() == 0 {
            return 0u64.saturating_add_signed(d);
        }
        let v = &model.values()[i.index(model.len())];
        (if end { v.end } else { v.start }).saturating_add_signed(d)
    };
    match a {
        Addr::Raw(x) => *x,
        Addr::Start(i, d) => near(i, false, *d),
        Addr::End(i, d) => near(i, true, *d),
    }
}

/// Where a value starting at the free address `s` may end, at most: the
/// next value's start, or the top of the address space.
fn limit(model: &Model, s: u64) -> u64 {
    model.next(s.saturating_add(1)).map_or(u64::MAX, |n| n.start)
}

struct State {
    tree: Tree<R>,
    model: Model,
    /// Published versions, each with the model of its time.
    saved: Vec<(Tree<R>, Model)>,
    tag: u64,
}

impl State {
    fn new() -> Self {
        State { tree: Tree::new(), model: Model::default(), saved: Vec::new(), tag: 0 }
    }

    fn insert(&mut self, start: u64, end: u64) {
        self.tag += 1;
        let v = R { start, end, tag: self.tag };
        self.tree.insert(v.clone());
        self.model.insert(&v);
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Insert(a, len) => {
                let s = resolve(&self.model, a);
                if s == u64::MAX {
                    // No value can start at the top: it would be empty.
                } else if self.model.find(s).is_some() {
                    if !self.tree.overlaps(s, s + 1) {
                        return Err(std::format!("overlaps({s:#x}, +1) is false, but the model has a value there"));
                    }
                } else {
                    let end = s.saturating_add(*len).min(limit(&self.model, s));
                    self.insert(s, end);
                }
            }
            Op::Remove(a) => {
                let s = resolve(&self.model, a);
                let (got, want) = (self.tree.remove(s), self.model.remove(s));
                if got != want {
                    return Err(std::format!("remove({s:#x}): tree {got:?}, model {want:?}"));
                }
            }
            Op::RemoveRun(a, n) => {
                let mut s = resolve(&self.model, a);
                for _ in 0..*n {
                    let Some(v) = self.model.next(s) else { break };
                    let got = self.tree.remove(v.start);
                    if got.as_ref() != Some(&v) {
                        return Err(std::format!("remove({:#x}): tree {got:?}, model {v:?}", v.start));
                    }
                    self.model.remove(v.start);
                    s = v.end;
                }
            }
            Op::Replace(a, len) => {
                let s = resolve(&self.model, a);
                self.tag += 1;
                let end = s.saturating_add(*len).min(limit(&self.model, s)).max(s.saturating_add(1));
                let v = R { start: s, end, tag: self.tag };
                let want = self.model.get(s);
                if want.is_some() {
                    self.model.remove(s);
                    self.model.insert(&v);
                }
                let got = self.tree.replace(v);
                if got != want {
                    return Err(std::format!("replace({s:#x}): tree {got:?}, model {want:?}"));
                }
            }
            Op::Query(a, len) => same_queries(&self.tree, &self.model, resolve(&self.model, a), *len)?,
            Op::Gap(a, span, len) => {
                let low = resolve(&self.model, a);
                same_gaps(&self.tree, &self.model, low, low.saturating_add(*span), *len)?;
                same_gaps(&self.tree, &self.model, 0, low, *len)?;
            }
            Op::Publish => self.saved.push((self.tree.clone(), self.model.clone())),
            Op::Unpublish(i) => {
                if !self.saved.is_empty() {
                    self.saved.swap_remove(i.index(self.saved.len()));
                }
            }
        }
        self.tree.check_invariants()?;
        if self.tree.len() != self.model.len() {
            return Err(std::format!("len: tree {}, model {}", self.tree.len(), self.model.len()));
        }
        Ok(())
    }

    /// Runs `ops`, then checks the tree and every kept version in full.
    fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        for (n, op) in ops.iter().enumerate() {
            self.step(op).map_err(|e| std::format!("step {n} ({op:?}): {e}"))?;
        }
        same_tree(&self.tree, &self.model, 40).map_err(|e| std::format!("at the end: {e}"))?;
        for (n, (tree, model)) in self.saved.iter().enumerate() {
            same_tree(tree, model, 40).map_err(|e| std::format!("kept version {n}: {e}"))?;
        }
        Ok(())
    }
}

/// A small splitmix64, for the prefill's lengths and order.
fn mix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `default` cases per property, or `PROPTEST_CASES` (for longer runs).
fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok());
    ProptestConfig::with_cases(n.unwrap_or(default))
}

proptest! {
    // Up to a few hundred values: one to three levels.
    #![proptest_config(cases(256))]

    #[test]
    fn ops_match_model(ops in prop::collection::vec(op(4096), 1..400)) {
        let mut st = State::new();
        if let Err(e) = st.run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

proptest! {
    // A prefilled tree of up to 1,500 values (up to four levels), built in
    // address order, in reverse, or shuffled, then random changes: rebalancing
    // at every level.
    #![proptest_config(cases(48))]

    #[test]
    fn ops_on_large_tree_match_model(
        count in 0..1500u64,
        order in 0..3u8,
        seed in any::<u64>(),
        ops in prop::collection::vec(op(16384), 1..300),
    ) {
        let mut st = State::new();
        let mut rng = seed;
        let mut slots: Vec<u64> = (0..count).collect();
        match order {
            0 => {}
            1 => slots.reverse(),
            _ => {
                for i in (1..slots.len()).rev() {
                    slots.swap(i, (mix(&mut rng) % (i as u64 + 1)) as usize);
                }
            }
        }
        for i in slots {
            // Slot i is [8i, 8i + 8); the value fills 1 to 8 bytes of it.
            st.insert(8 * i, 8 * i + 1 + mix(&mut rng) % 8);
        }
        if let Err(e) = same_tree(&st.tree, &st.model, 40) {
            prop_assert!(false, "after the prefill: {}", e);
        }
        if let Err(e) = st.run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}
