//! Fast path for `BertNormalizer` + `BertPreTokenizer` + `WordPiece` (BERT-style and
//! model2vec potion tokenizers): one pass over the text, no intermediate strings.

use std::cell::RefCell;
use std::collections::HashMap;

use super::bert::{unpack, BertCharTable, BertNormalizerConfig, CharKind, Mapped};
use super::trie::ByteTrie;

/// WordPiece settings and vocabulary.
pub(crate) struct WordPiece {
    /// Short vocabulary tokens by hash: most words are one token, found by one probe instead
    /// of a trie walk whose every byte is a dependent load.
    words: WordTable,
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
        // A word of BertPreTokenizer never holds ASCII punctuation unless it is that one char,
        // so such tokens ("##ing" and the like) would only take room in the cache. (Leaving a
        // token out only costs time: the trie finds every token. Every one-char token stays,
        // which `WordTable::has_every_char` counts on.)
        let can_be_words: Vec<(&[u8], u32)> = whole
            .iter()
            .copied()
            .filter(|(t, _)| t.len() == 1 || !t.iter().any(u8::is_ascii_punctuation))
            .collect();
        // Three independent builds, the largest (the trie of every token) beside the others:
        // model loading waits for this.
        let (whole, (continuing, words)) = rayon::join(
            || ByteTrie::build(&whole),
            || {
                (
                    ByteTrie::build(&continuing),
                    WordTable::build(&can_be_words),
                )
            },
        );
        Some(WordPiece {
            words,
            whole: whole?,
            continuing: continuing?,
            unk_id,
            max_input_chars_per_word,
        })
    }

    /// Greedy longest-match-first split of one pre-tokenized word (`chars` chars long),
    /// exactly as the crate's `WordPiece::tokenize`: the whole word becomes the unknown token
    /// when it is too long or some remainder has no matching piece. (The crate tries ever
    /// shorter substrings; the longest vocabulary prefix found by one trie walk is the same
    /// piece, as tokens are whole UTF-8 strings.)
    #[inline(always)]
    fn tokenize_word(&self, word: &[u8], chars: usize, out: &mut Vec<u32>) {
        // A word that is itself a token is its own longest first piece, and then the only one
        // (the common case, inlined; the rest out of line).
        // A one-char word that is not a token has no piece either (a token is whole UTF-8, so
        // none is a part of one char): it is the unknown token, as it is when too long.
        match self.words.get(word) {
            Some(id) if chars <= self.max_input_chars_per_word => out.push(id),
            None if chars == 1 && self.words.has_every_char => out.push(self.unk_id),
            _ => self.tokenize_pieces(word, chars, out),
        }
    }

    /// [`WordPiece::tokenize_word`] by trie walks.
    #[inline(never)]
    fn tokenize_pieces(&self, word: &[u8], chars: usize, out: &mut Vec<u32>) {
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

/// Longest token [`WordTable`] holds.
const WORD_TABLE_MAX_LEN: usize = 12;
/// Longest token of [`WordTable`]'s short half.
const SHORT_WORD_MAX_LEN: usize = 4;
/// Ids [`WordTable`] can hold (an id shares a `u32` with its token's length).
const WORD_TABLE_MAX_ID: u32 = (1 << 24) - 1;

/// A word of 5 to [`WORD_TABLE_MAX_LEN`] bytes as three integers, built from a few overlapping
/// little-endian loads at its start and end instead of a byte-by-byte copy. The loads cover
/// every byte for the word's length, and the length is part of the key, so two words have the
/// same key only when they are equal. A [`WordTable`] slot is a key whose `len_id` also holds
/// the token's id; 16 bytes, so a probe touches one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct WordKey {
    head: u64,
    /// The last four bytes of a word of 8 or more bytes, else 0.
    tail: u32,
    /// `len << 24`, plus the id in a table slot; 0 in an empty slot.
    len_id: u32,
}

impl WordKey {
    /// `None` unless `word` is 5 to [`WORD_TABLE_MAX_LEN`] bytes long.
    #[inline(always)]
    fn of(word: &[u8]) -> Option<WordKey> {
        let n = word.len();
        let le4 =
            |at: usize| u32::from_le_bytes([word[at], word[at + 1], word[at + 2], word[at + 3]]);
        let (head, tail) = match n {
            5..=7 => (u64::from(le4(0)) | u64::from(le4(n - 4)) << 32, 0),
            8..=WORD_TABLE_MAX_LEN => (u64::from(le4(0)) | u64::from(le4(4)) << 32, le4(n - 4)),
            _ => return None,
        };
        Some(WordKey {
            head,
            tail,
            len_id: (n as u32) << 24,
        })
    }
}

/// A slot of an open-addressing table with linear probing, keyed by `Key`, holding an id.
trait Slot: Copy {
    type Key: Copy;
    const EMPTY: Self;
    fn hash(key: &Self::Key) -> usize;
    fn filled(key: Self::Key, id: u32) -> Self;
    fn is_empty(&self) -> bool;
    /// The slot's id when it holds `key`.
    fn id_for(&self, key: &Self::Key) -> Option<u32>;
}

/// Spreads a 64-bit key over the table's index bits (Fibonacci hashing).
#[inline(always)]
fn fibonacci_hash(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
}

impl Slot for WordKey {
    type Key = WordKey;
    const EMPTY: WordKey = WordKey {
        head: 0,
        tail: 0,
        len_id: 0,
    };

    #[inline(always)]
    fn hash(key: &WordKey) -> usize {
        fibonacci_hash(key.head ^ u64::from(key.tail ^ key.len_id).rotate_left(29))
    }

    fn filled(key: WordKey, id: u32) -> WordKey {
        WordKey {
            len_id: key.len_id | id,
            ..key
        }
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len_id == 0
    }

    /// `key`'s `len_id` has no id.
    #[inline(always)]
    fn id_for(&self, key: &WordKey) -> Option<u32> {
        let holds =
            self.head == key.head && self.tail == key.tail && self.len_id >> 24 == key.len_id >> 24;
        holds.then_some(self.len_id & WORD_TABLE_MAX_ID)
    }
}

/// A [`WordTable`] short slot: a [`short_key`] in the low [`SHORT_ID_SHIFT`] bits, the id in
/// the top 24; 0 is an empty slot.
#[derive(Clone, Copy)]
struct ShortSlot(u64);

/// Where a short slot's id starts (below it: the word's bytes and length).
const SHORT_ID_SHIFT: u32 = 40;

/// A word of 1 to [`SHORT_WORD_MAX_LEN`] bytes with its length, as a short slot's low bits:
/// its bytes in the low 32 (loads that cover every byte, as in [`WordKey::of`]), its length
/// in the next 8.
#[inline(always)]
fn short_key(word: &[u8]) -> Option<u64> {
    let n = word.len();
    let bytes = match n {
        1..=3 => [word[0], word[n / 2], word[n - 1], 0],
        SHORT_WORD_MAX_LEN => [word[0], word[1], word[2], word[3]],
        _ => return None,
    };
    Some(u64::from(u32::from_le_bytes(bytes)) | (n as u64) << 32)
}

impl Slot for ShortSlot {
    type Key = u64;
    const EMPTY: ShortSlot = ShortSlot(0);

    #[inline(always)]
    fn hash(key: &u64) -> usize {
        fibonacci_hash(*key)
    }

    fn filled(key: u64, id: u32) -> ShortSlot {
        ShortSlot(key | u64::from(id) << SHORT_ID_SHIFT)
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.0 == 0
    }

    #[inline(always)]
    fn id_for(&self, key: &u64) -> Option<u32> {
        let key_mask = (1u64 << SHORT_ID_SHIFT) - 1;
        (self.0 & key_mask == *key).then_some((self.0 >> SHORT_ID_SHIFT) as u32)
    }
}

/// Slots per token at least (a power of two is taken above): probes stay short.
const WORD_TABLE_SPREAD: usize = 2;

/// An open-addressing hash table with linear probing over a power-of-two number of slots.
struct ProbeTable<S: Slot>(Vec<S>);

impl<S: Slot> ProbeTable<S> {
    /// The table of `entries`, whose keys must be distinct.
    fn build(entries: &[(S::Key, u32)]) -> ProbeTable<S> {
        let n = (entries.len() * WORD_TABLE_SPREAD)
            .next_power_of_two()
            .max(16);
        let mut slots = vec![S::EMPTY; n];
        for &(key, id) in entries {
            let mut i = S::hash(&key) & (n - 1);
            while !slots[i].is_empty() {
                i = (i + 1) & (n - 1);
            }
            slots[i] = S::filled(key, id);
        }
        ProbeTable(slots)
    }

    #[inline(always)]
    fn get(&self, key: &S::Key) -> Option<u32> {
        let mask = self.0.len() - 1;
        let mut i = S::hash(key) & mask;
        loop {
            let slot = &self.0[i];
            if let Some(id) = slot.id_for(key) {
                return Some(id);
            }
            if slot.is_empty() {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

/// Hash tables of the vocabulary's tokens of 1 to [`WORD_TABLE_MAX_LEN`] bytes (the first
/// piece of most words is the whole word, found by one probe instead of a trie walk whose
/// every byte is a dependent load). Words of up to 4 bytes, two thirds of English running
/// text, have a table of their own with 8-byte slots: a small table whose lines stay in the
/// cache while the embedding rows stream through it.
struct WordTable {
    short: ProbeTable<ShortSlot>,
    long: ProbeTable<WordKey>,
    /// Whether every one-char token is in the table (none has an id it cannot hold).
    has_every_char: bool,
}

impl WordTable {
    fn build(all: &[(&[u8], u32)]) -> WordTable {
        let tokens = || all.iter().filter(|&&(_, id)| id <= WORD_TABLE_MAX_ID);
        // Vocabulary tokens are distinct (they come from a map), so no key repeats.
        let short: Vec<(u64, u32)> = tokens()
            .filter_map(|&(token, id)| Some((short_key(token)?, id)))
            .collect();
        let long: Vec<(WordKey, u32)> = tokens()
            .filter_map(|&(token, id)| Some((WordKey::of(token)?, id)))
            .collect();
        WordTable {
            short: ProbeTable::build(&short),
            long: ProbeTable::build(&long),
            has_every_char: !all.iter().any(|&(t, id)| {
                id > WORD_TABLE_MAX_ID
                    && std::str::from_utf8(t).is_ok_and(|t| t.chars().count() == 1)
            }),
        }
    }

    /// Id of the token equal to `word`, if it is in the table.
    #[inline(always)]
    fn get(&self, word: &[u8]) -> Option<u32> {
        if word.len() <= SHORT_WORD_MAX_LEN {
            self.short.get(&short_key(word)?)
        } else {
            self.long.get(&WordKey::of(word)?)
        }
    }
}

/// Why the fast path did not produce ids for a text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NeedsReference;

/// The whole fast pipeline.
pub(crate) struct BertWordPiece {
    table: &'static BertCharTable,
    /// The ASCII bytes as runs see them; `None` when the table has no ASCII fast path.
    ascii_runs: Option<Box<AsciiRuns>>,
    model: WordPiece,
}

/// ASCII bytes by what they do inside a run of word bytes (indexed by any byte; non-ASCII
/// bytes are neither).
struct AsciiRuns {
    /// The normalized byte of a word char that stays one byte, else 0 (a run ends there).
    word_byte: [u8; 256],
    /// Whether the byte ends a word (whitespace or punctuation).
    separator: [bool; 256],
}

impl AsciiRuns {
    fn new(table: &BertCharTable) -> Option<Box<AsciiRuns>> {
        let ascii = table.ascii.as_ref()?;
        let mut runs = AsciiRuns {
            word_byte: [0; 256],
            separator: [false; 256],
        };
        for (b, &(kind, mapped)) in ascii.iter().enumerate() {
            match (kind, mapped) {
                (CharKind::Word, Some(m)) => runs.word_byte[b] = m,
                (CharKind::Space | CharKind::Punct, Some(_)) => runs.separator[b] = true,
                _ => {}
            }
        }
        Some(Box::new(runs))
    }

    /// End of the run of word bytes that starts at `start`, and whether every byte of it
    /// normalizes to itself.
    #[inline(always)]
    fn run_end(&self, bytes: &[u8], start: usize) -> (usize, bool) {
        let mut end = start;
        let mut unchanged = true;
        while let Some(&c) = bytes.get(end) {
            let m = self.word_byte[usize::from(c)];
            if m == 0 {
                break;
            }
            unchanged &= m == c;
            end += 1;
        }
        (end, unchanged)
    }
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
        let table = BertCharTable::get(cfg);
        BertWordPiece {
            table,
            ascii_runs: AsciiRuns::new(table),
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

    /// Tokenize the collected `word` (`chars` chars), if any, and start a new one.
    #[inline(always)]
    fn finish_word(&self, word: &mut Vec<u8>, chars: &mut usize, out: &mut Vec<u32>) {
        if !word.is_empty() {
            self.model.tokenize_word(word, *chars, out);
            word.clear();
            *chars = 0;
        }
    }

    /// Tokenize `c` as a word of its own (a punctuation char, a spaced CJK ideograph).
    #[inline(always)]
    fn tokenize_char(&self, c: char, out: &mut Vec<u32>) {
        let mut enc = [0u8; 4];
        self.model
            .tokenize_word(c.encode_utf8(&mut enc).as_bytes(), 1, out);
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
        let runs = self.ascii_runs.as_ref().filter(|_| !want_normalized);
        while i < bytes.len() {
            let b = bytes[i];
            if let Some(runs) = runs {
                // A run of ASCII word bytes at once: a word that is all lowercase ASCII and ends
                // here is tokenized where it lies in the text, without a copy.
                let (end, unchanged) = runs.run_end(bytes, i);
                if end > i {
                    let run = &bytes[i..end];
                    i = end;
                    let word_ends = bytes
                        .get(end)
                        .is_none_or(|&c| runs.separator[usize::from(c)]);
                    if s.word.is_empty() && unchanged && word_ends {
                        self.model.tokenize_word(run, run.len(), out);
                        if out.len() - base >= limit {
                            return Ok(());
                        }
                    } else {
                        s.word
                            .extend(run.iter().map(|&c| runs.word_byte[usize::from(c)]));
                        chars += run.len();
                    }
                    continue;
                }
            }
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
                        self.finish_word(&mut s.word, &mut chars, out);
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
                Mapped::Itself => {
                    if want_normalized {
                        s.normalized.push(c);
                    }
                    push_utf8(&mut s.word, c);
                    chars += 1;
                    continue;
                }
                Mapped::ItselfSpaced => {
                    if want_normalized {
                        s.normalized.extend([' ', c, ' ']);
                    }
                    self.finish_word(&mut s.word, &mut chars, out);
                    self.tokenize_char(c, out);
                    if out.len() - base >= limit {
                        return Ok(());
                    }
                    continue;
                }
            };
            for &p in mapped {
                let (o, kind) = unpack(p);
                if want_normalized {
                    s.normalized.push(o);
                }
                match kind {
                    CharKind::Word => {
                        push_utf8(&mut s.word, o);
                        chars += 1;
                    }
                    CharKind::Space | CharKind::Punct => {
                        self.finish_word(&mut s.word, &mut chars, out);
                        if kind == CharKind::Punct {
                            self.tokenize_char(o, out);
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

/// Append `c` in UTF-8 byte by byte (`extend_from_slice` of 1 to 4 bytes calls `memcpy`,
/// which showed at 2% of an encode of text with CJK sentences).
#[inline(always)]
fn push_utf8(word: &mut Vec<u8>, c: char) {
    let mut enc = [0u8; 4];
    for &b in c.encode_utf8(&mut enc).as_bytes() {
        word.push(b);
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

#[cfg(test)]
mod tests {
    use super::{WordPiece, WordTable, WORD_TABLE_MAX_ID};
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    /// One-char words, with a one-char token the table can hold or not (an id too large):
    /// a char that is no token is the unknown token either way.
    #[test]
    fn one_char_words() {
        for big_id in [7, WORD_TABLE_MAX_ID + 1] {
            let vocab: HashMap<String, u32> = [("[UNK]", 0), ("a", 1), ("\u{4e2d}", big_id)]
                .map(|(t, id)| (t.to_string(), id))
                .into();
            let model = WordPiece::new(&vocab, "[UNK]", "##", 100).unwrap();
            assert_eq!(model.words.has_every_char, big_id <= WORD_TABLE_MAX_ID);
            let mut ids = Vec::new();
            for word in ["\u{4e2d}", "\u{6587}", "a", "b", "#"] {
                model.tokenize_word(word.as_bytes(), 1, &mut ids);
            }
            assert_eq!(ids, [big_id, 0, 1, 0, 0], "one-char token id {big_id}");
        }
    }

    /// The table against a map, on words over two-letter alphabets (many words that share
    /// their first and last bytes, and lengths on both sides of every key class: 1-4, 5-7,
    /// 8-12 and too long).
    #[test]
    fn word_table_matches_a_map() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for alphabet in [&b"ab"[..], b"a\x00", b"\xc3\xa9z#"] {
            let word = |rng: &mut rand::rngs::StdRng| -> Vec<u8> {
                let len = rng.gen_range(0..15);
                (0..len)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect()
            };
            let vocab: HashMap<Vec<u8>, u32> = (0..2000).map(|i| (word(&mut rng), i)).collect();
            let pairs: Vec<(&[u8], u32)> =
                vocab.iter().map(|(t, &id)| (t.as_slice(), id)).collect();
            let table = WordTable::build(&pairs);
            for _ in 0..20_000 {
                let w = word(&mut rng);
                let expected = vocab
                    .get(&w)
                    .copied()
                    .filter(|_| (1..=super::WORD_TABLE_MAX_LEN).contains(&w.len()));
                assert_eq!(table.get(&w), expected, "word {w:?}");
            }
        }
    }
}
