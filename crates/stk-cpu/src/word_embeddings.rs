//! `WordEmbeddings`: a word tokenizer (whitespace or phrase) and an embedding table
//! `emb_layer.weight [V, D]`. Tokenizing pads each batch with id 0 (the reference's padding id)
//! to its longest text; the forward pass looks every position up, padding included.

use crate::features::{Features, Module, TextModule};
use crate::module_files::{float_tensor, open_weights, read_json_config};
use crate::phrase_tokenizer::{PhraseTokenizer, PHRASE_TOKENIZER_CONFIG};
use crate::whitespace_tokenizer::{WhitespaceTokenizer, WHITESPACE_TOKENIZER_CONFIG};
use serde::Deserialize;
use std::path::Path;
use stk_core::{bf16, f16, DType, Error, Result, Tensor};

/// Config file of the module.
pub const WORD_EMBEDDINGS_CONFIG: &str = "wordembedding_config.json";
/// The table inside `model.safetensors`.
pub const WORD_EMBEDDINGS_TENSOR: &str = "emb_layer.weight";

#[derive(Deserialize)]
struct WordEmbeddingsConfig {
    tokenizer_class: String,
    /// Training flag of the reference; no effect on inference.
    #[serde(default)]
    #[allow(dead_code)]
    update_embeddings: bool,
    #[serde(default = "default_max_seq_length")]
    max_seq_length: usize,
}

fn default_max_seq_length() -> usize {
    1_000_000
}

/// The word tokenizers a `WordEmbeddings` folder can name in `tokenizer_class`.
#[derive(Debug, Clone)]
pub enum WordTokenizer {
    /// Words split on white space, looked up whole (`WhitespaceTokenizer`).
    Whitespace(WhitespaceTokenizer),
    /// Words merged into known phrases (`PhraseTokenizer`).
    Phrase(PhraseTokenizer),
}

impl WordTokenizer {
    /// Load the tokenizer class named by `class` (any module path ending in
    /// `WhitespaceTokenizer` or `PhraseTokenizer`, in the old or the new package layout).
    pub fn from_class(class: &str, dir: &Path, config_path: &Path) -> Result<Self> {
        match class.rsplit('.').next().unwrap_or(class) {
            "WhitespaceTokenizer" => Ok(WordTokenizer::Whitespace(WhitespaceTokenizer::from_dir(dir)?)),
            "PhraseTokenizer" => Ok(WordTokenizer::Phrase(PhraseTokenizer::from_dir(dir)?)),
            _ => Err(Error::config(
                config_path,
                format!(
                    "tokenizer_class `{class}` is not supported (supported: WhitespaceTokenizer \
                     with {WHITESPACE_TOKENIZER_CONFIG}, PhraseTokenizer with {PHRASE_TOKENIZER_CONFIG})"
                ),
            )),
        }
    }

    /// Ids of the words (or phrases) of `text`, in order; unknown words dropped.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        match self {
            WordTokenizer::Whitespace(t) => t.tokenize(text),
            WordTokenizer::Phrase(t) => t.tokenize(text),
        }
    }

    /// Vocabulary size: every id is below it.
    pub fn vocab_len(&self) -> usize {
        match self {
            WordTokenizer::Whitespace(t) => t.vocab_len(),
            WordTokenizer::Phrase(t) => t.vocab_len(),
        }
    }
}

/// Word embedding lookup with its tokenizer: the first module of word-vector pipelines.
#[derive(Debug, Clone)]
pub struct WordEmbeddings {
    tokenizer: WordTokenizer,
    /// `[V, D]`, f32/f16/bf16, kept in its stored dtype (memory-mapped).
    table: Tensor,
    max_seq_length: usize,
}

impl WordEmbeddings {
    /// Read `wordembedding_config.json`, the tokenizer config it names and
    /// `model.safetensors` (`emb_layer.weight [V, D]`, V ≥ 1 and at least the vocabulary size).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config_path = dir.join(WORD_EMBEDDINGS_CONFIG);
        let cfg: WordEmbeddingsConfig = read_json_config(dir, WORD_EMBEDDINGS_CONFIG)?;
        let tokenizer = WordTokenizer::from_class(&cfg.tokenizer_class, dir, &config_path)?;
        let weights = open_weights(dir, "WordEmbeddings")?;
        let table = weights.get(WORD_EMBEDDINGS_TENSOR)?;
        let dims = table.expect_rank(
            &format!(
                "{}: `{WORD_EMBEDDINGS_TENSOR}` [V, D]",
                weights.path().display()
            ),
            2,
        )?;
        let (v, d) = (dims[0], dims[1]);
        let table = float_tensor(&weights, WORD_EMBEDDINGS_TENSOR, &[v, d])?;
        if v == 0 || d == 0 {
            return Err(Error::shape(
                format!("{}: `{WORD_EMBEDDINGS_TENSOR}`", weights.path().display()),
                "[V, D] with V ≥ 1 (row 0 pads) and D ≥ 1",
                &[v, d],
            ));
        }
        if tokenizer.vocab_len() > v {
            return Err(Error::config(
                &config_path,
                format!(
                    "the tokenizer's vocabulary has {} words but `{WORD_EMBEDDINGS_TENSOR}` has only {v} rows",
                    tokenizer.vocab_len()
                ),
            ));
        }
        Self::new(tokenizer, table, cfg.max_seq_length)
    }

    /// From parts: `table` is `[V, D]` float with `V ≥ 1` and every tokenizer id below `V`.
    pub fn new(tokenizer: WordTokenizer, table: Tensor, max_seq_length: usize) -> Result<Self> {
        table.expect_dtype(
            "word embedding table",
            &[DType::F32, DType::F16, DType::BF16],
        )?;
        let dims = table.expect_rank("word embedding table [V, D]", 2)?;
        if dims[0] == 0 || dims[0] < tokenizer.vocab_len() {
            return Err(Error::shape(
                "word embedding table",
                format!(
                    "[V, D] with V ≥ max(1, vocabulary size {})",
                    tokenizer.vocab_len()
                ),
                dims,
            ));
        }
        Ok(WordEmbeddings {
            tokenizer,
            table,
            max_seq_length,
        })
    }

    /// The word tokenizer.
    pub fn tokenizer(&self) -> &WordTokenizer {
        &self.tokenizer
    }
    /// Table rows.
    pub fn vocab_size(&self) -> usize {
        self.table.dims()[0]
    }
    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.table.dims()[1]
    }
    /// Ids kept per text (the rest are cut).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Write row `id` of the table into `out` (widened to f32).
    fn copy_row(&self, id: usize, out: &mut [f32]) -> Result<()> {
        let d = out.len();
        let range = id * d..(id + 1) * d;
        match self.table.dtype() {
            DType::F32 => out.copy_from_slice(&self.table.as_slice::<f32>()?[range]),
            DType::F16 => {
                for (o, v) in out.iter_mut().zip(&self.table.as_slice::<f16>()?[range]) {
                    *o = v.to_f32();
                }
            }
            DType::BF16 => {
                for (o, v) in out.iter_mut().zip(&self.table.as_slice::<bf16>()?[range]) {
                    *o = v.to_f32();
                }
            }
            other => {
                return Err(Error::dtype(
                    "word embedding table",
                    "f32, f16 or bf16",
                    other,
                ))
            }
        }
        Ok(())
    }
}

/// The padded length of a batch: its longest text, at least 1 (so that every later module,
/// an LSTM included, has a position to work on).
pub(crate) fn padded_len(ids: &[Vec<u32>]) -> usize {
    ids.iter().map(Vec::len).max().unwrap_or(0).max(1)
}

/// `[B, T]` i64 mask of ones over each text's real tokens, `T` = [`padded_len`].
pub(crate) fn length_mask(ids: &[Vec<u32>]) -> Result<Tensor> {
    let t = padded_len(ids);
    let mut mask = vec![0i64; ids.len() * t];
    for (row, text) in mask.chunks_mut(t).zip(ids) {
        row[..text.len()].fill(1);
    }
    Tensor::from_vec([ids.len(), t], mask)
}

impl Module for WordEmbeddings {
    fn kind(&self) -> &'static str {
        "WordEmbeddings"
    }

    fn forward(&self, mut features: Features) -> Result<Features> {
        let b = features.input_ids.len();
        let t = match &features.attention_mask {
            Some(m) => {
                let dims = m.expect_rank("attention_mask [B, T]", 2)?;
                if dims[0] != b
                    || dims[1] < features.input_ids.iter().map(Vec::len).max().unwrap_or(0)
                {
                    return Err(Error::shape(
                        "attention_mask",
                        format!("[{b}, T] with T at least the longest text"),
                        dims,
                    ));
                }
                dims[1]
            }
            None => padded_len(&features.input_ids),
        };
        let (v, d) = (self.vocab_size(), self.dim());
        let mut out = vec![0f32; b * t * d];
        for (i, ids) in features.input_ids.iter().enumerate() {
            for j in 0..t {
                // Padding positions use id 0, exactly like the reference's padded input_ids.
                let id = ids.get(j).copied().unwrap_or(0) as usize;
                if id >= v {
                    return Err(Error::IdOutOfRange {
                        id: id as i64,
                        position: i * t + j,
                        vocab: v,
                    });
                }
                let start = (i * t + j) * d;
                self.copy_row(id, &mut out[start..start + d])?;
            }
        }
        features.token_embeddings = Some(Tensor::from_vec([b, t, d], out)?);
        features.cls_token_embeddings = None;
        if features.attention_mask.is_none() {
            features.attention_mask = Some(length_mask(&features.input_ids)?);
        }
        if features.sentence_lengths.len() != b {
            features.sentence_lengths = features.input_ids.iter().map(Vec::len).collect();
        }
        Ok(features)
    }

    fn output_dim(&self) -> Option<usize> {
        Some(self.dim())
    }
}

impl TextModule for WordEmbeddings {
    fn tokenize(&self, texts: &[&str]) -> Result<Features> {
        let input_ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|text| {
                let mut ids = self.tokenizer.tokenize(text);
                ids.truncate(self.max_seq_length);
                ids
            })
            .collect();
        Ok(Features {
            attention_mask: Some(length_mask(&input_ids)?),
            sentence_lengths: input_ids.iter().map(Vec::len).collect(),
            input_ids,
            ..Features::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::write_safetensors;

    fn folder(vocab: &[&str], table: &Tensor, max_seq_length: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join(WORD_EMBEDDINGS_CONFIG),
            format!(
                r#"{{"tokenizer_class": "sentence_transformers.models.tokenizer.WhitespaceTokenizer.WhitespaceTokenizer",
                    "update_embeddings": false, "max_seq_length": {max_seq_length}}}"#
            ),
        )
        .unwrap();
        let cfg = serde_json::json!({"vocab": vocab, "stop_words": [], "do_lower_case": false});
        std::fs::write(p.join(WHITESPACE_TOKENIZER_CONFIG), cfg.to_string()).unwrap();
        write_safetensors(
            p.join("model.safetensors"),
            &[(WORD_EMBEDDINGS_TENSOR, table)],
        )
        .unwrap();
        dir
    }

    fn table() -> Tensor {
        // Row 0 is deliberately non-zero: padding must look it up, as the reference does.
        Tensor::from_slice([3, 2], &[0.5f32, -0.5, 1.0, 2.0, 3.0, 4.0]).unwrap()
    }

    #[test]
    fn tokenizes_pads_and_looks_up() {
        let dir = folder(&["PAD", "a", "b"], &table(), 2);
        let m = WordEmbeddings::from_dir(dir.path()).unwrap();
        assert_eq!((m.vocab_size(), m.dim(), m.output_dim()), (3, 2, Some(2)));
        let f = m.tokenize(&["a b a", "", "b"]).unwrap();
        assert_eq!(f.input_ids, vec![vec![1, 2], vec![], vec![2]]); // cut at max_seq_length 2
        assert_eq!(f.sentence_lengths, vec![2, 0, 1]);
        let mask = f.attention_mask.as_ref().unwrap();
        assert_eq!(mask.dims(), &[3, 2]);
        assert_eq!(mask.as_slice::<i64>().unwrap(), &[1, 1, 0, 0, 1, 0]);
        let f = m.forward(f).unwrap();
        let x = f.token_embeddings.unwrap();
        assert_eq!(x.dims(), &[3, 2, 2]);
        #[rustfmt::skip]
        assert_eq!(x.as_slice::<f32>().unwrap(), &[
            1.0, 2.0, 3.0, 4.0,
            0.5, -0.5, 0.5, -0.5,
            3.0, 4.0, 0.5, -0.5,
        ]);
        // All texts empty: still one (padding) position.
        let f = m.tokenize(&["", "zzz"]).unwrap();
        assert_eq!(f.attention_mask.as_ref().unwrap().dims(), &[2, 1]);
        assert_eq!(
            m.forward(f).unwrap().token_embeddings.unwrap().dims(),
            &[2, 1, 2]
        );
        // No texts: zero rows.
        let f = m.forward(m.tokenize(&[]).unwrap()).unwrap();
        assert_eq!(f.token_embeddings.unwrap().dims(), &[0, 1, 2]);
    }

    #[test]
    fn half_tables_are_widened() {
        let h = table().to_dtype(DType::F16).unwrap();
        let dir = folder(&["PAD", "a", "b"], &h, 10);
        let m = WordEmbeddings::from_dir(dir.path()).unwrap();
        let f = m.forward(m.tokenize(&["b"]).unwrap()).unwrap();
        assert_eq!(
            f.token_embeddings.unwrap().as_slice::<f32>().unwrap(),
            &[3.0, 4.0]
        );
    }

    #[test]
    fn broken_folders_are_clear_errors() {
        // Vocabulary larger than the table.
        let dir = folder(&["PAD", "a", "b", "c"], &table(), 10);
        let e = WordEmbeddings::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("4 words") && e.contains("3 rows"), "{e}");
        // Wrong rank.
        let flat = Tensor::from_slice([6], &[0f32; 6]).unwrap();
        let dir = folder(&["PAD"], &flat, 10);
        assert!(matches!(
            WordEmbeddings::from_dir(dir.path()),
            Err(Error::Shape { .. })
        ));
        // Integer table.
        let ints = Tensor::from_slice([3, 2], &[0i32; 6]).unwrap();
        let dir = folder(&["PAD"], &ints, 10);
        assert!(matches!(
            WordEmbeddings::from_dir(dir.path()),
            Err(Error::DType { .. })
        ));
        // Missing tensor, pickled-only weights, missing weights, unknown tokenizer class, bad JSON.
        let dir = folder(&["PAD"], &table(), 10);
        write_safetensors(dir.path().join("model.safetensors"), &[("other", &table())]).unwrap();
        assert!(matches!(
            WordEmbeddings::from_dir(dir.path()),
            Err(Error::MissingTensor { .. })
        ));
        std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
        let e = WordEmbeddings::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
        let e = WordEmbeddings::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pickled") && e.contains("model.safetensors"),
            "{e}"
        );
        let dir = folder(&["PAD"], &table(), 10);
        std::fs::write(
            dir.path().join(WORD_EMBEDDINGS_CONFIG),
            r#"{"tokenizer_class": "x.BertTokenizer"}"#,
        )
        .unwrap();
        let e = WordEmbeddings::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("BertTokenizer") && e.contains(WORD_EMBEDDINGS_CONFIG),
            "{e}"
        );
        std::fs::write(dir.path().join(WORD_EMBEDDINGS_CONFIG), "[1, 2]").unwrap();
        assert!(matches!(
            WordEmbeddings::from_dir(dir.path()),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn out_of_range_ids_in_features_are_errors() {
        let dir = folder(&["PAD", "a"], &table(), 10);
        let m = WordEmbeddings::from_dir(dir.path()).unwrap();
        let f = Features {
            input_ids: vec![vec![1, 7]],
            ..Features::default()
        };
        assert!(matches!(
            m.forward(f),
            Err(Error::IdOutOfRange { id: 7, .. })
        ));
    }
}
