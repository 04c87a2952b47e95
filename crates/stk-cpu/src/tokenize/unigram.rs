//! Fast path for `Precompiled` (SentencePiece charsmap) + `WhitespaceSplit` +
//! `Metaspace(prepend always, split)` + `Unigram` (model2vec tokenlearn / SentencePiece
//! tokenizers), streaming from the text to ids with per-thread buffers.
//!
//! Normalization calls the same charsmap lookup (`spm_precompiled::Precompiled::transform`)
//! and the same grapheme segmentation (`unicode-segmentation`) as the crate, with per-char
//! results cached for ASCII and the Basic Multilingual Plane. The Viterbi search visits
//! candidates in the crate's order and compares scores the same way, so ties resolve alike.

use std::cell::RefCell;
use std::sync::OnceLock;

use tokenizers::normalizers::precompiled::Precompiled;
use unicode_segmentation::UnicodeSegmentation;

use super::trie::ByteTrie;
use super::wordpiece::NeedsReference;

/// Normalized forms of the 256 single chars `block << 8 ..`.
struct CharsmapBlock {
    /// Per char: `start << 8 | len` into `pool`, or `u32::MAX` (not cached).
    entries: Vec<u32>,
    pool: String,
}

/// The charsmap normalizer, with single-char results cached per 256-char block of the Basic
/// Multilingual Plane on first use.
pub(crate) struct CharsmapNormalizer {
    charsmap: Option<Precompiled>,
    blocks: Vec<OnceLock<CharsmapBlock>>,
    /// Normalized form of the grapheme "\r\n" (the only multi-char ASCII grapheme).
    crlf: String,
}

impl CharsmapNormalizer {
    /// `None` charsmap: no normalizer (identity).
    pub(crate) fn new(charsmap: Option<Precompiled>) -> CharsmapNormalizer {
        let mut n = CharsmapNormalizer {
            charsmap,
            blocks: (0..256).map(|_| OnceLock::new()).collect(),
            crlf: String::new(),
        };
        let mut crlf = String::new();
        n.grapheme("\r\n", &mut crlf);
        n.crlf = crlf;
        n
    }

    fn build_block(&self, block: u32) -> CharsmapBlock {
        let mut entries = Vec::with_capacity(256);
        let mut pool = String::new();
        let mut one = [0u8; 4];
        for code in block << 8..(block + 1) << 8 {
            let start = pool.len() as u32;
            if let Some(c) = char::from_u32(code) {
                pool.push_str(self.single_char(c.encode_utf8(&mut one)));
            }
            let len = pool.len() as u32 - start;
            // Charsmap outputs are short; a longer one is just not cached.
            entries.push(if len < 256 {
                start << 8 | len
            } else {
                u32::MAX
            });
        }
        CharsmapBlock { entries, pool }
    }

    fn transform<'a>(&'a self, chunk: &str) -> Option<&'a str> {
        self.charsmap.as_ref().and_then(|p| p.transform(chunk))
    }

    /// Normalized form of a one-char string (the crate: the charsmap entry, else the char).
    fn single_char<'a>(&'a self, one: &'a str) -> &'a str {
        self.transform(one).unwrap_or(one)
    }

    /// The crate's rule for one grapheme: the whole grapheme if it is shorter than 6 bytes
    /// and the charsmap maps it, else char by char.
    fn grapheme(&self, g: &str, out: &mut String) {
        if g.len() < 6 {
            if let Some(n) = self.transform(g) {
                out.push_str(n);
                return;
            }
        }
        for (i, c) in g.char_indices() {
            let part = &g[i..i + c.len_utf8()];
            out.push_str(self.single_char(part));
        }
    }

    /// Normalized form of a single-char grapheme, from the cache when possible.
    #[inline]
    fn cached<'a>(&'a self, one: &'a str, c: char) -> &'a str {
        let code = c as u32;
        if let Some(cell) = self.blocks.get((code >> 8) as usize) {
            let block = cell.get_or_init(|| self.build_block(code >> 8));
            let e = block.entries[(code & 0xFF) as usize];
            if e != u32::MAX {
                let start = (e >> 8) as usize;
                if let Some(s) = block.pool.get(start..start + (e & 0xFF) as usize) {
                    return s;
                }
            }
        }
        self.single_char(one)
    }

    /// Normalize `text` into `out` (cleared first).
    pub(crate) fn normalize(&self, text: &str, out: &mut String) {
        out.clear();
        if self.charsmap.is_none() {
            out.push_str(text);
            return;
        }
        if text.is_ascii() {
            // ASCII graphemes are single chars, except "\r\n".
            let bytes = text.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    out.push_str(&self.crlf);
                    i += 2;
                    continue;
                }
                let one = &text[i..i + 1];
                out.push_str(self.cached(one, char::from(bytes[i])));
                i += 1;
            }
            return;
        }
        for g in text.graphemes(true) {
            let mut chars = g.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => out.push_str(self.cached(g, c)),
                _ => self.grapheme(g, out),
            }
        }
    }
}

/// Unigram vocabulary and scores.
pub(crate) struct UnigramModel {
    trie: ByteTrie,
    scores: Vec<f64>,
    unk_id: u32,
    unk_score: f64,
}

impl UnigramModel {
    /// `None` when the vocabulary is empty or `unk_id` is out of range (the crate refuses or
    /// errors on those).
    pub(crate) fn new(vocab: &[(String, f64)], unk_id: usize) -> Option<UnigramModel> {
        if unk_id >= vocab.len() {
            return None;
        }
        let ids: Vec<(&[u8], u32)> = vocab
            .iter()
            .enumerate()
            .map(|(id, (t, _))| Some((t.as_bytes(), u32::try_from(id).ok()?)))
            .collect::<Option<_>>()?;
        let min_score = vocab.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
        Some(UnigramModel {
            trie: ByteTrie::build(&ids)?,
            scores: vocab.iter().map(|v| v.1).collect(),
            unk_id: u32::try_from(unk_id).ok()?,
            // The crate's K_UNK_PENALTY.
            unk_score: min_score - 10.0,
        })
    }

    /// Best segmentation of one pre-tokenized piece (the crate's `encode_optimized` followed
    /// by its token -> id lookup, unknown runs fused into one token).
    fn tokenize_piece(
        &self,
        piece: &str,
        s: &mut Lattice,
        out: &mut Vec<u32>,
    ) -> Result<(), NeedsReference> {
        let bytes = piece.as_bytes();
        let size = bytes.len();
        s.score.clear();
        s.score.resize(size + 1, 0.0);
        s.start.clear();
        s.start.resize(size + 1, u32::MAX);
        s.id.clear();
        s.id.resize(size + 1, 0);
        let mut pos = 0;
        for c in piece.chars() {
            let mblen = c.len_utf8();
            let here = s.score[pos];
            let mut has_single = false;
            let (score, start, id) = (&mut s.score, &mut s.start, &mut s.id);
            self.trie.for_each_prefix(&bytes[pos..], |len, tok| {
                let end = pos + len;
                let candidate = self.scores[tok as usize] + here;
                if start[end] == u32::MAX || candidate > score[end] {
                    score[end] = candidate;
                    start[end] = pos as u32;
                    id[end] = tok;
                }
                has_single |= len == mblen;
            });
            if !has_single {
                let end = pos + mblen;
                let candidate = self.unk_score + here;
                if start[end] == u32::MAX || candidate > score[end] {
                    score[end] = candidate;
                    start[end] = pos as u32;
                    id[end] = self.unk_id;
                }
            }
            pos += mblen;
        }
        // Backtrack, then emit in order, fusing consecutive unknown nodes. (Every char
        // boundary is reached, by a token or the unknown node; a gap would be a bug, and the
        // crate then encodes the text.)
        s.path.clear();
        let mut end = size;
        while end > 0 {
            let start = s.start[end] as usize;
            if start >= end {
                return Err(NeedsReference);
            }
            s.path.push((start as u32, end as u32, s.id[end]));
            end = start;
        }
        let mut unk_run: Option<(usize, usize)> = None;
        for &(start, end, id) in s.path.iter().rev() {
            let (start, end) = (start as usize, end as usize);
            if id == self.unk_id {
                unk_run = Some(match unk_run {
                    Some((a, _)) => (a, end),
                    None => (start, end),
                });
                continue;
            }
            if let Some((a, b)) = unk_run.take() {
                out.push(self.trie.get(&bytes[a..b]).unwrap_or(self.unk_id));
            }
            out.push(id);
        }
        if let Some((a, b)) = unk_run {
            out.push(self.trie.get(&bytes[a..b]).unwrap_or(self.unk_id));
        }
        Ok(())
    }
}

/// Viterbi buffers.
#[derive(Default)]
struct Lattice {
    score: Vec<f64>,
    start: Vec<u32>,
    id: Vec<u32>,
    path: Vec<(u32, u32, u32)>,
}

#[derive(Default)]
struct Scratch {
    normalized: String,
    piece: String,
    lattice: Lattice,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The whole fast pipeline.
pub(crate) struct MetaspaceUnigram {
    pub(crate) normalizer: CharsmapNormalizer,
    pub(crate) replacement: char,
    pub(crate) model: UnigramModel,
}

impl MetaspaceUnigram {
    /// Append the ids of `text` to `out`, stopping once at least `max_tokens` ids were added
    /// (the caller truncates); `normalized_check` must accept the normalized text.
    pub(crate) fn encode(
        &self,
        text: &str,
        max_tokens: usize,
        out: &mut Vec<u32>,
        normalized_check: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<(), NeedsReference> {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            self.normalizer.normalize(text, &mut s.normalized);
            if let Some(check) = normalized_check {
                if !check(&s.normalized) {
                    return Err(NeedsReference);
                }
            }
            let base = out.len();
            // WhitespaceSplit, then per word: prepend the replacement unless the word starts
            // with it, and split before every replacement char (MergedWithNext).
            let Scratch {
                normalized,
                piece,
                lattice,
            } = s;
            piece.clear();
            for c in normalized.chars() {
                if c.is_whitespace() {
                    if !piece.is_empty() {
                        self.model.tokenize_piece(piece, lattice, out)?;
                        piece.clear();
                        if out.len() - base >= max_tokens {
                            return Ok(());
                        }
                    }
                    continue;
                }
                if c == self.replacement || piece.is_empty() {
                    if !piece.is_empty() {
                        self.model.tokenize_piece(piece, lattice, out)?;
                        piece.clear();
                    }
                    piece.push(self.replacement);
                    if c == self.replacement {
                        continue;
                    }
                }
                piece.push(c);
            }
            if !piece.is_empty() {
                self.model.tokenize_piece(piece, lattice, out)?;
            }
            Ok(())
        })
    }
}
