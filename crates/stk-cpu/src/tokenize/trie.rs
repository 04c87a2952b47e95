//! A double-array trie over a vocabulary's byte strings. One walk from a position finds every
//! token that is a prefix there, shortest first (the Unigram lattice: the order in which the
//! crate's trie yields them, which decides ties in the Viterbi search), or the longest one
//! (WordPiece's greedy longest-match-first, which the crate finds by trying ever shorter
//! substrings). A step is two array reads: `next = base[node] + byte`, valid when
//! `check[next] == node`.

use std::collections::BTreeSet;

const NO_TOKEN: u32 = u32::MAX;
/// `check` of a free unit.
const FREE: u32 = u32::MAX;
/// `check` of the root (never a valid transition target).
const ROOT_CHECK: u32 = u32::MAX - 1;

/// 8 bytes, so that more of a large trie stays in cache (a walk is bound by memory latency).
#[derive(Debug, Clone, Copy)]
struct Unit {
    /// Children of this node are at `base + byte`; bit 31 (`ENDS_TOKEN`) is set when a token
    /// ends at this node (its id is then in `tokens`).
    base: u32,
    /// Parent of this unit, `FREE` or `ROOT_CHECK`.
    check: u32,
}

const ENDS_TOKEN: u32 = 1 << 31;

const EMPTY: Unit = Unit {
    base: 0,
    check: FREE,
};

#[derive(Debug)]
pub(crate) struct ByteTrie {
    units: Vec<Unit>,
    /// Per unit: id of the token that ends there, or `NO_TOKEN`.
    tokens: Vec<u32>,
}

impl ByteTrie {
    /// Build from `(token bytes, id)`; for duplicate tokens the last id wins (as in the crate's
    /// token -> id map). The empty token never matches (the crate's trie never yields it).
    /// `None` if the trie would not fit 32-bit indices.
    pub(crate) fn build(tokens: &[(&[u8], u32)]) -> Option<ByteTrie> {
        let mut sorted: Vec<(&[u8], u32)> =
            tokens.iter().copied().filter(|t| !t.0.is_empty()).collect();
        // Stable sort keeps duplicates in input order; the last one is kept below.
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut keys: Vec<(&[u8], u32)> = Vec::with_capacity(sorted.len());
        for t in sorted {
            match keys.last_mut() {
                Some(last) if last.0 == t.0 => last.1 = t.1,
                _ => keys.push(t),
            }
        }
        let mut units = vec![EMPTY; 256];
        units[0].check = ROOT_CHECK;
        // Free units that may still hold a node's first child (a unit that failed too often
        // leaves this set but stays free, which keeps building near-linear).
        let mut candidates: BTreeSet<usize> = (1..units.len()).collect();
        let mut failures = vec![0u8; units.len()];
        let mut labels: Vec<(u8, usize, usize)> = Vec::new();
        let mut dropped: Vec<usize> = Vec::new();
        // (unit, key range, depth): keys[lo..hi] all start with this node's path.
        let mut stack = vec![(0usize, 0usize, keys.len(), 0usize)];
        let mut ends: Vec<(usize, u32)> = Vec::with_capacity(keys.len());
        while let Some((node, mut lo, hi, depth)) = stack.pop() {
            if lo < hi && keys[lo].0.len() == depth {
                ends.push((node, keys[lo].1));
                lo += 1;
            }
            labels.clear();
            let mut i = lo;
            while i < hi {
                let b = keys[i].0[depth];
                let mut j = i + 1;
                while j < hi && keys[j].0[depth] == b {
                    j += 1;
                }
                labels.push((b, i, j));
                i = j;
            }
            let Some(&(first, _, _)) = labels.first() else {
                continue;
            };
            let first = usize::from(first);
            let base = loop {
                dropped.clear();
                let mut found = None;
                for &slot in candidates.range(first + 1..) {
                    let base = slot - first;
                    if labels.iter().all(|&(b, _, _)| {
                        units
                            .get(base + usize::from(b))
                            .is_none_or(|u| u.check == FREE)
                    }) {
                        found = Some(base);
                        break;
                    }
                    failures[slot] = failures[slot].saturating_add(1);
                    if failures[slot] > 32 {
                        dropped.push(slot);
                    }
                }
                for slot in &dropped {
                    candidates.remove(slot);
                }
                if let Some(base) = found {
                    break base;
                }
                // No candidate fits: add a block of free units.
                let old = units.len();
                units.resize(old + 256, EMPTY);
                failures.resize(old + 256, 0);
                candidates.extend(old..old + 256);
            };
            if units.len() < base + 256 {
                let old = units.len();
                units.resize(base + 256, EMPTY);
                failures.resize(base + 256, 0);
                candidates.extend(old..base + 256);
            }
            units[node].base = u32::try_from(base).ok().filter(|b| b & ENDS_TOKEN == 0)?;
            let parent = u32::try_from(node).ok()?;
            for &(b, glo, ghi) in &labels {
                let child = base + usize::from(b);
                units[child].check = parent;
                candidates.remove(&child);
                stack.push((child, glo, ghi, depth + 1));
            }
        }
        // Every used unit is below `max_base + 256`; keeping exactly that many means any
        // `base + byte` is inside the array.
        let max_base = units.iter().map(|u| u.base as usize).max().unwrap_or(0);
        units.resize(max_base + 256, EMPTY);
        let mut tokens = vec![NO_TOKEN; units.len()];
        for (node, id) in ends {
            units[node].base |= ENDS_TOKEN;
            tokens[node] = id;
        }
        Some(ByteTrie { units, tokens })
    }

    #[inline]
    fn child(&self, node: usize, byte: u8) -> Option<usize> {
        let next = (self.units.get(node)?.base & !ENDS_TOKEN) as usize + usize::from(byte);
        let unit = self.units.get(next)?;
        (unit.check as usize == node).then_some(next)
    }

    /// Id of the token ending at `node`, if any.
    #[inline]
    fn token_at(&self, node: usize) -> u32 {
        match self.units.get(node) {
            Some(u) if u.base & ENDS_TOKEN != 0 => {
                self.tokens.get(node).copied().unwrap_or(NO_TOKEN)
            }
            _ => NO_TOKEN,
        }
    }

    /// Call `found(len, id)` for every token that is a prefix of `bytes`, shortest first.
    #[inline]
    pub(crate) fn for_each_prefix(&self, bytes: &[u8], mut found: impl FnMut(usize, u32)) {
        let mut node = 0usize;
        for (i, &b) in bytes.iter().enumerate() {
            match self.child(node, b) {
                Some(c) => node = c,
                None => return,
            }
            let token = self.token_at(node);
            if token != NO_TOKEN {
                found(i + 1, token);
            }
        }
    }

    /// The longest token that is a prefix of `bytes`: `(length, id)`.
    #[inline]
    pub(crate) fn longest_prefix(&self, bytes: &[u8]) -> Option<(usize, u32)> {
        let mut node = 0usize;
        let mut best = None;
        for (i, &b) in bytes.iter().enumerate() {
            match self.child(node, b) {
                Some(c) => node = c,
                None => break,
            }
            let token = self.token_at(node);
            if token != NO_TOKEN {
                best = Some((i + 1, token));
            }
        }
        best
    }

    /// Id of the token equal to `bytes`.
    pub(crate) fn get(&self, bytes: &[u8]) -> Option<u32> {
        let mut node = 0usize;
        for &b in bytes {
            node = self.child(node, b)?;
        }
        let token = self.token_at(node);
        (token != NO_TOKEN).then_some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::ByteTrie;
    use rand::{Rng, SeedableRng};

    /// The trie against a plain scan of the token list, on random small alphabets (many
    /// shared prefixes, duplicates and the empty token).
    #[test]
    fn matches_a_naive_scan() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..40 {
            let alphabet: Vec<u8> = if round % 2 == 0 {
                b"ab\xc3\xa9z".to_vec()
            } else {
                (0..=255).collect()
            };
            let n = rng.gen_range(0..300);
            let tokens: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = rng.gen_range(0..6);
                    (0..len)
                        .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                        .collect()
                })
                .collect();
            let pairs: Vec<(&[u8], u32)> = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.as_slice(), i as u32))
                .collect();
            let trie = ByteTrie::build(&pairs).unwrap();
            // Last id wins for duplicates; the empty token never matches.
            let id_of = |key: &[u8]| {
                (!key.is_empty())
                    .then(|| pairs.iter().rev().find(|(t, _)| *t == key).map(|p| p.1))
                    .flatten()
            };
            for _ in 0..200 {
                let len = rng.gen_range(0..8);
                let text: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect();
                assert_eq!(trie.get(&text), id_of(&text));
                let mut expected = Vec::new();
                for end in 1..=text.len() {
                    if let Some(id) = id_of(&text[..end]) {
                        expected.push((end, id));
                    }
                }
                let mut got = Vec::new();
                trie.for_each_prefix(&text, |len, id| got.push((len, id)));
                assert_eq!(got, expected);
                assert_eq!(trie.longest_prefix(&text), expected.last().copied());
            }
        }
    }
}
