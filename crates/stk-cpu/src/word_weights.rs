//! `WordWeights`: scale each token embedding by a per-word weight (e.g. idf) and hand the sum of
//! the weights of each text's real tokens to Pooling (`token_weights_sum`), which then divides
//! by it instead of by the token count.

use crate::features::{Features, Module};
use crate::module_files::{f32_values, read_json_config, WEIGHTS_FILE};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use stk_core::{Error, Result, SafetensorsFile, Tensor};

/// Config file of the module (shared with BoW, which has the same keys plus one).
pub const WORD_WEIGHTS_CONFIG: &str = "config.json";
/// The weights inside `model.safetensors` (saved by recent reference versions).
pub const WORD_WEIGHTS_TENSOR: &str = "emb_layer.weight";

#[derive(Deserialize)]
struct WordWeightsConfig {
    vocab: Vec<String>,
    word_weights: HashMap<String, f64>,
    #[serde(default = "one")]
    unknown_word_weight: f64,
}

fn one() -> f64 {
    1.0
}

/// The reference's weight of each vocabulary word: `word_weights[word]`, else
/// `word_weights[word.lower()]`, else `unknown_word_weight`; rounded to f32 like its table.
pub fn weights_for_vocab(
    vocab: &[String],
    word_weights: &HashMap<String, f64>,
    unknown_word_weight: f64,
) -> Vec<f32> {
    vocab
        .iter()
        .map(|w| {
            word_weights
                .get(w)
                .or_else(|| word_weights.get(&w.to_lowercase()))
                .copied()
                .unwrap_or(unknown_word_weight) as f32
        })
        .collect()
}

/// Per-word scaling of token embeddings.
#[derive(Debug, Clone)]
pub struct WordWeights {
    /// One weight per token id.
    weights: Vec<f32>,
}

impl WordWeights {
    /// Read `config.json` (`vocab`, `word_weights`, `unknown_word_weight`). When the folder has a
    /// `model.safetensors`, its `emb_layer.weight [V, 1]` holds the weights (the saved state wins,
    /// as in the reference); otherwise they are computed from the config.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let cfg: WordWeightsConfig = read_json_config(dir, WORD_WEIGHTS_CONFIG)?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = if weights_path.is_file() {
            let file = SafetensorsFile::open(&weights_path)?;
            f32_values(&file, WORD_WEIGHTS_TENSOR, &[cfg.vocab.len(), 1])?
        } else {
            weights_for_vocab(&cfg.vocab, &cfg.word_weights, cfg.unknown_word_weight)
        };
        Ok(WordWeights { weights })
    }

    /// From one weight per token id.
    pub fn new(weights: Vec<f32>) -> Self {
        WordWeights { weights }
    }

    /// One weight per token id.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }
}

/// The mask as f32 values, checked to be `[B, T]`.
pub(crate) fn mask_f32(mask: &Tensor, b: usize, t: usize, module: &str) -> Result<Vec<f32>> {
    if mask.dims() != [b, t] {
        return Err(Error::shape(
            format!("{module}: attention_mask"),
            format!("[{b}, {t}] (matching token_embeddings)"),
            mask.dims(),
        ));
    }
    if mask.dtype().is_float() {
        mask.to_f32_vec()
    } else {
        Ok(mask.to_i64_vec()?.into_iter().map(|v| v as f32).collect())
    }
}

impl Module for WordWeights {
    fn kind(&self) -> &'static str {
        "WordWeights"
    }

    fn forward(&self, mut features: Features) -> Result<Features> {
        let x = features.token_embeddings.as_ref().ok_or_else(|| {
            Error::invalid("WordWeights needs token_embeddings from the module before it")
        })?;
        let dims = x.expect_rank("WordWeights: token_embeddings [B, T, D]", 3)?;
        let (b, t, d) = (dims[0], dims[1], dims[2]);
        if features.input_ids.len() != b {
            return Err(Error::invalid(format!(
                "WordWeights: input_ids for {} but token_embeddings holds a batch of {b}",
                stk_core::counted(features.input_ids.len(), "text")
            )));
        }
        let mask = match &features.attention_mask {
            Some(m) => mask_f32(m, b, t, "WordWeights")?,
            None => return Err(Error::invalid("WordWeights needs an attention_mask")),
        };
        let mut out = x.to_f32_vec()?;
        let mut sums = vec![0f32; b];
        let v = self.weights.len();
        for (i, ids) in features.input_ids.iter().enumerate() {
            if ids.len() > t {
                return Err(Error::invalid(format!(
                    "WordWeights: text {i} has {} but token_embeddings has {}",
                    stk_core::counted(ids.len(), "id"),
                    stk_core::counted(t, "position")
                )));
            }
            for j in 0..t {
                let id = ids.get(j).copied().unwrap_or(0) as usize; // padding id 0
                let w = *self.weights.get(id).ok_or(Error::IdOutOfRange {
                    id: id as i64,
                    position: i * t + j,
                    vocab: v,
                })?;
                let w = w * mask[i * t + j];
                sums[i] += w;
                for e in &mut out[(i * t + j) * d..(i * t + j + 1) * d] {
                    *e *= w;
                }
            }
        }
        features.token_embeddings = Some(Tensor::from_vec([b, t, d], out)?);
        features.token_weights_sum = Some(sums);
        Ok(features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::testing::expect_err;
    use stk_core::write_safetensors;

    fn config(dir: &Path) {
        let cfg = serde_json::json!({
            "vocab": ["PAD", "The", "cat", "dog"],
            "word_weights": {"the": 0.5, "cat": 2.0},
            "unknown_word_weight": 0.25
        });
        std::fs::write(dir.join(WORD_WEIGHTS_CONFIG), cfg.to_string()).unwrap();
    }

    #[test]
    fn weights_from_config_and_forward() {
        let dir = tempfile::tempdir().unwrap();
        config(dir.path());
        let m = WordWeights::from_dir(dir.path()).unwrap();
        // "The" falls back to its lowercase weight; PAD and dog are unknown.
        assert_eq!(m.weights(), &[0.25, 0.5, 2.0, 0.25]);
        let x = Tensor::from_slice([2, 2, 1], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let mask = Tensor::from_slice([2, 2], &[1i64, 1, 1, 0]).unwrap();
        let f = Features {
            input_ids: vec![vec![1, 2], vec![3]],
            token_embeddings: Some(x),
            attention_mask: Some(mask),
            ..Features::default()
        };
        let f = m.forward(f).unwrap();
        assert_eq!(
            f.token_embeddings.unwrap().as_slice::<f32>().unwrap(),
            &[0.5, 4.0, 0.75, 0.0]
        );
        assert_eq!(f.token_weights_sum.unwrap(), vec![2.5, 0.25]);
    }

    #[test]
    fn saved_weights_win_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        config(dir.path());
        let w = Tensor::from_slice([4, 1], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
        write_safetensors(dir.path().join(WEIGHTS_FILE), &[(WORD_WEIGHTS_TENSOR, &w)]).unwrap();
        assert_eq!(
            WordWeights::from_dir(dir.path()).unwrap().weights(),
            &[1.0, 2.0, 3.0, 4.0]
        );
        let w = Tensor::from_slice([3, 1], &[1.0f32, 2.0, 3.0]).unwrap();
        write_safetensors(dir.path().join(WEIGHTS_FILE), &[(WORD_WEIGHTS_TENSOR, &w)]).unwrap();
        let e = WordWeights::from_dir(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        write_safetensors(dir.path().join(WEIGHTS_FILE), &[("x", &w)]).unwrap();
        assert!(matches!(
            WordWeights::from_dir(dir.path()),
            Err(Error::MissingTensor { .. })
        ));
    }

    #[test]
    fn bad_config_and_bad_features() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WORD_WEIGHTS_CONFIG), r#"{"vocab": ["a"]}"#).unwrap();
        let e = WordWeights::from_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("word_weights") && e.contains("config.json"),
            "{e}"
        );
        let m = WordWeights::new(vec![1.0, 1.0]);
        let x = Tensor::from_slice([1, 2, 1], &[1.0f32, 2.0]).unwrap();
        let mask = Tensor::from_slice([1, 2], &[1i64, 1]).unwrap();
        let f = |ids: Vec<Vec<u32>>, mask: Option<Tensor>| Features {
            input_ids: ids,
            token_embeddings: Some(x.clone()),
            attention_mask: mask,
            ..Features::default()
        };
        assert!(matches!(
            m.forward(f(vec![vec![0, 5]], Some(mask.clone()))),
            Err(Error::IdOutOfRange { id: 5, .. })
        ));
        expect_err(
            m.forward(f(vec![vec![0, 1]], None)),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["WordWeights needs an attention_mask"],
        );
        expect_err(
            m.forward(f(vec![], Some(mask.clone()))),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["WordWeights", "input_ids for 0 texts", "batch of 1"],
        );

        let short = Tensor::from_slice([1, 1], &[1i64]).unwrap();
        assert!(matches!(
            m.forward(f(vec![vec![0]], Some(short))),
            Err(Error::Shape { .. })
        ));
    }
}
