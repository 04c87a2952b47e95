//! The reference's `WhitespaceTokenizer`: split on whitespace, map whole words to vocabulary
//! ids, retrying without surrounding ASCII punctuation and then lowercased; everything else is
//! dropped. Used by `WordEmbeddings` (config `whitespacetokenizer_config.json`) and `BoW`.

use crate::module_files::read_json_config;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use stk_core::{Error, Result};

/// File name of the tokenizer's config inside a `WordEmbeddings` folder.
pub const WHITESPACE_TOKENIZER_CONFIG: &str = "whitespacetokenizer_config.json";

/// The stop words the reference's word tokenizers use when a config does not list its own
/// (`sentence_transformers` `ENGLISH_STOP_WORDS`: ASCII punctuation and English function words),
/// one per line. Kept as data, not code, so the list reads as a list.
const REFERENCE_ENGLISH_STOP_WORDS: &str = include_str!("../data/english_stop_words.txt");

/// The reference's English stop words, one item a word (from `data/english_stop_words.txt`).
pub fn reference_english_stop_words() -> impl Iterator<Item = &'static str> {
    REFERENCE_ENGLISH_STOP_WORDS.lines()
}

/// Python's `str.isspace`, which `str.split()` splits on: Unicode White_Space plus the four
/// ASCII separators U+001C..U+001F that Rust's `char::is_whitespace` does not count.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `text.split()`: the non-empty runs between whitespace characters.
pub fn python_split(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_python_space).filter(|s| !s.is_empty())
}

/// Python's `token.strip(string.punctuation)`: ASCII punctuation removed from both ends.
pub fn strip_ascii_punctuation(token: &str) -> &str {
    token.trim_matches(|c: char| c.is_ascii_punctuation())
}

/// Word to id, built the way the reference builds its dict: a word listed twice maps to its
/// last position.
pub(crate) fn word_to_id(vocab: &[String], what: &Path) -> Result<HashMap<String, u32>> {
    if u32::try_from(vocab.len()).is_err() {
        return Err(Error::config(
            what,
            format!("vocabulary of {} words exceeds u32 ids", vocab.len()),
        ));
    }
    let mut map = HashMap::with_capacity(vocab.len());
    for (i, w) in vocab.iter().enumerate() {
        map.insert(w.clone(), i as u32);
    }
    Ok(map)
}

#[derive(Deserialize)]
struct WhitespaceTokenizerConfig {
    #[serde(default)]
    vocab: Vec<String>,
    #[serde(default = "reference_stop_words")]
    stop_words: Vec<String>,
    #[serde(default)]
    do_lower_case: bool,
}

fn reference_stop_words() -> Vec<String> {
    reference_english_stop_words().map(String::from).collect()
}

/// Whitespace word tokenizer with a fixed vocabulary.
#[derive(Debug, Clone)]
pub struct WhitespaceTokenizer {
    word_to_id: HashMap<String, u32>,
    stop_words: HashSet<String>,
    do_lower_case: bool,
    vocab_len: usize,
}

impl WhitespaceTokenizer {
    /// `vocab[i]` gets id `i` (the last position when a word repeats).
    pub fn new(
        vocab: &[String],
        stop_words: impl IntoIterator<Item = String>,
        do_lower_case: bool,
    ) -> Result<Self> {
        Ok(WhitespaceTokenizer {
            word_to_id: word_to_id(vocab, Path::new("whitespace tokenizer vocabulary"))?,
            stop_words: stop_words.into_iter().collect(),
            do_lower_case,
            vocab_len: vocab.len(),
        })
    }

    /// Read `dir/whitespacetokenizer_config.json` (`vocab`, `stop_words`, `do_lower_case`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(WHITESPACE_TOKENIZER_CONFIG);
        let cfg: WhitespaceTokenizerConfig = read_json_config(dir, WHITESPACE_TOKENIZER_CONFIG)?;
        Ok(WhitespaceTokenizer {
            word_to_id: word_to_id(&cfg.vocab, &path)?,
            stop_words: cfg.stop_words.into_iter().collect(),
            do_lower_case: cfg.do_lower_case,
            vocab_len: cfg.vocab.len(),
        })
    }

    /// Number of vocabulary entries (ids are below it).
    pub fn vocab_len(&self) -> usize {
        self.vocab_len
    }

    /// Ids of the words of `text`, in order.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let lowered;
        let text = if self.do_lower_case {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        let mut ids = Vec::new();
        ids.extend(python_split(text).filter_map(|piece| self.lookup(piece)));
        ids
    }

    /// The id of one whitespace-separated piece; `None` for a stop word or an unknown word.
    fn lookup(&self, piece: &str) -> Option<u32> {
        if self.stop_words.contains(piece) {
            return None;
        }
        if let Some(&id) = self.word_to_id.get(piece) {
            return Some(id);
        }
        let stripped = strip_ascii_punctuation(piece);
        if self.stop_words.contains(stripped) {
            return None;
        }
        // The reference skips the empty word here but not in the lowercase retry below.
        if !stripped.is_empty() {
            if let Some(&id) = self.word_to_id.get(stripped) {
                return Some(id);
            }
        }
        let lower = stripped.to_lowercase();
        if self.stop_words.contains(&lower) {
            return None;
        }
        self.word_to_id.get(&lower).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stop_word_file_is_one_distinct_word_per_line() {
        let list: Vec<&str> = reference_english_stop_words().collect();
        // The count and ends of the list as it was when it moved out of the code.
        assert_eq!(list.len(), 386);
        assert_eq!((list[0], list[385]), ("!", "yourselves"));
        assert!(list.contains(&"\"") && list.contains(&"\\") && list.contains(&"the"));
        assert!(list
            .iter()
            .all(|w| !w.is_empty() && !w.contains(is_python_space)));
        let distinct: HashSet<&str> = list.iter().copied().collect();
        assert_eq!(distinct.len(), list.len());
    }

    #[test]
    fn follows_the_reference_retry_order() {
        let vocab = words(&["PAD", "hello", "World", "world", "c++", "stop", "x"]);
        let t = WhitespaceTokenizer::new(&vocab, words(&["stop", "the"]), false).unwrap();
        // exact; punctuation stripped; lowercased after stripping; unknown dropped.
        assert_eq!(
            t.tokenize("hello (hello) World, WORLD! c++ unknown"),
            vec![1, 1, 2, 3, 4]
        );
        // Stop words at every step: exact, stripped, lowercased.
        assert_eq!(t.tokenize("stop stop. STOP The. x"), vec![6]);
        // Python whitespace: tabs, newlines, NBSP and U+001F all split.
        assert_eq!(
            t.tokenize("hello\thello\nhello\u{a0}hello\u{1f}hello"),
            vec![1; 5]
        );
        assert!(t.tokenize("").is_empty());
        assert!(t.tokenize(" \n ").is_empty());
    }

    #[test]
    fn lowercases_first_when_asked_and_repeated_words_take_the_last_id() {
        let vocab = words(&["a", "b", "a"]);
        let t = WhitespaceTokenizer::new(&vocab, Vec::new(), true).unwrap();
        assert_eq!(t.tokenize("A B a"), vec![2, 1, 2]);
        // Only punctuation: the stripped word is empty; it is looked up only in the lowercase step.
        let t = WhitespaceTokenizer::new(&words(&["x", ""]), Vec::new(), false).unwrap();
        assert_eq!(t.tokenize("x ... x"), vec![0, 1, 0]);
    }

    #[test]
    fn config_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = WhitespaceTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        std::fs::write(
            dir.path().join(WHITESPACE_TOKENIZER_CONFIG),
            "{\"vocab\": [1, 2]}",
        )
        .unwrap();
        let e = WhitespaceTokenizer::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains(WHITESPACE_TOKENIZER_CONFIG), "{e}");
        std::fs::write(dir.path().join(WHITESPACE_TOKENIZER_CONFIG), "not json").unwrap();
        assert!(matches!(
            WhitespaceTokenizer::from_dir(dir.path()),
            Err(Error::Config { .. })
        ));
        // Defaults: no stop words key means the reference's English list.
        std::fs::write(
            dir.path().join(WHITESPACE_TOKENIZER_CONFIG),
            "{\"vocab\": [\"the\", \"cat\"]}",
        )
        .unwrap();
        let t = WhitespaceTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(t.tokenize("the cat"), vec![1]);
        assert_eq!(t.vocab_len(), 2);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn any_text_gives_ids_inside_the_vocabulary(text in "(\\PC|\\s){0,60}", lower in proptest::bool::ANY) {
            let vocab = words(&["PAD", "a", "A", "ß", "İ", "", "..."]);
            let t = WhitespaceTokenizer::new(&vocab, words(&["a"]), lower).unwrap();
            let ids = t.tokenize(&text);
            proptest::prop_assert!(ids.iter().all(|&id| (id as usize) < vocab.len()));
            proptest::prop_assert!(ids.len() <= python_split(&text).count());
        }
    }
}
