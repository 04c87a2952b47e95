//! The `BertNormalizer` + `BertPreTokenizer` front end, as a per-character table.
//!
//! The crate normalizes the whole text (clean control/whitespace chars, space out CJK
//! ideographs, NFD + drop non-spacing marks, lowercase) and then splits it on whitespace
//! and isolates punctuation. Every step except NFD's canonical reordering works char by char,
//! so the result for each input char is precomputed once (same Unicode tables as the crate:
//! `unicode_categories`, `unicode-normalization-alignments` and std's char properties). The
//! reordering only moves non-starters (combining class != 0); when accents are stripped all
//! non-spacing marks disappear, so the order of the rest is unchanged unless a non-starter
//! that is *not* a non-spacing mark survives. Texts with such a char (rare: a few spacing
//! combining marks) are marked `Sensitive` and encoded by the crate instead.

use std::sync::OnceLock;

use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::char::canonical_combining_class;
use unicode_normalization_alignments::UnicodeNormalization;

/// `BertNormalizer` settings (`strip_accents` already resolved: `None` follows `lowercase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BertNormalizerConfig {
    pub clean_text: bool,
    pub handle_chinese_chars: bool,
    pub strip_accents: bool,
    pub lowercase: bool,
}

impl BertNormalizerConfig {
    fn index(self) -> usize {
        usize::from(self.clean_text)
            | usize::from(self.handle_chinese_chars) << 1
            | usize::from(self.strip_accents) << 2
            | usize::from(self.lowercase) << 3
    }
}

/// What the pre-tokenizer does with a normalized char.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CharKind {
    /// Part of a word.
    Word = 0,
    /// Whitespace: ends the current word and is removed.
    Space = 1,
    /// Punctuation: a word of its own.
    Punct = 2,
}

/// The crate's `is_whitespace` for `clean_text` (tab, newline, carriage return or White_Space).
fn is_clean_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// The crate's `is_control` for `clean_text` (Cc, Cf, Co except tab, newline, return).
fn is_clean_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

/// The crate's CJK ideograph ranges for `handle_chinese_chars`.
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// `BertPreTokenizer`'s split classes for a normalized char.
pub(crate) fn pre_tokenizer_kind(c: char) -> CharKind {
    if c.is_whitespace() {
        CharKind::Space
    } else if c.is_ascii_punctuation() || c.is_punctuation() {
        CharKind::Punct
    } else {
        CharKind::Word
    }
}

/// Normalize one input char: push its output chars (with their pre-tokenizer kind) to `out`.
/// Returns `false` when the char makes the text order-sensitive (see the module docs).
pub(crate) fn normalize_char(
    cfg: BertNormalizerConfig,
    c: char,
    out: &mut Vec<(char, CharKind)>,
) -> bool {
    let mut c = c;
    if cfg.clean_text {
        if c == '\0' || c == '\u{fffd}' || is_clean_control(c) {
            return true;
        }
        if is_clean_whitespace(c) {
            c = ' ';
        }
    }
    let spaced = cfg.handle_chinese_chars && is_chinese_char(c);
    let mut order_safe = true;
    if spaced {
        out.push((' ', CharKind::Space));
    }
    // Each surviving char (all of NFD but the non-spacing marks, when accents are stripped),
    // lowercased when asked, straight into `out` (no buffer: blocks of the char table are
    // built 256 calls at a time).
    let mut push = |s: char| {
        if cfg.lowercase {
            for l in s.to_lowercase() {
                out.push((l, pre_tokenizer_kind(l)));
            }
        } else {
            out.push((s, pre_tokenizer_kind(s)));
        }
    };
    if cfg.strip_accents {
        let mut utf8 = [0u8; 4];
        for (d, _) in c.encode_utf8(&mut utf8).nfd() {
            if d.is_mark_nonspacing() {
                continue;
            }
            if canonical_combining_class(d) != 0 {
                order_safe = false;
            }
            push(d);
        }
    } else {
        push(c);
    }
    if spaced {
        out.push((' ', CharKind::Space));
    }
    // A separator that is itself a non-starter could be reordered with a following mark.
    if out
        .iter()
        .any(|&(o, k)| k != CharKind::Word && canonical_combining_class(o) != 0)
    {
        order_safe = false;
    }
    order_safe
}

/// Result of looking up one input char.
pub(crate) enum Mapped<'a> {
    /// The char stays itself, a word char, as every char of its 256-char block does (Hangul
    /// jamo, say; CJK ideographs without `handle_chinese_chars`).
    Itself,
    /// The char stays itself, a word of its own between two spaces (CJK ideographs when
    /// `handle_chinese_chars`).
    ItselfSpaced,
    /// The char becomes these normalized chars.
    Chars(&'a [u32]),
    /// The text must be encoded by the crate (see the module docs).
    Sensitive,
}

/// Packed normalized char: code point in the low 21 bits, kind in bits 24..26.
#[inline]
pub(crate) fn unpack(p: u32) -> (char, CharKind) {
    let c = char::from_u32(p & 0x1F_FFFF).unwrap_or('\u{fffd}');
    let kind = match p >> 24 {
        1 => CharKind::Space,
        2 => CharKind::Punct,
        _ => CharKind::Word,
    };
    (c, kind)
}

fn pack(c: char, kind: CharKind) -> u32 {
    c as u32 | (kind as u32) << 24
}

const SENSITIVE: u32 = u32::MAX;

/// `normalize_char` for the 256 chars `block << 8 ..`.
struct Block {
    /// Per char: `start << 8 | len` into `pool`, or `SENSITIVE`.
    entries: Vec<u32>,
    pool: Vec<u32>,
    /// What every char of the block does, when they all do the same: then a lookup reads
    /// neither `entries` nor `pool` (two cache misses for a text in a large script).
    uniform: Option<Uniform>,
}

/// The mappings a whole [`Block`] can share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uniform {
    /// [`Mapped::Itself`].
    Itself,
    /// [`Mapped::ItselfSpaced`].
    ItselfSpaced,
}

impl Uniform {
    /// Which uniform mapping `c`'s normalized chars are, if any.
    fn of(c: char, normalized: &[(char, CharKind)]) -> Option<Uniform> {
        let itself = (c, CharKind::Word);
        let space = (' ', CharKind::Space);
        match normalized {
            [one] if *one == itself => Some(Uniform::Itself),
            [a, one, b] if *one == itself && *a == space && *b == space => {
                Some(Uniform::ItselfSpaced)
            }
            _ => None,
        }
    }
}

impl Block {
    fn build(cfg: BertNormalizerConfig, block: u32) -> Block {
        let mut entries = Vec::with_capacity(256);
        let mut pool = Vec::new();
        let mut buf = Vec::new();
        // `None` until a char is seen; `Some(None)` once two chars differ.
        let mut uniform: Option<Option<Uniform>> = None;
        for code in block << 8..(block + 1) << 8 {
            let Some(c) = char::from_u32(code) else {
                entries.push(0); // surrogates never occur in a &str
                continue;
            };
            buf.clear();
            if !normalize_char(cfg, c, &mut buf) || buf.len() > 255 {
                entries.push(SENSITIVE);
                uniform = Some(None);
                continue;
            }
            let this = Uniform::of(c, &buf);
            uniform = Some(uniform.map_or(this, |u| u.filter(|&u| Some(u) == this)));
            let start = pool.len() as u32;
            pool.extend(buf.iter().map(|&(o, k)| pack(o, k)));
            entries.push(start << 8 | buf.len() as u32);
        }
        Block {
            entries,
            pool,
            uniform: uniform.flatten(),
        }
    }
}

/// `normalize_char` results for the Basic Multilingual Plane, computed a 256-char block at a
/// time on first use (loading stays fast; a text only pays for the scripts it uses).
pub(crate) struct BertCharTable {
    cfg: BertNormalizerConfig,
    blocks: Vec<OnceLock<Block>>,
    /// ASCII bytes: kind and the single normalized byte (`None` when the byte is dropped);
    /// `None` when some ASCII char does not normalize to at most one ASCII char (no setting
    /// does that, but then every char simply takes the general path).
    pub(crate) ascii: Option<[(CharKind, Option<u8>); 128]>,
}

impl BertCharTable {
    fn build(cfg: BertNormalizerConfig) -> BertCharTable {
        let mut buf = Vec::new();
        let mut ascii = [(CharKind::Word, None); 128];
        let mut ascii_simple = true;
        for b in 0u8..128 {
            buf.clear();
            let safe = normalize_char(cfg, char::from(b), &mut buf);
            ascii[usize::from(b)] = match (safe, buf.as_slice()) {
                (true, []) => (CharKind::Word, None),
                (true, &[(o, k)]) if o.is_ascii() => (k, Some(o as u8)),
                _ => {
                    ascii_simple = false;
                    (CharKind::Word, None)
                }
            };
        }
        BertCharTable {
            cfg,
            blocks: (0..256).map(|_| OnceLock::new()).collect(),
            ascii: ascii_simple.then_some(ascii),
        }
    }

    /// The shared table for `cfg`.
    pub(crate) fn get(cfg: BertNormalizerConfig) -> &'static BertCharTable {
        static TABLES: [OnceLock<BertCharTable>; 16] = [const { OnceLock::new() }; 16];
        TABLES[cfg.index()].get_or_init(|| BertCharTable::build(cfg))
    }

    /// Normalized chars of a non-ASCII char; chars beyond the BMP are computed into `scratch`.
    #[inline]
    pub(crate) fn map<'a>(&'a self, c: char, scratch: &'a mut Vec<u32>) -> Mapped<'a> {
        let code = c as u32;
        if let Some(cell) = self.blocks.get((code >> 8) as usize) {
            let block = cell.get_or_init(|| Block::build(self.cfg, code >> 8));
            match block.uniform {
                Some(Uniform::Itself) => return Mapped::Itself,
                Some(Uniform::ItselfSpaced) => return Mapped::ItselfSpaced,
                None => {}
            }
            let e = block.entries[(code & 0xFF) as usize];
            if e == SENSITIVE {
                return Mapped::Sensitive;
            }
            let start = (e >> 8) as usize;
            return match block.pool.get(start..start + (e & 0xFF) as usize) {
                Some(s) => Mapped::Chars(s),
                None => Mapped::Sensitive,
            };
        }
        let mut buf = Vec::new();
        if !normalize_char(self.cfg, c, &mut buf) {
            return Mapped::Sensitive;
        }
        scratch.clear();
        scratch.extend(buf.iter().map(|&(o, k)| pack(o, k)));
        Mapped::Chars(scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::{BertNormalizerConfig, Block, Uniform};

    /// The blocks whose chars all map alike are recognised (a lookup there skips the per-char
    /// tables), and a block with one different char is not.
    #[test]
    fn uniform_blocks() {
        let bert_uncased = BertNormalizerConfig {
            clean_text: true,
            handle_chinese_chars: true,
            strip_accents: true,
            lowercase: true,
        };
        let no_chinese = BertNormalizerConfig {
            handle_chinese_chars: false,
            ..bert_uncased
        };
        let cases = [
            (bert_uncased, 0x4E, Some(Uniform::ItselfSpaced)), // CJK unified ideographs
            (no_chinese, 0x4E, Some(Uniform::Itself)),
            (bert_uncased, 0x11, Some(Uniform::Itself)), // Hangul jamo
            (bert_uncased, 0x4D, None),                  // ideographs, then Yijing hexagram symbols
            (bert_uncased, 0xAC, None), // Hangul syllables: NFD splits them into jamo
            (bert_uncased, 0x04, None), // Cyrillic: upper and lower case
            (bert_uncased, 0x00, None),
        ];
        for (cfg, block, want) in cases {
            assert_eq!(Block::build(cfg, block).uniform, want, "block {block:#x}");
        }
    }
}
