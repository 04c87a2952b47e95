//! A compact byte trie over the vocabulary, for the Unigram lattice: one walk from a start
//! position yields every vocabulary token that is a prefix there, shortest first (the order
//! in which the crate's trie yields them, which decides ties in the Viterbi search).

const NO_TOKEN: u32 = u32::MAX;
/// Nodes with more children than this get a dense 256-entry child table.
const DENSE_MIN: usize = 24;

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Children: `labels[first..first + count]` / `targets[..]`, or dense slot `dense` * 256.
    first: u32,
    count: u32,
    dense: u32,
    /// Id of the token that ends here, or `NO_TOKEN`.
    token: u32,
}

#[derive(Debug, Default)]
pub(crate) struct ByteTrie {
    nodes: Vec<Node>,
    labels: Vec<u8>,
    targets: Vec<u32>,
    dense: Vec<u32>,
}

const NO_DENSE: u32 = u32::MAX;
const NO_NODE: u32 = u32::MAX;

impl ByteTrie {
    /// Build from `(token bytes, id)`; for duplicate tokens the last id wins (as in the crate's
    /// token -> id map). The empty token never matches (the crate's trie never yields it).
    pub(crate) fn build(tokens: &[(&[u8], u32)]) -> ByteTrie {
        let mut sorted: Vec<(&[u8], u32)> =
            tokens.iter().copied().filter(|t| !t.0.is_empty()).collect();
        // Stable sort keeps duplicates in input order; the last one is kept below.
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut unique: Vec<(&[u8], u32)> = Vec::with_capacity(sorted.len());
        for t in sorted {
            match unique.last_mut() {
                Some(last) if last.0 == t.0 => last.1 = t.1,
                _ => unique.push(t),
            }
        }
        let mut trie = ByteTrie::default();
        trie.nodes.push(Node {
            first: 0,
            count: 0,
            dense: NO_DENSE,
            token: NO_TOKEN,
        });
        // Iterative construction: (node index, key range, depth).
        let mut stack = vec![(0usize, 0usize, unique.len(), 0usize)];
        while let Some((node, mut lo, hi, depth)) = stack.pop() {
            if lo < hi && unique[lo].0.len() == depth {
                trie.nodes[node].token = unique[lo].1;
                lo += 1;
            }
            // Group the remaining keys by their byte at `depth`.
            let mut groups: Vec<(u8, usize, usize)> = Vec::new();
            let mut i = lo;
            while i < hi {
                let b = unique[i].0[depth];
                let mut j = i + 1;
                while j < hi && unique[j].0[depth] == b {
                    j += 1;
                }
                groups.push((b, i, j));
                i = j;
            }
            let first = trie.labels.len() as u32;
            let dense = if groups.len() >= DENSE_MIN {
                let slot = (trie.dense.len() / 256) as u32;
                trie.dense.extend(std::iter::repeat_n(NO_NODE, 256));
                slot
            } else {
                NO_DENSE
            };
            for &(b, glo, ghi) in &groups {
                let child = trie.nodes.len();
                trie.nodes.push(Node {
                    first: 0,
                    count: 0,
                    dense: NO_DENSE,
                    token: NO_TOKEN,
                });
                trie.labels.push(b);
                trie.targets.push(child as u32);
                if dense != NO_DENSE {
                    trie.dense[dense as usize * 256 + usize::from(b)] = child as u32;
                }
                stack.push((child, glo, ghi, depth + 1));
            }
            let n = &mut trie.nodes[node];
            n.first = first;
            n.count = groups.len() as u32;
            n.dense = dense;
        }
        trie
    }

    #[inline]
    fn child(&self, node: u32, byte: u8) -> Option<u32> {
        let n = self.nodes.get(node as usize)?;
        if n.dense != NO_DENSE {
            let c = *self.dense.get(n.dense as usize * 256 + usize::from(byte))?;
            return (c != NO_NODE).then_some(c);
        }
        let range = n.first as usize..(n.first + n.count) as usize;
        let labels = self.labels.get(range.clone())?;
        let pos = labels.iter().position(|&l| l == byte)?;
        self.targets.get(range.start + pos).copied()
    }

    /// Call `found(len, id)` for every token that is a prefix of `bytes`, shortest first.
    #[inline]
    pub(crate) fn for_each_prefix(&self, bytes: &[u8], mut found: impl FnMut(usize, u32)) {
        let mut node = 0u32;
        for (i, &b) in bytes.iter().enumerate() {
            match self.child(node, b) {
                Some(c) => node = c,
                None => return,
            }
            let token = self.nodes[node as usize].token;
            if token != NO_TOKEN {
                found(i + 1, token);
            }
        }
    }

    /// Id of the token equal to `bytes`.
    pub(crate) fn get(&self, bytes: &[u8]) -> Option<u32> {
        let mut node = 0u32;
        for &b in bytes {
            node = self.child(node, b)?;
        }
        let token = self.nodes.get(node as usize)?.token;
        (token != NO_TOKEN).then_some(token)
    }
}
