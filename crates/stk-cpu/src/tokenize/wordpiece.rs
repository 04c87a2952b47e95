//! Fast path for `BertNormalizer` + `BertPreTokenizer` + `WordPiece` (BERT-style and
//! model2vec potion tokenizers): one pass over the text, no intermediate strings.

use std::cell::RefCell;
use std::collections::HashMap;

use super::bert::{unpack, BertCharTable, BertNormalizerConfig, CharKind, Mapped};
use super::trie::ByteTrie;

/// WordPiece settings and vocabulary.
pub(crate) struct WordPiece {
    /// Every vocabulary token (for the first piece of a word).
    whole: ByteTrie,
    /// Tokens that start with the continuing-subword prefix, prefix removed.
    continuing: ByteTrie,
    unk_id: u32,
    max_input_chars_per_word: usize,
}

impl WordPiece {
    /// `None` when the unknown token is not in the vocabulary (the crate then errors on an
    /// unknown word, so the crate must handle such a tokenizer).
    pub(crate) fn new(
        vocab: &HashMap<String, u32>,
        unk_token: &str,
        continuing_subword_prefix: &str,
        max_input_chars_per_word: usize,
    ) -> Option<WordPiece> {
        let unk_id = *vocab.get(unk_token)?;
        let whole: Vec<(&[u8], u32)> = vocab.iter().map(|(t, &id)| (t.as_bytes(), id)).collect();
        let continuing: Vec<(&[u8], u32)> = vocab
            .iter()
            .filter_map(|(t, &id)| {
                Some((t.strip_prefix(continuing_subword_prefix)?.as_bytes(), id))
            })
            .collect();
        Some(WordPiece {
            whole: ByteTrie::build(&whole)?,
            continuing: ByteTrie::build(&continuing)?,
            unk_id,
            max_input_chars_per_word,
        })
    }

    /// Greedy longest-match-first split of one pre-tokenized word (`chars` chars long),
    /// exactly as the crate's `WordPiece::tokenize`: the whole word becomes the unknown token
    /// when it is too long or some remainder has no matching piece. (The crate tries ever
    /// shorter substrings; the longest vocabulary prefix found by one trie walk is the same
    /// piece, as tokens are whole UTF-8 strings.)
    #[inline]
    fn tokenize_word(&self, word: &[u8], chars: usize, out: &mut Vec<u32>) {
        if chars > self.max_input_chars_per_word {
            out.push(self.unk_id);
            return;
        }
        let mark = out.len();
        let mut start = 0;
        while start < word.len() {
            let trie = if start == 0 {
                &self.whole
            } else {
                &self.continuing
            };
            // The trie never yields the empty token, and the crate cannot match it either.
            match word.get(start..).and_then(|rest| trie.longest_prefix(rest)) {
                Some((len, id)) => {
                    out.push(id);
                    start += len;
                }
                None => {
                    out.truncate(mark);
                    out.push(self.unk_id);
                    return;
                }
            }
        }
    }
}

/// Why the fast path did not produce ids for a text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NeedsReference;

/// The whole fast pipeline.
pub(crate) struct BertWordPiece {
    table: &'static BertCharTable,
    model: WordPiece,
}

/// Per-thread scratch buffers, reused across texts.
#[derive(Default)]
struct Scratch {
    word: Vec<u8>,
    astral: Vec<u32>,
    normalized: String,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl BertWordPiece {
    pub(crate) fn new(cfg: BertNormalizerConfig, model: WordPiece) -> BertWordPiece {
        BertWordPiece {
            table: BertCharTable::get(cfg),
            model,
        }
    }

    /// Append the ids of `text` to `out`, stopping once at least `max_tokens` ids were added
    /// (the caller truncates). With `normalized_check`, the whole text is normalized (never
    /// cut short) and the check must accept the normalized text (it looks for added tokens
    /// that match after normalization).
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
            self.encode_with(text, max_tokens, normalized_check.is_some(), out, s)?;
            match normalized_check {
                Some(check) if !check(&s.normalized) => Err(NeedsReference),
                _ => Ok(()),
            }
        })
    }

    fn encode_with(
        &self,
        text: &str,
        max_tokens: usize,
        want_normalized: bool,
        out: &mut Vec<u32>,
        s: &mut Scratch,
    ) -> Result<(), NeedsReference> {
        let base = out.len();
        let limit = if want_normalized {
            usize::MAX
        } else {
            max_tokens
        };
        s.word.clear();
        s.normalized.clear();
        let mut chars = 0usize;
        let bytes = text.as_bytes();
        let mut i = 0;
        let ascii = self.table.ascii.as_ref();
        while i < bytes.len() {
            let b = bytes[i];
            if let (true, Some(ascii)) = (b < 0x80, ascii) {
                i += 1;
                let (kind, mapped) = ascii[usize::from(b)];
                let Some(m) = mapped else { continue };
                if want_normalized {
                    s.normalized.push(char::from(m));
                }
                match kind {
                    CharKind::Word => {
                        s.word.push(m);
                        chars += 1;
                    }
                    CharKind::Space => {
                        if !s.word.is_empty() {
                            self.model.tokenize_word(&s.word, chars, out);
                            s.word.clear();
                            chars = 0;
                            if out.len() - base >= limit {
                                return Ok(());
                            }
                        }
                    }
                    CharKind::Punct => {
                        if !s.word.is_empty() {
                            self.model.tokenize_word(&s.word, chars, out);
                            s.word.clear();
                            chars = 0;
                        }
                        self.model.tokenize_word(&[m], 1, out);
                        if out.len() - base >= limit {
                            return Ok(());
                        }
                    }
                }
                continue;
            }
            // Decode one char (the text is valid UTF-8).
            let len = utf8_len(b);
            let Some(c) = text.get(i..i + len).and_then(|t| t.chars().next()) else {
                return Err(NeedsReference);
            };
            i += len;
            let mapped = match self.table.map(c, &mut s.astral) {
                Mapped::Sensitive => return Err(NeedsReference),
                Mapped::Chars(m) => m,
            };
            for &p in mapped {
                let (o, kind) = unpack(p);
                if want_normalized {
                    s.normalized.push(o);
                }
                match kind {
                    CharKind::Word => {
                        let mut enc = [0u8; 4];
                        s.word.extend_from_slice(o.encode_utf8(&mut enc).as_bytes());
                        chars += 1;
                    }
                    CharKind::Space | CharKind::Punct => {
                        if !s.word.is_empty() {
                            self.model.tokenize_word(&s.word, chars, out);
                            s.word.clear();
                            chars = 0;
                        }
                        if kind == CharKind::Punct {
                            let mut enc = [0u8; 4];
                            self.model
                                .tokenize_word(o.encode_utf8(&mut enc).as_bytes(), 1, out);
                        }
                    }
                }
            }
            if out.len() - base >= limit && s.word.is_empty() {
                return Ok(());
            }
        }
        if !s.word.is_empty() {
            self.model.tokenize_word(&s.word, chars, out);
            s.word.clear();
        }
        Ok(())
    }
}

/// Length of the UTF-8 sequence that starts with `lead`.
#[inline]
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}
