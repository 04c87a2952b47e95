//! Text to token ids, exactly as the `tokenizers` crate computes them for a `tokenizer.json`.
//!
//! The crate is always loaded: it is the reference and the fallback. Pipelines that are common
//! in static embedding models have a fast path of their own here, chosen from the exact
//! configuration in `tokenizer.json` (see [`Tokenizer::backend`]):
//!
//! * `bert-wordpiece`: `BertNormalizer` (any flags) + `BertPreTokenizer` + `WordPiece` whose
//!   unknown token is in the vocabulary (potion / BERT vocabularies);
//! * `metaspace-unigram`: `Precompiled` charsmap (or no normalizer) +
//!   `Sequence[WhitespaceSplit, Metaspace(prepend_scheme always, split)]` + `Unigram` with an
//!   unknown id and no byte fallback (SentencePiece vocabularies such as stk-unigram);
//!
//! in both cases with a post-processor that adds nothing without special tokens. A fast path
//! gives the same ids as the crate's `encode(text, false)` with truncation and padding
//! disabled, and hands a text to the crate whenever it cannot guarantee that: an added token
//! occurs in it (before or after normalization), or, with accents stripped, it holds a
//! combining char whose canonical reordering would survive (see `bert.rs`). Anything else
//! (BPE, other normalizers or pre-tokenizers) is encoded by the crate.
//!
//! The proof of identity is in `crates/stk-cpu/tests/tokenize_*.rs` (golden texts, the bench
//! corpus, Unicode corner cases and proptest on random Unicode text).

mod bert;
mod trie;
mod unigram;
mod wordpiece;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;
use stk_core::{Error, Result};
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::Normalizer;

use bert::BertNormalizerConfig;
use unigram::{CharsmapNormalizer, MetaspaceUnigram, UnigramModel};
use wordpiece::{BertWordPiece, WordPiece};

/// A loaded `tokenizer.json`.
pub struct Tokenizer {
    /// The crate's tokenizer, truncation and padding disabled: reference and fallback.
    reference: tokenizers::Tokenizer,
    fast: Option<FastPath>,
    added: AddedTokenGate,
    unk_id: Option<u32>,
    /// One more than the largest id the vocabulary holds (added tokens included).
    id_space: usize,
    /// The character count of every vocabulary token (added tokens included).
    token_chars: Vec<u32>,
    path: PathBuf,
}

/// A pipeline implemented here.
enum FastPath {
    BertWordPiece(BertWordPiece),
    MetaspaceUnigram(MetaspaceUnigram),
}

impl FastPath {
    fn name(&self) -> &'static str {
        match self {
            FastPath::BertWordPiece(_) => "bert-wordpiece",
            FastPath::MetaspaceUnigram(_) => "metaspace-unigram",
        }
    }
}

/// Added tokens are cut out of the text by the crate before (or, for `normalized` ones,
/// after) normalization. A fast path leaves every text that contains one to the crate.
#[derive(Default)]
struct AddedTokenGate {
    /// Contents matched in the raw text.
    raw: Vec<String>,
    /// First bytes of `raw`, to skip the substring search for most texts.
    raw_first_byte: Vec<u8>,
    /// Normalized contents matched in the normalized text.
    normalized: Vec<String>,
}

impl AddedTokenGate {
    /// `None` when an added token is empty (before or after normalization): the crate's
    /// matching of empty patterns is not something to imitate.
    fn new(reference: &tokenizers::Tokenizer) -> Option<AddedTokenGate> {
        let mut gate = AddedTokenGate::default();
        for token in reference.get_added_tokens_decoder().values() {
            if token.content.is_empty() {
                return None;
            }
            if token.normalized {
                let mut n = tokenizers::NormalizedString::from(token.content.as_str());
                if let Some(normalizer) = reference.get_normalizer() {
                    normalizer.normalize(&mut n).ok()?;
                }
                if n.get().is_empty() {
                    return None;
                }
                gate.normalized.push(n.get().to_owned());
            } else {
                gate.raw.push(token.content.clone());
            }
        }
        gate.index_raw_first_bytes();
        Some(gate)
    }

    /// Fill `raw_first_byte` from `raw` (non-empty contents).
    fn index_raw_first_bytes(&mut self) {
        self.raw_first_byte = self.raw.iter().map(|t| t.as_bytes()[0]).collect();
        self.raw_first_byte.sort_unstable();
        self.raw_first_byte.dedup();
    }

    /// Whether a non-normalized added token may occur in `text`.
    #[inline]
    fn raw_match(&self, text: &str) -> bool {
        let bytes = text.as_bytes();
        // The memchr crate's SIMD search (std's `contains` is a word at a time): every text
        // the fast path takes is scanned here first.
        let maybe = match *self.raw_first_byte.as_slice() {
            [] => false,
            [b] => memchr::memchr(b, bytes).is_some(),
            [b1, b2] => memchr::memchr2(b1, b2, bytes).is_some(),
            [b1, b2, b3] => memchr::memchr3(b1, b2, b3, bytes).is_some(),
            ref firsts => bytes.iter().any(|b| firsts.contains(b)),
        };
        maybe && self.raw.iter().any(|t| text.contains(t.as_str()))
    }

    /// Whether the normalized text is free of normalized added tokens.
    fn normalized_free(&self, normalized: &str) -> bool {
        !self
            .normalized
            .iter()
            .any(|t| normalized.contains(t.as_str()))
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("backend", &self.backend())
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// Load a `tokenizer.json`. Anything that is not a tokenizer the crate can load is a
    /// clear error naming the file.
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Load a tokenizer from the bytes of a `tokenizer.json`; `path` is only used in messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Tokenizer> {
        // The crate's loading (seconds for a large Unigram vocabulary, and the tail of a
        // small model's load) starts first and runs beside the building of the fast path; a
        // panic inside the crate becomes an error.
        let load_reference = || {
            std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes))
                .map_err(|_| "the tokenizers crate panicked while loading it".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        };
        let (reference, head_and_fast) = std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("stk-tokenizer-load".into())
                .spawn_scoped(scope, load_reference);
            let head_and_fast = Self::head_and_fast_path(bytes, path);
            let reference = match spawned {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err("the tokenizer loading thread panicked".into())),
                Err(_) => load_reference(),
            };
            (reference, head_and_fast)
        });
        let (model, fast) = head_and_fast?;
        let mut reference = reference.map_err(|e| {
            Error::Tokenizer(format!("{}: cannot load tokenizer: {e}", path.display()))
        })?;
        reference
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        reference.with_padding(None);
        let unk_id = match (&model.unk_id, &model.unk_token) {
            (Some(serde_json::Value::Number(id)), _) => {
                id.as_u64().and_then(|id| u32::try_from(id).ok())
            }
            (_, Some(serde_json::Value::String(token))) => reference.token_to_id(token),
            _ => None,
        };
        let (fast, added) = match AddedTokenGate::new(&reference) {
            Some(gate) => (fast, gate),
            None => (None, AddedTokenGate::default()),
        };
        // One copy of the vocabulary at load for the figures callers ask about.
        let vocab = reference.get_vocab(true);
        let id_space = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
        let token_chars: Vec<u32> = vocab.keys().map(|t| t.chars().count() as u32).collect();
        Ok(Tokenizer {
            reference,
            fast,
            added,
            unk_id,
            id_space,
            token_chars,
            path: path.to_path_buf(),
        })
    }

    /// The file's model settings and the fast path, if any.
    fn head_and_fast_path(bytes: &[u8], path: &Path) -> Result<(ModelHead, Option<FastPath>)> {
        let mut head: Head = serde_json::from_slice(bytes).map_err(|e| {
            let what = if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
                "not a tokenizer.json"
            } else {
                "not a valid JSON tokenizer file"
            };
            Error::config(path, format!("{what}: {e}"))
        })?;
        let Some(model) = head.model.take() else {
            return Err(Error::config(
                path,
                "not a tokenizer.json: expected a JSON object with a `model` key",
            ));
        };
        let fast = fast_path_for(&head, &model, bytes);
        Ok((model, fast))
    }

    /// Which implementation encodes: `"tokenizers"` (the crate, for every text) or the name
    /// of the fast path (`"bert-wordpiece"`, `"metaspace-unigram"`), which still hands the crate the texts it
    /// cannot guarantee (see the module docs).
    pub fn backend(&self) -> &'static str {
        self.fast.as_ref().map_or("tokenizers", FastPath::name)
    }

    /// The fast path's ids for `text`, or `None` when this tokenizer has no fast path or the
    /// fast path hands this text to the crate. For tests and diagnostics: [`Tokenizer::encode`]
    /// is the same with the fallback.
    pub fn encode_fast_only(&self, text: &str) -> Option<Vec<u32>> {
        let mut ids = Vec::new();
        self.try_fast(text, usize::MAX, &mut ids).then_some(ids)
    }

    /// Append the fast path's first `max_tokens` ids of `text` to `out`; `false` (and `out`
    /// unchanged) when the crate must encode it.
    fn try_fast(&self, text: &str, max_tokens: usize, out: &mut Vec<u32>) -> bool {
        let Some(fast) = &self.fast else {
            return false;
        };
        if self.added.raw_match(text) {
            return false;
        }
        let base = out.len();
        let check = |n: &str| self.added.normalized_free(n);
        let normalized_check: Option<&dyn Fn(&str) -> bool> = if self.added.normalized.is_empty() {
            None
        } else {
            Some(&check)
        };
        let done = match fast {
            FastPath::BertWordPiece(f) => f.encode(text, max_tokens, out, normalized_check),
            FastPath::MetaspaceUnigram(f) => f.encode(text, max_tokens, out, normalized_check),
        };
        match done {
            Ok(()) => {
                if out.len() - base > max_tokens {
                    out.truncate(base + max_tokens);
                }
                true
            }
            Err(_) => {
                out.truncate(base);
                false
            }
        }
    }

    /// The file this tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ids of `text` without special tokens, truncation or padding: the crate's
    /// `encode(text, false)` ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        self.encode_into(text, usize::MAX, &mut ids)?;
        Ok(ids)
    }

    /// The first `max_tokens` ids of [`Tokenizer::encode`] (truncation on the right, no special
    /// tokens), as the crate gives with truncation to `max_tokens`.
    pub fn encode_truncated(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        self.encode_into(text, max_tokens, &mut ids)?;
        Ok(ids)
    }

    /// Append the first `max_tokens` ids of `text` to `out` (reusing its allocation).
    pub fn encode_into(&self, text: &str, max_tokens: usize, out: &mut Vec<u32>) -> Result<()> {
        if max_tokens == 0 || self.try_fast(text, max_tokens, out) {
            return Ok(());
        }
        let encoding = self
            .reference
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", self.path.display())))?;
        let ids = encoding.get_ids();
        out.extend_from_slice(&ids[..ids.len().min(max_tokens)]);
        Ok(())
    }

    /// [`Tokenizer::encode`] for many texts, in parallel across texts.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts.par_iter().map(|t| self.encode(t)).collect()
    }

    /// [`Tokenizer::encode_truncated`] for many texts, in parallel across texts.
    pub fn encode_batch_truncated(
        &self,
        texts: &[&str],
        max_tokens: usize,
    ) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map(|t| self.encode_truncated(t, max_tokens))
            .collect()
    }

    /// The model's unknown-token id (WordPiece/WordLevel/BPE `unk_token`, Unigram `unk_id`).
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.reference.get_vocab_size(true)
    }

    /// One more than the largest id [`Tokenizer::encode`] can give: the rows a table needs.
    pub fn id_space(&self) -> usize {
        self.id_space
    }

    /// The length in characters (Unicode scalar values) of every vocabulary token, added
    /// tokens included, in no particular order (its one user, model2vec's median, sorts).
    pub fn token_lengths_in_chars(&self) -> &[u32] {
        &self.token_chars
    }

    /// Token string -> id, added tokens included.
    pub fn vocab(&self) -> HashMap<String, u32> {
        self.reference.get_vocab(true)
    }

    /// The token string of `id`, if any.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.reference.id_to_token(id)
    }

    /// The id of a token string, if it is in the vocabulary (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.reference.token_to_id(token)
    }

    /// The `tokenizers` crate's tokenizer (truncation and padding disabled).
    pub fn reference(&self) -> &tokenizers::Tokenizer {
        &self.reference
    }
}

/// `tokenizer.json` without the vocabulary (skipped while parsing, it is most of the file).
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    normalizer: serde_json::Value,
    #[serde(default)]
    pre_tokenizer: serde_json::Value,
    #[serde(default)]
    post_processor: serde_json::Value,
    model: Option<ModelHead>,
}

/// The model settings of `tokenizer.json`, as loosely typed as the file may be.
#[derive(Deserialize)]
struct ModelHead {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    unk_token: Option<serde_json::Value>,
    unk_id: Option<serde_json::Value>,
    continuing_subword_prefix: Option<serde_json::Value>,
    max_input_chars_per_word: Option<serde_json::Value>,
    byte_fallback: Option<serde_json::Value>,
}

/// Just the model's vocabulary, in the shape `V` of its model type.
#[derive(Deserialize)]
struct VocabOf<V> {
    model: ModelVocab<V>,
}

#[derive(Deserialize)]
struct ModelVocab<V> {
    vocab: V,
}

/// The fast path whose configuration the file has exactly, if any.
fn fast_path_for(head: &Head, model: &ModelHead, bytes: &[u8]) -> Option<FastPath> {
    if !post_processor_keeps_ids(&head.post_processor) {
        return None;
    }
    let str_of = |v: &Option<serde_json::Value>| v.as_ref()?.as_str().map(str::to_owned);
    match str_of(&model.kind)?.as_str() {
        "WordPiece" => {
            let normalizer = &head.normalizer;
            if normalizer.get("type")?.as_str()? != "BertNormalizer" {
                return None;
            }
            let flag = |key: &str| normalizer.get(key)?.as_bool();
            let lowercase = flag("lowercase")?;
            let strip_accents = match normalizer.get("strip_accents")? {
                serde_json::Value::Null => lowercase,
                v => v.as_bool()?,
            };
            let cfg = BertNormalizerConfig {
                clean_text: flag("clean_text")?,
                handle_chinese_chars: flag("handle_chinese_chars")?,
                strip_accents,
                lowercase,
            };
            if head.pre_tokenizer.get("type")?.as_str()? != "BertPreTokenizer" {
                return None;
            }
            let max_chars = model.max_input_chars_per_word.as_ref()?.as_u64()?;
            let vocab: VocabOf<HashMap<String, u32>> = serde_json::from_slice(bytes).ok()?;
            let wordpiece = WordPiece::new(
                &vocab.model.vocab,
                &str_of(&model.unk_token)?,
                &str_of(&model.continuing_subword_prefix)?,
                usize::try_from(max_chars).ok()?,
            )?;
            Some(FastPath::BertWordPiece(BertWordPiece::new(cfg, wordpiece)))
        }
        "Unigram" => {
            if model.byte_fallback.as_ref().and_then(|b| b.as_bool()) != Some(false) {
                return None;
            }
            let unk_id = usize::try_from(model.unk_id.as_ref()?.as_u64()?).ok()?;
            let charsmap = match head.normalizer.get("type") {
                None if head.normalizer.is_null() => None,
                Some(t) if t.as_str() == Some("Precompiled") => {
                    // Its deserializer borrows the charsmap string, so it reads from text.
                    let text = serde_json::to_string(&head.normalizer).ok()?;
                    Some(serde_json::from_str::<Precompiled>(&text).ok()?)
                }
                _ => return None,
            };
            let replacement = whitespace_split_metaspace(&head.pre_tokenizer)?;
            let vocab: VocabOf<Vec<(String, f64)>> = serde_json::from_slice(bytes).ok()?;
            let model = UnigramModel::new(&vocab.model.vocab, unk_id)?;
            Some(FastPath::MetaspaceUnigram(MetaspaceUnigram {
                normalizer: CharsmapNormalizer::new(charsmap),
                replacement,
                model,
            }))
        }
        _ => None,
    }
}

/// The replacement char of `Sequence[WhitespaceSplit, Metaspace(prepend_scheme always,
/// split true)]`, the only Metaspace form with a fast path.
fn whitespace_split_metaspace(pre: &serde_json::Value) -> Option<char> {
    if pre.get("type")?.as_str()? != "Sequence" {
        return None;
    }
    let [split, meta] = pre.get("pretokenizers")?.as_array()?.as_slice() else {
        return None;
    };
    if split.get("type")?.as_str()? != "WhitespaceSplit"
        || meta.get("type")?.as_str()? != "Metaspace"
        || meta.get("prepend_scheme")?.as_str()? != "always"
        || !meta.get("split")?.as_bool()?
        || !matches!(
            meta.get("add_prefix_space"),
            None | Some(serde_json::Value::Bool(true))
        )
    {
        return None;
    }
    let mut chars = meta.get("replacement")?.as_str()?.chars();
    match (chars.next(), chars.next()) {
        (Some(r), None) if !r.is_whitespace() => Some(r),
        _ => None,
    }
}

/// Post-processors that add nothing when special tokens are not requested.
fn post_processor_keeps_ids(post: &serde_json::Value) -> bool {
    post.is_null()
        || matches!(
            post.get("type").and_then(|t| t.as_str()),
            Some("TemplateProcessing" | "BertProcessing" | "RobertaProcessing" | "ByteLevel")
        )
}

#[cfg(test)]
mod tests {
    use super::AddedTokenGate;

    /// The first-byte prefilter (one, two, three or more distinct first bytes: a different
    /// search each) never hides an added token in the raw text.
    #[test]
    fn raw_match_finds_every_added_token() {
        let tables: [&[&str]; 5] = [
            &[],
            &["[CLS]", "[SEP]"],
            &["[CLS]", "<s>"],
            &["[CLS]", "<s>", "\u{e9}t\u{e9}"],
            &["[CLS]", "<s>", "\u{e9}t\u{e9}", "zz"],
        ];
        let texts = [
            "",
            "plain text",
            "a [CLS] b",
            "[SEP]",
            "a <s",
            "<s>",
            "\u{e9}t",
            "l'\u{e9}t\u{e9}",
            "z",
            "buzz",
            "[CL",
            "<",
            "[",
        ];
        for raw in tables {
            let mut gate = AddedTokenGate {
                raw: raw.iter().map(|t| t.to_string()).collect(),
                ..AddedTokenGate::default()
            };
            gate.index_raw_first_bytes();
            for text in texts {
                let contained = raw.iter().any(|t| text.contains(t));
                assert_eq!(gate.raw_match(text), contained, "{raw:?} in {text:?}");
            }
        }
    }
}
