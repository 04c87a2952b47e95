//! The reference's `PhraseTokenizer`: NLTK word tokenization, then phrases of the vocabulary
//! (words joined by `ngram_separator`, e.g. `New_York`) merged into one token, then a
//! vocabulary lookup with lowercase and punctuation-stripping retries.
//!
//! The reference calls `nltk.word_tokenize(text, preserve_line=True)`, i.e. NLTK's
//! `NLTKWordTokenizer` (an improved Penn Treebank tokenizer) on the whole text.
//! [`nltk_word_tokenize`] performs the same ordered list of rewrites (NLTK 3.8/3.9). NLTK's
//! patterns use Python's `re`; the few lookarounds are expressed below without them, and
//! `\w`/`\d`/`\b` follow Rust's Unicode classes, which differ from Python's only for rare
//! characters (combining marks, superscript digits).

use crate::module_files::read_json_config;
use crate::whitespace_tokenizer::{
    python_split, reference_english_stop_words, strip_ascii_punctuation, word_to_id,
};
use regex::{Captures, Regex};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;
use stk_core::{Error, Result};

/// File name of the tokenizer's config inside a `WordEmbeddings` folder.
pub const PHRASE_TOKENIZER_CONFIG: &str = "phrasetokenizer_config.json";

#[derive(Deserialize)]
struct PhraseTokenizerConfig {
    #[serde(default)]
    vocab: Vec<String>,
    #[serde(default = "reference_stop_words")]
    stop_words: Vec<String>,
    /// Stored by the reference but never used when tokenizing.
    #[serde(default)]
    #[allow(dead_code)]
    do_lower_case: bool,
    #[serde(default = "default_separator")]
    ngram_separator: Option<String>,
    #[serde(default = "default_max_ngram_length")]
    max_ngram_length: usize,
}

fn reference_stop_words() -> Vec<String> {
    reference_english_stop_words().map(String::from).collect()
}
fn default_separator() -> Option<String> {
    Some("_".into())
}
fn default_max_ngram_length() -> usize {
    5
}

/// Word tokenizer that keeps the vocabulary's multi-word phrases together.
#[derive(Debug, Clone)]
pub struct PhraseTokenizer {
    word_to_id: HashMap<String, u32>,
    stop_words: HashSet<String>,
    separator: String,
    /// Vocabulary entries that are phrases of 2..=max_ngram_length words.
    phrases: HashSet<String>,
    /// Word counts of those phrases, longest first (the order phrases are merged in).
    phrase_lengths: Vec<usize>,
    vocab_len: usize,
}

impl PhraseTokenizer {
    /// A tokenizer over `vocab` (words and phrases whose words are joined by
    /// `ngram_separator`, up to `max_ngram_length` words), dropping `stop_words`.
    pub fn new(
        vocab: &[String],
        stop_words: impl IntoIterator<Item = String>,
        ngram_separator: Option<&str>,
        max_ngram_length: usize,
    ) -> Result<Self> {
        Self::build(
            vocab,
            stop_words.into_iter().collect(),
            ngram_separator,
            max_ngram_length,
            Path::new("phrase tokenizer vocabulary"),
        )
    }

    /// Read `dir/phrasetokenizer_config.json` (`vocab`, `stop_words`, `do_lower_case`,
    /// `ngram_separator`, `max_ngram_length`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(PHRASE_TOKENIZER_CONFIG);
        let cfg: PhraseTokenizerConfig = read_json_config(dir, PHRASE_TOKENIZER_CONFIG)?;
        if cfg.ngram_separator.as_deref() == Some("") {
            return Err(Error::config(&path, "`ngram_separator` must not be empty"));
        }
        Self::build(
            &cfg.vocab,
            cfg.stop_words.into_iter().collect(),
            cfg.ngram_separator.as_deref(),
            cfg.max_ngram_length,
            &path,
        )
    }

    fn build(
        vocab: &[String],
        stop_words: HashSet<String>,
        separator: Option<&str>,
        max_ngram_length: usize,
        what: &Path,
    ) -> Result<Self> {
        let mut phrases = HashSet::new();
        let mut lengths = BTreeSet::new();
        if let Some(sep) = separator.filter(|s| !s.is_empty()) {
            let doubled = format!("{sep}{sep}");
            for word in vocab.iter().filter(|w| w.contains(sep)) {
                // Like the reference: skip malformed entries with a doubled separator.
                let n = word.matches(sep).count() + 1;
                if !word.contains(&doubled) && n <= max_ngram_length {
                    phrases.insert(word.clone());
                    lengths.insert(n);
                }
            }
        }
        Ok(PhraseTokenizer {
            word_to_id: word_to_id(vocab, what)?,
            stop_words,
            separator: separator.unwrap_or("").to_string(),
            phrases,
            phrase_lengths: lengths.into_iter().rev().collect(),
            vocab_len: vocab.len(),
        })
    }

    /// Vocabulary size: every id is below it.
    pub fn vocab_len(&self) -> usize {
        self.vocab_len
    }

    /// Ids of the words and phrases of `text`, in order.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut tokens = nltk_word_tokenize(text);
        for &n in &self.phrase_lengths {
            // The reference scans left to right once per length; a merged phrase becomes one
            // token and the scan moves on by one position either way.
            let mut i = 0;
            while i + n <= tokens.len() {
                let joined = tokens[i..i + n].join(&self.separator);
                let merged = if self.phrases.contains(&joined) {
                    Some(joined)
                } else {
                    let lower = joined.to_lowercase();
                    self.phrases.contains(&lower).then_some(lower)
                };
                if let Some(phrase) = merged {
                    tokens.splice(i..i + n, [phrase]);
                }
                i += 1;
            }
        }
        tokens.iter().filter_map(|t| self.lookup(t)).collect()
    }

    /// Exact, then lowercased, then stripped of ASCII punctuation (this order differs from the
    /// whitespace tokenizer's, as in the reference).
    fn lookup(&self, token: &str) -> Option<u32> {
        if self.stop_words.contains(token) {
            return None;
        }
        if let Some(&id) = self.word_to_id.get(token) {
            return Some(id);
        }
        let lower = token.to_lowercase();
        if self.stop_words.contains(&lower) {
            return None;
        }
        if let Some(&id) = self.word_to_id.get(&lower) {
            return Some(id);
        }
        let stripped = strip_ascii_punctuation(&lower);
        if self.stop_words.contains(stripped) || stripped.is_empty() {
            return None;
        }
        self.word_to_id.get(stripped).copied()
    }
}

/// One regex rewrite of the NLTK word tokenizer.
struct Rewrite {
    re: Regex,
    apply: fn(&Captures) -> String,
}

fn rewrites() -> &'static [Vec<Rewrite>; 2] {
    static RULES: OnceLock<[Vec<Rewrite>; 2]> = OnceLock::new();
    RULES.get_or_init(|| {
        let r = |pat: &str, apply: fn(&Captures) -> String| Rewrite {
            re: Regex::new(pat).expect("static NLTK pattern compiles"),
            apply,
        };
        fn g<'a>(c: &'a Captures, i: usize) -> &'a str {
            c.get(i).map_or("", |m| m.as_str())
        }
        // Before the text is padded with a space on both ends.
        let before = vec![
            // Opening quotes.
            r(r"([«“‘„]|`+)", |c| format!(" {} ", g(c, 1))),
            r(r#"\A""#, |_| "``".into()),
            r(r"(``)", |c| format!(" {} ", g(c, 1))),
            r(r#"([ (\[{<])("|'')"#, |c| format!("{} `` ", g(c, 1))),
            // An apostrophe before a one-letter word is split off unless the letter is a
            // clitic (m, t, s, d, n); NLTK writes this with a negative lookahead.
            r(r"'(\w)\b", |c| {
                let w = g(c, 1);
                if matches!(
                    w,
                    "m" | "M" | "t" | "T" | "s" | "S" | "ſ" | "d" | "D" | "n" | "N"
                ) {
                    g(c, 0).to_string()
                } else {
                    format!("' {w}")
                }
            }),
            // Punctuation. NLTK's `$` also matches before a final newline; `\s*` already eats it.
            r(r#"([^.])(\.)([\])}>"'»”’ ]*)\s*\z"#, |c| {
                format!("{} {} {} ", g(c, 1), g(c, 2), g(c, 3))
            }),
            r(r"([:,])([^\d])", |c| format!(" {} {}", g(c, 1), g(c, 2))),
            r(r"([:,])(\n?)\z", |c| format!(" {} {}", g(c, 1), g(c, 2))),
            r(r"\.{2,}", |c| format!(" {} ", g(c, 0))),
            r(r"[;@#$%&]", |c| format!(" {} ", g(c, 0))),
            r(r#"([^.])(\.)([\])}>"']*)\s*\z"#, |c| {
                format!("{} {}{} ", g(c, 1), g(c, 2), g(c, 3))
            }),
            r(r"[?!]", |c| format!(" {} ", g(c, 0))),
            r(r"([^'])' ", |c| format!("{} ' ", g(c, 1))),
            r(r"[*]", |c| format!(" {} ", g(c, 0))),
            // Parentheses and brackets, then double dashes.
            r(r"[\]\[(){}<>]", |c| format!(" {} ", g(c, 0))),
            r(r"--", |_| " -- ".into()),
        ];
        let after = vec![
            // Closing quotes.
            r(r"([»”’])", |c| format!(" {} ", g(c, 1))),
            r(r"''", |_| " '' ".into()),
            r(r#"""#, |_| " '' ".into()),
            r(r"([^' ])('[sS]|'[mM]|'[dD]|') ", |c| {
                format!("{} {} ", g(c, 1), g(c, 2))
            }),
            r(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", |c| {
                format!("{} {} ", g(c, 1), g(c, 2))
            }),
            // Contractions split in two (Robert MacIntyre's list, as NLTK uses it).
            r(r"(?i)\b(can)(not)\b", split2),
            r(r"(?i)\b(d)('ye)\b", split2),
            r(r"(?i)\b(gim)(me)\b", split2),
            r(r"(?i)\b(gon)(na)\b", split2),
            r(r"(?i)\b(got)(ta)\b", split2),
            r(r"(?i)\b(lem)(me)\b", split2),
            r(r"(?i)\b(more)('n)\b", split2),
            // NLTK: followed by whitespace (a lookahead); the whitespace is kept.
            r(r"(?i)\b(wan)(na)(\s)", |c| {
                format!(" {} {} {}", g(c, 1), g(c, 2), g(c, 3))
            }),
            r(r"(?i) ('t)(is)\b", split2),
            r(r"(?i) ('t)(was)\b", split2),
        ];
        fn split2(c: &Captures) -> String {
            format!(
                " {} {} ",
                c.get(1).map_or("", |m| m.as_str()),
                c.get(2).map_or("", |m| m.as_str())
            )
        }
        [before, after]
    })
}

/// `nltk.word_tokenize(text, preserve_line=True)`.
pub fn nltk_word_tokenize(text: &str) -> Vec<String> {
    let [before, after] = rewrites();
    let apply = |text: String, rules: &[Rewrite]| {
        rules.iter().fold(text, |t, rule| {
            rule.re
                .replace_all(&t, |c: &Captures| (rule.apply)(c))
                .into_owned()
        })
    };
    let text = apply(text.to_string(), before);
    let text = apply(format!(" {text} "), after);
    python_split(&text).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        nltk_word_tokenize(s)
    }
    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Expected outputs from NLTK's own documentation and tests (nltk/test/tokenize.doctest,
    /// nltk/test/unit/test_tokenize.py).
    #[test]
    fn matches_nltk_documented_outputs() {
        let cases: &[(&str, &[&str])] = &[
            (
                "Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks.",
                &["Good", "muffins", "cost", "$", "3.88", "(", "roughly", "3,36", "euros", ")", "in", "New",
                  "York.", "Please", "buy", "me", "two", "of", "them.", "Thanks", "."],
            ),
            (
                "On a $50,000 mortgage of 30 years at 8 percent, the monthly payment would be $366.88.",
                &["On", "a", "$", "50,000", "mortgage", "of", "30", "years", "at", "8", "percent", ",", "the",
                  "monthly", "payment", "would", "be", "$", "366.88", "."],
            ),
            (
                "\"We beat some pretty good teams to get here,\" Slocum said.",
                &["``", "We", "beat", "some", "pretty", "good", "teams", "to", "get", "here", ",", "''",
                  "Slocum", "said", "."],
            ),
            (
                "Well, we couldn't have this predictable, cliche-ridden, \"Touched by an Angel\" (a show creator John Masius worked on) wanna-be if she didn't.",
                &["Well", ",", "we", "could", "n't", "have", "this", "predictable", ",", "cliche-ridden", ",",
                  "``", "Touched", "by", "an", "Angel", "''", "(", "a", "show", "creator", "John", "Masius",
                  "worked", "on", ")", "wanna-be", "if", "she", "did", "n't", "."],
            ),
            ("I cannot cannot work under these conditions!", &["I", "can", "not", "can", "not", "work", "under", "these", "conditions", "!"]),
            ("The company spent 40.75% of its income last year.", &["The", "company", "spent", "40.75", "%", "of", "its", "income", "last", "year", "."]),
            ("He arrived at 3:00 pm.", &["He", "arrived", "at", "3:00", "pm", "."]),
            ("I bought these items: books, pencils, and pens.", &["I", "bought", "these", "items", ":", "books", ",", "pencils", ",", "and", "pens", "."]),
            ("There were 300,000, but that wasn't enough.", &["There", "were", "300,000", ",", "but", "that", "was", "n't", "enough", "."]),
            ("It's more'n enough.", &["It", "'s", "more", "'n", "enough", "."]),
            ("\u{ab}Now that I can do.\u{bb}", &["\u{ab}", "Now", "that", "I", "can", "do", ".", "\u{bb}"]),
            ("This is a, *weird sentence with *asterisks in it.", &["This", "is", "a", ",", "*", "weird", "sentence", "with", "*", "asterisks", "in", "it", "."]),
            (
                "Why did dotdot.. not get tokenized but dotdotdot... did? How about manydots.....",
                &["Why", "did", "dotdot", "..", "not", "get", "tokenized", "but", "dotdotdot", "...", "did", "?",
                  "How", "about", "manydots", "....."],
            ),
            (
                "The 'v', I've been fooled but I'll seek revenge.",
                &["The", "'", "v", "'", ",", "I", "'ve", "been", "fooled", "but", "I", "'ll", "seek", "revenge", "."],
            ),
            ("'v' 're'", &["'", "v", "'", "'re", "'"]),
        ];
        for (text, want) in cases {
            assert_eq!(toks(text), list(want), "{text:?}");
        }
        assert!(toks("").is_empty());
        assert!(toks(" \t ").is_empty());
    }

    #[test]
    fn merges_phrases_longest_first_then_looks_up() {
        let vocab = list(&[
            "PAD",
            "New_York",
            "new_york_city",
            "is",
            "big",
            "city",
            "York",
            "the",
        ]);
        let t = PhraseTokenizer::new(&vocab, list(&["the"]), Some("_"), 5).unwrap();
        // Trigram (lowercased match) wins over the bigram; "the" is a stop word; "." dropped.
        assert_eq!(
            t.tokenize("New York City is the big city."),
            vec![2, 3, 4, 5]
        );
        assert_eq!(t.tokenize("New York is big"), vec![1, 3, 4]);
        // Lowercase retry, then punctuation stripping.
        assert_eq!(t.tokenize("BIG -city-"), vec![4, 5]);
        // Phrases longer than max_ngram_length and doubled separators are not phrases.
        let t = PhraseTokenizer::new(
            &list(&["a_b_c", "a__b", "a", "b"]),
            Vec::new(),
            Some("_"),
            2,
        )
        .unwrap();
        assert_eq!(t.tokenize("a b c"), vec![2, 3]);
        assert_eq!(t.tokenize("a  b"), vec![2, 3]);
        // No separator: no phrases at all.
        let t = PhraseTokenizer::new(&list(&["a_b", "a", "b"]), Vec::new(), None, 5).unwrap();
        assert_eq!(t.tokenize("a b"), vec![1, 2]);
    }

    #[test]
    fn config_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PHRASE_TOKENIZER_CONFIG);
        std::fs::write(&p, "{\"vocab\": \"abc\"}").unwrap();
        let e = PhraseTokenizer::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains(PHRASE_TOKENIZER_CONFIG), "{e}");
        std::fs::write(&p, "{\"vocab\": [\"a\"], \"ngram_separator\": \"\"}").unwrap();
        assert!(matches!(
            PhraseTokenizer::from_dir(dir.path()),
            Err(Error::Config { .. })
        ));
        std::fs::write(
            &p,
            "{\"vocab\": [\"a_b\", \"b\"], \"ngram_separator\": null, \"stop_words\": []}",
        )
        .unwrap();
        let t = PhraseTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(t.tokenize("a b"), vec![1]);
        assert_eq!(t.vocab_len(), 2);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any text (quotes, brackets, contractions, odd whitespace, any Unicode): tokens are
        /// non-empty and whitespace-free, and the ids stay inside the vocabulary.
        #[test]
        fn any_text_tokenizes_within_the_vocabulary(
            text in "([a-zA-Z'\"`.,:;!?()\\[\\]{}<>$%&*-]|\\s|\\PC){0,40}"
        ) {
            for tok in nltk_word_tokenize(&text) {
                proptest::prop_assert!(!tok.is_empty() && !tok.chars().any(crate::whitespace_tokenizer::is_python_space));
            }
            let vocab = list(&["a", "a_b", "can", "not", "'s", "\"", "``"]);
            let t = PhraseTokenizer::new(&vocab, Vec::new(), Some("_"), 3).unwrap();
            proptest::prop_assert!(t.tokenize(&text).iter().all(|&id| (id as usize) < vocab.len()));
        }
    }
}
