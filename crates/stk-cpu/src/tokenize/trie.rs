//! A double-array trie over a vocabulary's byte strings. One walk from a position finds every
//! token that is a prefix there, shortest first (the Unigram lattice: the order in which the
//! crate's trie yields them, which decides ties in the Viterbi search), or the longest one
//! (WordPiece's greedy longest-match-first, which the crate finds by trying ever shorter
//! substrings). A step is two array reads: `next = base[node] + byte`, valid when
//! `check[next] == node`.

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

/// A set of unit indices as a two-level bitmap: the build asks for the first free unit at or
/// after an index, many times per node, and the members thin out behind the filled front of
/// the array; a summary bit per 64-bit word skips 4,096 units per load where words are empty.
#[derive(Default)]
struct UnitSet {
    words: Vec<u64>,
    /// Bit `j` of `summary[k]`: whether `words[64 * k + j]` has a member.
    summary: Vec<u64>,
}

impl UnitSet {
    fn insert_range(&mut self, range: std::ops::Range<usize>) {
        let words = range.end.div_ceil(64);
        if self.words.len() < words {
            self.words.resize(words, 0);
            self.summary.resize(words.div_ceil(64), 0);
        }
        for i in range {
            self.words[i / 64] |= 1 << (i % 64);
            self.summary[i / 4096] |= 1 << (i / 64 % 64);
        }
    }

    fn remove(&mut self, i: usize) {
        let Some(word) = self.words.get_mut(i / 64) else {
            return;
        };
        *word &= !(1 << (i % 64));
        if *word == 0 {
            self.summary[i / 4096] &= !(1 << (i / 64 % 64));
        }
    }

    /// The smallest member `>= i`.
    fn first_from(&self, i: usize) -> Option<usize> {
        let w = i / 64;
        let bits = self.words.get(w)? & (u64::MAX << (i % 64));
        if bits != 0 {
            return Some(w * 64 + bits.trailing_zeros() as usize);
        }
        // The first word after `w` with a member, found through the summary.
        let next = w + 1;
        let mut k = next / 64;
        let mut marks = self.summary.get(k)? & (u64::MAX << (next % 64));
        while marks == 0 {
            k += 1;
            marks = *self.summary.get(k)?;
        }
        let w = k * 64 + marks.trailing_zeros() as usize;
        Some(w * 64 + self.words[w].trailing_zeros() as usize)
    }
}

impl ByteTrie {
    /// Build from `(token bytes, id)`; for duplicate tokens the last id wins (as in the crate's
    /// token -> id map). The empty token never matches (the crate's trie never yields it).
    /// `None` if the trie would not fit 32-bit indices.
    pub(crate) fn build(tokens: &[(&[u8], u32)]) -> Option<ByteTrie> {
        // Each token with its first 8 bytes as a big-endian integer (zero-padded): integer
        // order is byte order wherever those differ, so most comparisons are one `cmp`.
        let mut sorted: Vec<(u64, &[u8], u32)> = tokens
            .iter()
            .filter(|t| !t.0.is_empty())
            .map(|&(token, id)| {
                let mut head = [0u8; 8];
                let n = token.len().min(8);
                head[..n].copy_from_slice(&token[..n]);
                (u64::from_be_bytes(head), token, id)
            })
            .collect();
        // Stable sort keeps duplicates in input order; the last one is kept below.
        sorted.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let mut keys: Vec<(&[u8], u32)> = Vec::with_capacity(sorted.len());
        for (_, token, id) in sorted {
            let t = (token, id);
            match keys.last_mut() {
                Some(last) if last.0 == t.0 => last.1 = t.1,
                _ => keys.push(t),
            }
        }
        let mut units = vec![EMPTY; 256];
        units[0].check = ROOT_CHECK;
        // Free units that may still hold a node's first child (a unit that failed too often
        // leaves this set but stays free, which keeps building near-linear).
        let mut candidates = UnitSet::default();
        candidates.insert_range(1..units.len());
        let mut failures = vec![0u8; units.len()];
        let mut labels: Vec<(u8, usize, usize)> = Vec::new();
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
            let fits = |units: &[Unit], base: usize| {
                labels.iter().all(|&(b, _, _)| {
                    units
                        .get(base + usize::from(b))
                        .is_none_or(|u| u.check == FREE)
                })
            };
            let base = loop {
                let mut next = candidates.first_from(first + 1);
                while let Some(slot) = next {
                    if fits(&units, slot - first) {
                        break;
                    }
                    failures[slot] = failures[slot].saturating_add(1);
                    if failures[slot] > 32 {
                        candidates.remove(slot);
                    }
                    next = candidates.first_from(slot + 1);
                }
                if let Some(slot) = next {
                    break slot - first;
                }
                // No candidate fits: add a block of free units.
                let old = units.len();
                units.resize(old + 256, EMPTY);
                failures.resize(old + 256, 0);
                candidates.insert_range(old..old + 256);
            };
            if units.len() < base + 256 {
                let old = units.len();
                units.resize(base + 256, EMPTY);
                failures.resize(base + 256, 0);
                candidates.insert_range(old..base + 256);
            }
            units[node].base = u32::try_from(base).ok().filter(|b| b & ENDS_TOKEN == 0)?;
            let parent = u32::try_from(node).ok()?;
            for &(b, glo, ghi) in &labels {
                let child = base + usize::from(b);
                units[child].check = parent;
                candidates.remove(child);
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
    use super::{ByteTrie, UnitSet};
    use rand::{Rng, SeedableRng};

    /// The bitmap against a sorted list, across word boundaries and past its end.
    #[test]
    fn unit_set_finds_the_next_member() {
        let mut set = UnitSet::default();
        set.insert_range(3..70);
        set.insert_range(130..131);
        // Members a summary word (4,096 units) or more apart.
        set.insert_range(9_000..9_001);
        set.insert_range(69_999..70_002);
        for gone in [3, 63, 64, 69, 70_000] {
            set.remove(gone);
        }
        set.remove(100_000);
        let members: Vec<usize> = (4..63)
            .chain(65..69)
            .chain([130, 9_000, 69_999, 70_001])
            .collect();
        for i in (0..200).chain(8_990..9_010).chain(69_990..70_010) {
            let want = members.iter().copied().find(|&m| m >= i);
            assert_eq!(set.first_from(i), want, "first member from {i}");
        }
    }

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
