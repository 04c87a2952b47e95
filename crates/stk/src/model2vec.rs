//! model2vec semantics (`StaticModel.encode` of model2vec 0.10) on top of the CPU
//! [`StaticEmbedding`]:
//!
//! 1. each text is cut to `max_length × median_token_length` characters (Unicode scalar values,
//!    as Python slices a `str`), where the median is over the character lengths of the
//!    vocabulary's token strings (added tokens included), truncated to an integer;
//! 2. it is tokenized without special tokens (with the truncation `tokenizer.json` itself
//!    configures, which the `tokenizers` library applies on every encode);
//! 3. the unknown-token id is dropped;
//! 4. the ids left are cut to `max_length`;
//! 5. the vector is the mean of their (mapped, weighted) rows, zeros when none is left;
//! 6. with `normalize` (config.json, default false): `v / (‖v‖ + 1e-32)`.
//!
//! `max_length` is an argument of `encode` in the reference (default 512, `None` for no cut),
//! not a config key: the `max_length` some config.json files carry is not read.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use stk_core::{Error, Result};
use stk_cpu::StaticEmbedding;

/// `max_length` of the reference's `encode` when the caller gives none.
pub const DEFAULT_MAX_LENGTH: usize = 512;

/// What model2vec's `config.json` says that matters for encoding.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Model2VecConfig {
    /// `model2vec`, absent for older folders, something else for other model kinds.
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub normalize: Option<bool>,
}

impl Model2VecConfig {
    /// Read `config.json`; a missing file is an empty config (model2vec's own loader needs it,
    /// but nothing in it is required for encoding).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Ok(Self::default());
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::config(&path, format!("not a valid model2vec config: {e}")))
    }
}

/// A static model encoded with model2vec's rules.
#[derive(Debug)]
pub struct Model2Vec {
    embedding: StaticEmbedding,
    unk_id: Option<u32>,
    median_token_length: usize,
    max_length: Option<usize>,
    normalize: bool,
    dir: PathBuf,
}

impl Model2Vec {
    /// Load a model2vec folder (`model.safetensors`, `tokenizer.json`, `config.json`).
    /// `normalize` overrides the config's; `max_length` is the token limit (`None`: no cut).
    pub fn from_dir(
        dir: impl AsRef<Path>,
        normalize: Option<bool>,
        max_length: Option<usize>,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let config = Model2VecConfig::from_dir(dir)?;
        let embedding = StaticEmbedding::from_dir(dir)?;
        Ok(Self::from_embedding(
            embedding,
            normalize.unwrap_or(config.normalize.unwrap_or(false)),
            max_length,
        ))
    }

    /// Wrap an already loaded [`StaticEmbedding`].
    pub fn from_embedding(
        embedding: StaticEmbedding,
        normalize: bool,
        max_length: Option<usize>,
    ) -> Self {
        let tokenizer = embedding.tokenizer();
        let median_token_length =
            median_token_length(tokenizer.vocab().keys().map(|t| t.chars().count()));
        let unk_id = tokenizer.unk_id();
        let dir = embedding.dir().to_path_buf();
        Model2Vec {
            embedding,
            unk_id,
            median_token_length,
            max_length,
            normalize,
            dir,
        }
    }

    pub fn dim(&self) -> usize {
        self.embedding.dim()
    }
    pub fn embedding(&self) -> &StaticEmbedding {
        &self.embedding
    }
    pub fn normalize(&self) -> bool {
        self.normalize
    }
    pub fn max_length(&self) -> Option<usize> {
        self.max_length
    }
    /// The median character length of the vocabulary's tokens (the character cut's unit).
    pub fn median_token_length(&self) -> usize {
        self.median_token_length
    }
    /// The id dropped from every text, when the tokenizer has an unknown token.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Characters of a text that are tokenized (`None`: all).
    pub fn char_limit(&self) -> Option<usize> {
        self.max_length
            .map(|m| m.saturating_mul(self.median_token_length))
    }

    /// The ids averaged for `text` (steps 1–4), into `ids` (replacing its content).
    pub fn token_ids_into(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        let text = match self.char_limit() {
            Some(limit) => cut_chars(text, limit),
            None => text,
        };
        self.embedding.token_ids_into(text, ids)?;
        if let Some(unk) = self.unk_id {
            ids.retain(|&id| id != unk);
        }
        if let Some(m) = self.max_length {
            ids.truncate(m);
        }
        Ok(())
    }

    /// Encode `texts` into `out` (`texts.len() × dim` values, row-major), in parallel.
    pub fn encode_into(&self, texts: &[&str], out: &mut [f32]) -> Result<()> {
        let normalize = self.normalize;
        self.embedding.embed_rows_with(
            texts,
            out,
            |text, ids| self.token_ids_into(text, ids),
            |row| {
                if normalize {
                    normalize_model2vec(row)
                }
            },
        )
    }
}

/// `int(np.median(lengths))`: the middle value, or the mean of the two middle values, truncated.
pub fn median_token_length(lengths: impl Iterator<Item = usize>) -> usize {
    let mut v: Vec<usize> = lengths.collect();
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        // Mean of the two middle values, then truncated like Python's int() of a float.
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// The first `limit` characters of `text` (a Python `text[:limit]`).
pub fn cut_chars(text: &str, limit: usize) -> &str {
    // A char is at least one byte: a text of at most `limit` bytes has at most `limit` chars.
    if text.len() <= limit {
        return text;
    }
    match text.char_indices().nth(limit) {
        Some((byte, _)) => &text[..byte],
        None => text,
    }
}

/// model2vec's normalization: `v / (‖v‖ + 1e-32)` (a zero vector stays zero). The norm is
/// accumulated in f64.
pub fn normalize_model2vec(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
        + 1e-32;
    let norm = norm as f32;
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_matches_numpy_then_int() {
        assert_eq!(median_token_length([3, 1, 2].into_iter()), 2);
        assert_eq!(median_token_length([1, 2, 3, 6].into_iter()), 2); // 2.5 -> 2
        assert_eq!(median_token_length([4, 4, 5, 5].into_iter()), 4); // 4.5 -> 4
        assert_eq!(median_token_length([5, 7].into_iter()), 6);
        assert_eq!(median_token_length(std::iter::empty()), 0);
    }

    #[test]
    fn cut_counts_chars_not_bytes() {
        assert_eq!(cut_chars("héllo wörld", 4), "héll");
        assert_eq!(cut_chars("日本語", 2), "日本");
        assert_eq!(cut_chars("abc", 3), "abc");
        assert_eq!(cut_chars("abc", 10), "abc");
        assert_eq!(cut_chars("日本語", 3), "日本語");
        assert_eq!(cut_chars("abc", 0), "");
    }

    fn committed(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models")
            .join(name)
    }

    /// The mean of `ids`' rows, computed directly from the table.
    fn mean_of(m: &Model2Vec, ids: &[u32]) -> Vec<f32> {
        let mut v = vec![0f32; m.dim()];
        m.embedding().bag().mean_into(ids, &mut v).unwrap();
        if m.normalize() {
            normalize_model2vec(&mut v);
        }
        v
    }

    #[test]
    fn long_texts_are_cut_by_chars_then_by_tokens() {
        let m = Model2Vec::from_dir(committed("potion-base-8M-f16"), None, Some(16)).unwrap();
        assert_eq!(m.median_token_length(), 6);
        assert_eq!(m.char_limit(), Some(96));
        let words = [
            "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
        ];
        let long: String = (0..40)
            .map(|i| words[i % words.len()])
            .collect::<Vec<_>>()
            .join(" ");
        let tok = m.embedding().tokenizer();
        // Cut to 96 chars, tokenized, first 16 ids.
        let mut want = tok.encode(cut_chars(&long, 96)).unwrap();
        assert!(want.len() > 16);
        want.truncate(16);
        let mut ids = Vec::new();
        m.token_ids_into(&long, &mut ids).unwrap();
        assert_eq!(ids, want);
        let mut got = vec![0f32; m.dim()];
        m.encode_into(&[long.as_str()], &mut got).unwrap();
        assert_eq!(got, mean_of(&m, &want));

        // No max_length: nothing is cut.
        let all = Model2Vec::from_dir(committed("potion-base-8M-f16"), None, None).unwrap();
        all.token_ids_into(&long, &mut ids).unwrap();
        assert_eq!(ids, tok.encode(&long).unwrap());
    }

    #[test]
    fn unknown_tokens_are_dropped_before_the_token_limit() {
        let m = Model2Vec::from_dir(committed("stk-unigram-8k-64d-int8"), Some(false), Some(4))
            .unwrap();
        let unk = m.unk_id().unwrap();
        // `☃` is in none of this Unigram vocabulary's pieces (and there is no byte fallback),
        // so it becomes `<unk>`, which the reference drops.
        let text = "a☃ b☃ the cat sat on the mat";
        let raw = m.embedding().tokenizer().encode(text).unwrap();
        assert!(raw.contains(&unk), "{raw:?}");
        let mut ids = Vec::new();
        m.token_ids_into(text, &mut ids).unwrap();
        let want: Vec<u32> = raw.iter().copied().filter(|&i| i != unk).take(4).collect();
        assert_eq!(ids, want);
        // A text with no id left gives zeros.
        let mut out = vec![1f32; m.dim()];
        m.encode_into(&[""], &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn normalization_keeps_zero() {
        let mut z = [0f32; 3];
        normalize_model2vec(&mut z);
        assert_eq!(z, [0.0; 3]);
        let mut v = [3f32, 4.0];
        normalize_model2vec(&mut v);
        assert_eq!(v, [0.6, 0.8]);
    }
}
