//! Test-only toolkit of Plum's fuzz tests (run by `cargo test` within a small budget): mutations
//! of valid encodings (bit flips, MessagePack markers, huge lengths, truncation, insertion,
//! duplication, splicing from other seeds), strategies that stay near real inputs, and a
//! bounded runner that reports the shrunk input.

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// Bytes that mean something to MessagePack, or are edge values.
pub const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x91, 0x9f, 0xa0, 0xa1, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6,
    0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9,
    0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xfe, 0xff,
];

#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Interesting(Index, Index),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
    Duplicate(Index, usize, Index),
    /// Overwrites with 0xff bytes: lengths and counts become huge.
    Huge(Index, usize),
    /// Copies a slice of another seed in (cross-over).
    Splice(Index, Index, Index, usize),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(i, b)| Mutation::Interesting(i, b)),
        2 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1usize..32, any::<Index>()).prop_map(|(f, n, t)| Mutation::Duplicate(f, n, t)),
        1 => (any::<Index>(), 1usize..5).prop_map(|(i, n)| Mutation::Huge(i, n)),
        1 => (any::<Index>(), any::<Index>(), any::<Index>(), 1usize..48)
            .prop_map(|(a, s, f, n)| Mutation::Splice(a, s, f, n)),
    ]
}

/// A position in `0..len` (0 for an empty buffer).
pub fn pos(i: &Index, len: usize) -> usize {
    if len == 0 { 0 } else { i.index(len) }
}

pub fn mutate(seed: &[u8], mutations: &[Mutation], seeds: &[Vec<u8>]) -> Vec<u8> {
    mutate_with(seed, mutations, seeds, INTERESTING)
}

/// [`mutate`] with another set of bytes that mean something (JSON's, say) and, for splices, the
/// other seeds (none: no splicing).
pub fn mutate_with(seed: &[u8], mutations: &[Mutation], seeds: &[Vec<u8>], interesting: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in mutations {
        let len = b.len();
        match m {
            Mutation::Flip(i, bit) if len > 0 => b[pos(i, len)] ^= 1 << bit,
            Mutation::Set(i, v) if len > 0 => b[pos(i, len)] = *v,
            Mutation::Interesting(i, v) if len > 0 && !interesting.is_empty() => {
                b[pos(i, len)] = interesting[v.index(interesting.len())]
            }
            Mutation::Insert(i, bytes) => {
                let at = pos(i, len + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let at = pos(i, len);
                b.drain(at..(at + n).min(len));
            }
            Mutation::Truncate(i) => b.truncate(pos(i, len + 1)),
            Mutation::Duplicate(from, n, to) if len > 0 => {
                let from = pos(from, len);
                let slice = b[from..(from + n).min(len)].to_vec();
                let to = pos(to, len + 1);
                b.splice(to..to, slice);
            }
            Mutation::Huge(i, n) if len > 0 => {
                let at = pos(i, len);
                let end = (at + n).min(len);
                b[at..end].iter_mut().for_each(|x| *x = 0xff);
            }
            Mutation::Splice(at, s, from, n) if !seeds.is_empty() => {
                let other = &seeds[s.index(seeds.len())];
                if !other.is_empty() {
                    let from = pos(from, other.len());
                    let slice = &other[from..(from + n).min(other.len())];
                    let at = pos(at, len + 1);
                    b.splice(at..at, slice.iter().copied());
                }
            }
            _ => {}
        }
    }
    b
}

/// Inputs near `seeds`: mostly mutated seeds, some seeds cut and continued at random, some
/// random bytes, a few seeds as they are.
pub fn near(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    assert!(!seeds.is_empty());
    let seeds = Arc::new(seeds);
    let (a, b, c) = (seeds.clone(), seeds.clone(), seeds.clone());
    prop_oneof![
        12 => (any::<Index>(), vec(mutation(), 1..6))
            .prop_map(move |(s, m)| mutate(&a[s.index(a.len())], &m, &a)),
        2 => (any::<Index>(), any::<Index>(), vec(any::<u8>(), 0..16)).prop_map(move |(s, cut, tail)| {
            let seed = &b[s.index(b.len())];
            let mut out = seed[..pos(&cut, seed.len() + 1)].to_vec();
            out.extend(tail);
            out
        }),
        2 => vec(any::<u8>(), 0..96),
        1 => any::<Index>().prop_map(move |s| c[s.index(c.len())].clone()),
    ]
    .boxed()
}

/// Runs `check` on `cases` inputs from `strategy`; a failure (an error or a panic) is shrunk
/// and reported with the smallest input found.
pub fn fuzz<S: Strategy>(what: &str, cases: u32, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 2048, ..Config::default() };
    let mut runner = TestRunner::new(config);
    match runner.run(&strategy, check) {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            let mut shown = format!("{input:?}");
            if shown.len() > 8000 {
                shown = format!("{}... ({} bytes)", shown.chars().take(8000).collect::<String>(), shown.len());
            }
            panic!("{what}: {why}\nminimal input: {shown}")
        }
        Err(e) => panic!("{what}: {e}"),
    }
}
