//! model2vec semantics (`StaticModel.from_pretrained(folder).encode(texts)` of model2vec 0.10)
//! on top of the CPU [`StaticEmbedding`] (docs/model2vec-semantics.md says the same at length):
//!
//! * **Folder layouts**, tried in model2vec's order, the first whose three files exist wins
//!   ([`Model2VecLayout`]): `config.json` + `model.safetensors` + `tokenizer.json`;
//!   `config_sentence_transformers.json` + `model.safetensors` + `tokenizer.json`;
//!   `config_sentence_transformers.json` + `0_StaticEmbedding/{model.safetensors, tokenizer.json}`.
//!   `normalize` and `max_length` are read from the config file of that layout.
//! * **`max_length`**: the caller's ([`MaxLength`]), else the config's `max_length` (`null`
//!   there: no limit), else 512.
//!
//! Encoding one text:
//!
//! 1. it is cut to `max_length × median_token_length` characters (Unicode scalar values, as
//!    Python slices a `str`), where the median is over the character lengths of the
//!    vocabulary's token strings (added tokens included), truncated to an integer;
//! 2. it is tokenized without special tokens and truncated to its first `max_length` ids: the
//!    reference replaces `tokenizer.json`'s own truncation by this one, so unknown tokens
//!    count towards the limit;
//! 3. the unknown-token id is dropped;
//! 4. the vector is the mean of the remaining (mapped, weighted) rows, zeros when none is left;
//! 5. with `normalize`: `v / (‖v‖ + 1e-32)`.
//!
//! With no `max_length` (`None`) neither cut happens, whatever `tokenizer.json` says.
//!
//! The token-level calls follow the same steps: `tokenize` is steps 2–3 with the model's
//! `max_length` (no character cut), `encode_as_sequence` is steps 1–3 with the call's own
//! `max_length` (`None` by default: the model's is not used) and gives each remaining id's
//! (mapped, weighted) row instead of their mean.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Deserializer};
use stk_core::{Error, Result};
use stk_cpu::{EmbeddingBag, StaticEmbedding};

/// `max_length` of the reference when neither the caller nor the config gives one.
pub const DEFAULT_MAX_LENGTH: usize = 512;

/// The token limit (and the character cut derived from it) model2vec semantics apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxLength {
    /// The config's `max_length` (`null` there: [`MaxLength::Unlimited`]), else 512: what
    /// `from_pretrained` without a `max_length` argument does.
    #[default]
    FromConfig,
    /// At most this many tokens. 0 cuts every text to nothing, so every vector is zeros, as in
    /// the reference.
    Limit(usize),
    /// No character cut and no token limit (`max_length=None`).
    Unlimited,
}

impl MaxLength {
    /// The limit in force for a folder with `config`.
    pub fn resolve(self, config: &Model2VecConfig) -> Option<usize> {
        match self {
            MaxLength::FromConfig => config.max_length.unwrap_or(Some(DEFAULT_MAX_LENGTH)),
            MaxLength::Limit(n) => Some(n),
            MaxLength::Unlimited => None,
        }
    }
}

/// `Some(n)` is a limit of `n` tokens, `None` no limit (the reference's `max_length` values).
impl From<Option<usize>> for MaxLength {
    fn from(limit: Option<usize>) -> Self {
        limit.map_or(MaxLength::Unlimited, MaxLength::Limit)
    }
}

/// The files of one model2vec folder layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model2VecLayout {
    /// The config file (`config.json` or `config_sentence_transformers.json`); `None` only for
    /// a bare table folder, which stk reads with the default config (model2vec refuses it).
    pub config: Option<PathBuf>,
    /// The folder holding `model.safetensors` and `tokenizer.json`.
    pub table_dir: PathBuf,
}

/// model2vec 0.10's `FOLDER_LAYOUTS`, in its order: config file, table folder.
const LAYOUTS: [(&str, &str); 3] = [
    ("config.json", ""),
    ("config_sentence_transformers.json", ""),
    ("config_sentence_transformers.json", "0_StaticEmbedding"),
];

fn has_table(dir: &Path) -> bool {
    dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file()
}

/// `dir/sub`, or `dir` itself for an empty `sub` (no trailing separator in messages).
fn sub_dir(dir: &Path, sub: &str) -> PathBuf {
    if sub.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(sub)
    }
}

impl Model2VecLayout {
    /// The layout model2vec loads from `dir`: the first of its three whose files all exist.
    pub fn find(dir: &Path) -> Option<Self> {
        LAYOUTS.iter().find_map(|&(config, table)| {
            let (config, table_dir) = (dir.join(config), sub_dir(dir, table));
            (config.is_file() && has_table(&table_dir)).then_some(Model2VecLayout {
                config: Some(config),
                table_dir,
            })
        })
    }

    /// [`Model2VecLayout::find`], else a table (at the root or in `0_StaticEmbedding/`)
    /// without any config file, read with model2vec's defaults.
    pub fn find_or_bare(dir: &Path) -> Option<Self> {
        Self::find(dir).or_else(|| {
            ["", "0_StaticEmbedding"]
                .iter()
                .map(|sub| sub_dir(dir, sub))
                .find(|d| has_table(d))
                .map(|table_dir| Model2VecLayout {
                    config: None,
                    table_dir,
                })
        })
    }

    /// The config of this layout (the default one for a bare table).
    pub fn read_config(&self) -> Result<Model2VecConfig> {
        self.config
            .as_deref()
            .map_or(Ok(Model2VecConfig::default()), Model2VecConfig::read)
    }
}

/// What a model2vec config says that matters for encoding.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Model2VecConfig {
    /// `model2vec`, absent for folders model2vec saves, something else for other model kinds.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Whether `encode` L2-normalizes its output (absent: no).
    #[serde(default)]
    pub normalize: Option<bool>,
    /// `None`: the key is absent; `Some(None)`: it is `null` (no limit).
    #[serde(default, deserialize_with = "present")]
    pub max_length: Option<Option<usize>>,
}

/// A key that is present (possibly `null`), as opposed to absent (`#[serde(default)]`).
fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<usize>>, D::Error> {
    Option::<usize>::deserialize(d).map(Some)
}

impl Model2VecConfig {
    /// Read a model2vec config file (`config.json` or `config_sentence_transformers.json`).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parse a config file's bytes; `path` names it in messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::config(path, format!("not a valid model2vec config: {e}")))
    }

    /// Whether a folder with this config is model2vec's own (its type is model2vec or unsaid).
    pub fn is_model2vec(&self) -> bool {
        self.model_type.as_deref().is_none_or(|t| t == "model2vec")
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
    /// Load a model2vec folder in any of model2vec's layouts (see the module docs).
    /// `normalize` overrides the config's; `max_length` is the caller's token limit.
    pub fn from_dir(
        dir: impl AsRef<Path>,
        normalize: Option<bool>,
        max_length: MaxLength,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let layout = Model2VecLayout::find_or_bare(dir).ok_or_else(|| {
            Error::config(
                dir,
                "is not a model2vec folder: expected config.json + model.safetensors + \
                 tokenizer.json, config_sentence_transformers.json + model.safetensors + \
                 tokenizer.json, or config_sentence_transformers.json + \
                 0_StaticEmbedding/{model.safetensors, tokenizer.json}",
            )
        })?;
        let config = layout.read_config()?;
        let embedding = StaticEmbedding::from_dir(&layout.table_dir)?;
        Ok(Self::configured(embedding, &config, normalize, max_length))
    }

    /// A loaded table with its folder's config: `normalize` overrides the config's,
    /// `max_length` is resolved against it (what every way of loading shares).
    pub fn configured(
        embedding: StaticEmbedding,
        config: &Model2VecConfig,
        normalize: Option<bool>,
        max_length: MaxLength,
    ) -> Self {
        Self::from_embedding(
            embedding,
            normalize.unwrap_or(config.normalize.unwrap_or(false)),
            max_length.resolve(config),
        )
    }

    /// Wrap an already loaded [`StaticEmbedding`]; `max_length` `None` is no limit.
    pub fn from_embedding(
        embedding: StaticEmbedding,
        normalize: bool,
        max_length: Option<usize>,
    ) -> Self {
        let tokenizer = embedding.tokenizer();
        let median_token_length = median_token_length(
            tokenizer
                .token_lengths_in_chars()
                .iter()
                .map(|&n| n as usize),
        );
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

    /// Width of each embedding.
    pub fn dim(&self) -> usize {
        self.embedding.dim()
    }
    /// The table, tokenizer and per-token weights.
    pub fn embedding(&self) -> &StaticEmbedding {
        &self.embedding
    }
    /// Whether `encode` L2-normalizes (the load option, else the config).
    pub fn normalize(&self) -> bool {
        self.normalize
    }
    /// The token limit in force (`None`: no limit, no character cut).
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
    /// The folder the model was loaded from (the embedded model: a placeholder name).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Characters of a text that are tokenized (`None`: all).
    pub fn char_limit(&self) -> Option<usize> {
        self.max_length
            .map(|m| m.saturating_mul(self.median_token_length))
    }

    /// The ids averaged for `text` (steps 1–3), into `ids` (replacing its content).
    pub fn token_ids_into(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        self.ids_into(text, self.max_length, CharCut::Yes, ids)
    }

    /// model2vec's `tokenize`: the ids of `text` truncated to the model's `max_length`, the
    /// unknown id dropped, without the character cut (steps 2–3).
    pub fn tokenize_into(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        self.ids_into(text, self.max_length, CharCut::No, ids)
    }

    /// The ids whose rows model2vec's `encode_as_sequence(max_length=...)` gives: steps 1–3
    /// with the call's `max_length` (`None`: no limit and no cut, whatever the model's).
    pub fn sequence_ids_into(
        &self,
        text: &str,
        max_length: Option<usize>,
        ids: &mut Vec<u32>,
    ) -> Result<()> {
        self.ids_into(text, max_length, CharCut::Yes, ids)
    }

    /// Steps 1–3 with `max_length` as the limit; the character cut only with `cut`.
    fn ids_into(
        &self,
        text: &str,
        max_length: Option<usize>,
        cut: CharCut,
        ids: &mut Vec<u32>,
    ) -> Result<()> {
        let text = match max_length.filter(|_| cut == CharCut::Yes) {
            Some(m) => cut_chars(text, m.saturating_mul(self.median_token_length)),
            None => text,
        };
        ids.clear();
        // The tokenizer's own truncation (tokenizer.json) is replaced by `max_length`.
        let limit = max_length.unwrap_or(usize::MAX);
        self.embedding.tokenizer().encode_into(text, limit, ids)?;
        if let Some(unk) = self.unk_id {
            ids.retain(|&id| id != unk);
        }
        Ok(())
    }

    /// model2vec's `encode_as_sequence`: for each text, the rows of its ids
    /// ([`Model2Vec::sequence_ids_into`]), neither averaged nor normalized. In parallel.
    pub fn encode_as_sequence(
        &self,
        texts: &[&str],
        max_length: Option<usize>,
    ) -> Result<TokenEmbeddings> {
        let ids = self.sequence_ids(texts, max_length)?;
        TokenEmbeddings::gather(self.embedding.bag(), &ids)
    }

    /// [`Model2Vec::encode_as_sequence`] into `out`, which must hold exactly every text's rows
    /// ([`Model2Vec::sequence_offsets`]); returns the `texts.len() + 1` row offsets.
    pub fn encode_as_sequence_into(
        &self,
        texts: &[&str],
        max_length: Option<usize>,
        out: &mut [f32],
    ) -> Result<Vec<usize>> {
        let ids = self.sequence_ids(texts, max_length)?;
        rows_into(self.embedding.bag(), &ids, out)?;
        Ok(row_offsets(&ids))
    }

    /// The row offsets [`Model2Vec::encode_as_sequence`] gives `texts` (`texts.len() + 1`,
    /// from 0: text `i` is rows `offsets[i]..offsets[i + 1]`); only tokenizes.
    pub fn sequence_offsets(
        &self,
        texts: &[&str],
        max_length: Option<usize>,
    ) -> Result<Vec<usize>> {
        Ok(row_offsets(&self.sequence_ids(texts, max_length)?))
    }

    /// model2vec's `tokenize` ([`Model2Vec::tokenize_into`]) of every text, in parallel.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        self.ids_of(texts, self.max_length, CharCut::No)
    }

    /// [`Model2Vec::sequence_ids_into`] of every text, in parallel.
    fn sequence_ids(&self, texts: &[&str], max_length: Option<usize>) -> Result<Vec<Vec<u32>>> {
        self.ids_of(texts, max_length, CharCut::Yes)
    }

    /// [`Model2Vec::ids_into`] of every text, in parallel.
    fn ids_of(
        &self,
        texts: &[&str],
        max_length: Option<usize>,
        cut: CharCut,
    ) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map(|text| {
                let mut ids = Vec::new();
                self.ids_into(text, max_length, cut, &mut ids)?;
                Ok(ids)
            })
            .collect()
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

/// `ids.len() + 1` row offsets of the id lists laid end to end, from 0.
fn row_offsets(ids: &[Vec<u32>]) -> Vec<usize> {
    std::iter::once(0)
        .chain(ids.iter().scan(0usize, |end, ids| {
            *end += ids.len();
            Some(*end)
        }))
        .collect()
}

/// The rows of every id list, one list after the other, into `out` (exactly all their rows),
/// in parallel.
fn rows_into(bag: &EmbeddingBag, ids: &[Vec<u32>], out: &mut [f32]) -> Result<()> {
    let rows: usize = ids.iter().map(Vec::len).sum();
    if rows.checked_mul(bag.dim()) != Some(out.len()) {
        return Err(Error::shape(
            "out",
            format!("{rows} token rows × {} values", bag.dim()),
            &[out.len()],
        ));
    }
    let mut slices = Vec::with_capacity(ids.len());
    let mut rest = out;
    for ids in ids {
        let (text_rows, tail) = rest.split_at_mut(ids.len() * bag.dim());
        slices.push(text_rows);
        rest = tail;
    }
    ids.par_iter()
        .zip(slices)
        .try_for_each(|(ids, rows)| bag.rows_into(ids, rows))
}

/// Whether a text is cut to `max_length × median_token_length` characters before tokenizing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CharCut {
    Yes,
    No,
}

/// The rows of each text's tokens (model2vec's `encode_as_sequence`): text `i` has
/// `tokens(i)` rows of `dim` f32 values, all texts' rows in one row-major buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEmbeddings {
    values: Vec<f32>,
    /// `texts + 1` row offsets: text `i` is rows `offsets[i]..offsets[i + 1]`.
    offsets: Vec<usize>,
    dim: usize,
}

impl TokenEmbeddings {
    /// The rows of every id list, read from `bag` in parallel.
    fn gather(bag: &EmbeddingBag, ids: &[Vec<u32>]) -> Result<TokenEmbeddings> {
        let offsets = row_offsets(ids);
        let len = offsets[ids.len()]
            .checked_mul(bag.dim())
            .ok_or_else(|| Error::invalid("too many tokens for one output buffer"))?;
        let mut values = stk_core::zeroed_f32s(len, "the token embeddings")?;
        rows_into(bag, ids, &mut values)?;
        Ok(TokenEmbeddings {
            values,
            offsets,
            dim: bag.dim(),
        })
    }

    /// Number of texts.
    pub fn texts(&self) -> usize {
        self.offsets.len() - 1
    }
    /// Width of each row.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of rows of text `i` (its tokens); panics if `i >= texts()`.
    pub fn tokens(&self, i: usize) -> usize {
        self.offsets[i + 1] - self.offsets[i]
    }
    /// The rows of text `i`, row-major (`tokens(i) × dim` values); panics if `i >= texts()`.
    pub fn text(&self, i: usize) -> &[f32] {
        &self.values[self.offsets[i] * self.dim..self.offsets[i + 1] * self.dim]
    }
    /// Row offsets: text `i` is rows `offsets()[i]..offsets()[i + 1]` of [`TokenEmbeddings::as_slice`].
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }
    /// Every text's rows, one after the other (`offsets().last() × dim` values).
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }
    /// The values and row offsets, without a copy.
    pub fn into_parts(self) -> (Vec<f32>, Vec<usize>) {
        (self.values, self.offsets)
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

/// model2vec's normalization (`stk_cpu::normalize::normalize_model2vec`).
pub use stk_cpu::normalize::normalize_model2vec;

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
        let m = Model2Vec::from_dir(committed("potion-base-8M-f16"), None, MaxLength::Limit(16))
            .unwrap();
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
        let all = Model2Vec::from_dir(committed("potion-base-8M-f16"), None, MaxLength::Unlimited)
            .unwrap();
        all.token_ids_into(&long, &mut ids).unwrap();
        assert_eq!(ids, tok.encode(&long).unwrap());
    }

    /// A word-level folder (`[UNK]` = 4) with `config` as its config.json.
    fn word_level_folder(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = r#"{"version": "1.0", "truncation": {"direction": "Left", "max_length": 2,
            "strategy": "LongestFirst", "stride": 0}, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
            "decoder": null, "model": {"type": "WordLevel", "unk_token": "[UNK]",
            "vocab": {"[PAD]": 0, "dog": 1, "cat": 2, "the": 3, "[UNK]": 4}}}"#;
        std::fs::write(dir.path().join("tokenizer.json"), tokenizer).unwrap();
        let rows: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let table = stk_core::Tensor::from_slice([5, 2], &rows).unwrap();
        stk_core::write_safetensors(
            dir.path().join("model.safetensors"),
            &[("embeddings", &table)],
        )
        .unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn unknown_tokens_count_towards_the_token_limit() {
        let dir = word_level_folder(r#"{"max_length": 2}"#);
        let m = Model2Vec::from_dir(dir.path(), None, MaxLength::FromConfig).unwrap();
        assert_eq!(
            (m.max_length(), m.unk_id(), m.median_token_length()),
            (Some(2), Some(4), 3)
        );
        let mut ids = Vec::new();
        // Cut to 6 chars ("zz dog"), then 2 tokens ([UNK], dog), then [UNK] dropped; the
        // tokenizer.json's left truncation at 2 is not applied.
        m.token_ids_into("zz dog cat the", &mut ids).unwrap();
        assert_eq!(ids, [1]);
        m.token_ids_into("zz zz dog", &mut ids).unwrap();
        assert_eq!(ids, [] as [u32; 0]);
        let mut out = vec![1f32; m.dim()];
        m.encode_into(&["zz zz dog"], &mut out).unwrap();
        assert_eq!(out, [0.0, 0.0]);
        // No limit: nothing is cut, not even by tokenizer.json.
        let all = Model2Vec::from_dir(dir.path(), None, MaxLength::Unlimited).unwrap();
        all.token_ids_into("zz dog cat the", &mut ids).unwrap();
        assert_eq!(ids, [1, 2, 3]);
    }

    /// `tokenize` truncates to the model's limit without the character cut;
    /// `encode_as_sequence` cuts and truncates by the call's limit only (none by default).
    #[test]
    fn token_level_calls_take_their_own_limits() {
        let dir = word_level_folder(r#"{"max_length": 2}"#);
        let m = Model2Vec::from_dir(dir.path(), None, MaxLength::FromConfig).unwrap();
        let mut ids = Vec::new();
        // The model's 6-char cut leaves "the   ", tokenize's 2-token limit leaves both words.
        m.token_ids_into("the   dog cat", &mut ids).unwrap();
        assert_eq!(ids, [3]);
        m.tokenize_into("the   dog cat", &mut ids).unwrap();
        assert_eq!(ids, [3, 1]);
        let texts = ["the   dog cat", "zz", ""];
        let cases: [(Option<usize>, &[&[f32]]); 3] = [
            (None, &[&[6.0, 7.0, 2.0, 3.0, 4.0, 5.0], &[], &[]]),
            // Cut to 6 chars ("the   "): one token, though the limit allows two.
            (Some(2), &[&[6.0, 7.0], &[], &[]]),
            (Some(0), &[&[], &[], &[]]),
        ];
        for (max_length, want) in cases {
            let got = m.encode_as_sequence(&texts, max_length).unwrap();
            assert_eq!((got.texts(), got.dim()), (3, 2));
            for (i, rows) in want.iter().enumerate() {
                assert_eq!(got.text(i), *rows, "max_length {max_length:?}, text {i}");
                assert_eq!(got.tokens(i), rows.len() / 2);
            }
        }
        // Into a caller's buffer: the same rows and offsets; any other length is refused.
        let all = m.encode_as_sequence(&texts, None).unwrap();
        let mut out = vec![f32::NAN; all.as_slice().len()];
        let offsets = m.encode_as_sequence_into(&texts, None, &mut out).unwrap();
        assert_eq!((&out[..], &offsets[..]), (all.as_slice(), all.offsets()));
        let e = m
            .encode_as_sequence_into(&texts, None, &mut out[1..])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("out: expected shape 3 token rows × 2 values"),
            "{e}"
        );
        let none = m.encode_as_sequence(&[], None).unwrap();
        assert_eq!(
            (none.texts(), none.offsets(), none.as_slice()),
            (0, &[0][..], &[][..])
        );
    }

    /// A text's token rows average to its embedding (normalization off), for the f16 table
    /// and the vocabulary-quantized int8 one (mapping and weights).
    #[test]
    fn sequence_rows_average_to_the_embedding() {
        let texts = [
            "Static embeddings are fast.",
            "naïve café, 東京 and emoji 🙂",
            "",
        ];
        for name in ["potion-base-8M-f16", "potion-base-8M-int8-vq2048-d128"] {
            let m = Model2Vec::from_dir(committed(name), Some(false), MaxLength::Limit(8)).unwrap();
            let rows = m.encode_as_sequence(&texts, Some(8)).unwrap();
            let mut want = vec![0f32; texts.len() * m.dim()];
            m.encode_into(&texts, &mut want).unwrap();
            for (i, want) in want.chunks(m.dim()).enumerate() {
                let mut mean = vec![0f32; m.dim()];
                for row in rows.text(i).chunks(m.dim()) {
                    mean.iter_mut().zip(row).for_each(|(s, &x)| *s += x);
                }
                let n = rows.tokens(i).max(1) as f32;
                mean.iter_mut().for_each(|s| *s /= n);
                assert_eq!(mean, want, "{name}, text {i}");
            }
            assert!(rows.tokens(0) > 4 && rows.tokens(1) <= 8 && rows.tokens(2) == 0);
        }
    }

    #[test]
    fn max_length_comes_from_the_caller_then_the_config_then_512() {
        let cases = [
            (r#"{}"#, MaxLength::FromConfig, Some(512)),
            (r#"{"max_length": null}"#, MaxLength::FromConfig, None),
            (r#"{"max_length": 4}"#, MaxLength::FromConfig, Some(4)),
            (r#"{"max_length": 4}"#, MaxLength::Limit(7), Some(7)),
            (r#"{"max_length": 4}"#, MaxLength::Unlimited, None),
            (r#"{"max_length": null}"#, MaxLength::Limit(0), Some(0)),
        ];
        for (config, arg, want) in cases {
            let dir = word_level_folder(config);
            let m = Model2Vec::from_dir(dir.path(), None, arg).unwrap();
            assert_eq!(m.max_length(), want, "{config} {arg:?}");
        }
        let dir = word_level_folder(r#"{"max_length": "long"}"#);
        let e = Model2Vec::from_dir(dir.path(), None, MaxLength::FromConfig).unwrap_err();
        assert!(e.to_string().contains("config.json"), "{e}");
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
