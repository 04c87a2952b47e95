//! The `Pooling` module of a saved model: its config (both on-disk spellings) and its step in a
//! pipeline.

use super::{pool_padded, PoolExtras};
use crate::features::{Features, Module};
use serde_json::Value;
use std::path::Path;
use stk_core::{DType, Error, PaddedBatch, PoolingMode, PoolingSpec, Result};

/// Keys of the older config spelling, in the order the older reference concatenated the modes.
const LEGACY_MODE_KEYS: [(&str, PoolingMode); 6] = [
    ("pooling_mode_cls_token", PoolingMode::Cls),
    ("pooling_mode_max_tokens", PoolingMode::Max),
    ("pooling_mode_mean_tokens", PoolingMode::Mean),
    (
        "pooling_mode_mean_sqrt_len_tokens",
        PoolingMode::MeanSqrtLenTokens,
    ),
    (
        "pooling_mode_weightedmean_tokens",
        PoolingMode::WeightedMean,
    ),
    ("pooling_mode_lasttoken", PoolingMode::LastToken),
];

/// A pooling layer: modes, prompt handling and the width of the token embeddings it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pooling {
    embedding_dimension: usize,
    modes: Vec<PoolingMode>,
    include_prompt: bool,
    /// Length of the prompt of the texts being encoded; used only when `include_prompt` is false.
    prompt_length: Option<usize>,
}

impl Pooling {
    /// A layer for token embeddings of width `embedding_dimension`, computing `modes` (at least
    /// one: [`stk_core::Error::InvalidArgument`] otherwise), with or without the prompt.
    pub fn new(
        embedding_dimension: usize,
        modes: Vec<PoolingMode>,
        include_prompt: bool,
    ) -> Result<Self> {
        if modes.is_empty() {
            return Err(Error::invalid("a pooling layer needs at least one mode"));
        }
        Ok(Pooling {
            embedding_dimension,
            modes,
            include_prompt,
            prompt_length: None,
        })
    }

    /// Load `dir/config.json`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let config: Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(&path, format!("not valid JSON: {e}")))?;
        Self::from_config(&config, &path)
    }

    /// Read a parsed config in either spelling: the current one (`embedding_dimension`,
    /// `pooling_mode` as a name or a list of names, `include_prompt`) or the older one
    /// (`word_embedding_dimension` and one `pooling_mode_*` boolean per mode). `path` names the
    /// file in errors.
    pub fn from_config(config: &Value, path: &Path) -> Result<Self> {
        let obj = config
            .as_object()
            .ok_or_else(|| Error::config(path, "the Pooling config must be a JSON object"))?;
        let dim_value = obj
            .get("embedding_dimension")
            .or_else(|| obj.get("word_embedding_dimension"))
            .ok_or_else(|| {
                Error::config(
                    path,
                    "missing `embedding_dimension` (or `word_embedding_dimension`)",
                )
            })?;
        let embedding_dimension = dim_value
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| {
                Error::config(
                    path,
                    format!("embedding dimension {dim_value} is not a whole number"),
                )
            })?;
        let include_prompt = match obj.get("include_prompt") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(Error::config(
                    path,
                    format!("`include_prompt` must be true or false, got {other}"),
                ))
            }
        };

        let modes = match obj.get("pooling_mode") {
            Some(Value::String(name)) => vec![parse_mode(name)?],
            Some(Value::Array(names)) => names
                .iter()
                .map(|n| match n {
                    Value::String(name) => parse_mode(name),
                    other => Err(Error::config(
                        path,
                        format!("`pooling_mode` entries must be names, got {other}"),
                    )),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(other) => {
                return Err(Error::config(
                    path,
                    format!("`pooling_mode` must be a name or a list of names, got {other}"),
                ))
            }
            None => legacy_modes(obj, path)?,
        };
        if modes.is_empty() {
            return Err(Error::config(path, "no pooling mode is selected"));
        }
        Self::new(embedding_dimension, modes, include_prompt)
    }

    /// Set the prompt length of the texts about to be pooled (the reference's
    /// `features["prompt_length"]`); it only matters when `include_prompt` is false.
    pub fn with_prompt_length(mut self, prompt_length: Option<usize>) -> Self {
        self.prompt_length = prompt_length;
        self
    }

    /// The modes, in output order.
    pub fn modes(&self) -> &[PoolingMode] {
        &self.modes
    }
    /// The token embedding width the config states (each mode outputs this many values).
    pub fn embedding_dimension(&self) -> usize {
        self.embedding_dimension
    }
    /// False when the prompt's tokens are left out of the pooling.
    pub fn include_prompt(&self) -> bool {
        self.include_prompt
    }

    /// What this layer computes for the current prompt length.
    pub fn spec(&self) -> PoolingSpec {
        PoolingSpec {
            modes: self.modes.clone(),
            prompt_length: if self.include_prompt {
                None
            } else {
                self.prompt_length
            },
        }
    }
}

/// A mode name as configs write it (the older reference lowercased it first).
fn parse_mode(name: &str) -> Result<PoolingMode> {
    name.trim().to_lowercase().parse()
}

/// Modes from the older boolean keys. A missing key takes the older constructor's default
/// (only `pooling_mode_mean_tokens` defaulted to true); an unknown `pooling_mode_*` key is an
/// unknown mode.
fn legacy_modes(obj: &serde_json::Map<String, Value>, path: &Path) -> Result<Vec<PoolingMode>> {
    if let Some(unknown) = obj
        .keys()
        .filter(|k| k.starts_with("pooling_mode_"))
        .find(|k| !LEGACY_MODE_KEYS.iter().any(|(known, _)| known == k))
    {
        return Err(Error::UnknownPoolingMode(
            unknown.trim_start_matches("pooling_mode_").to_string(),
        ));
    }
    let mut modes = Vec::new();
    for (key, mode) in LEGACY_MODE_KEYS {
        let on = match obj.get(key) {
            None | Some(Value::Null) => mode == PoolingMode::Mean,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(Error::config(
                    path,
                    format!("`{key}` must be true or false, got {other}"),
                ))
            }
        };
        if on {
            modes.push(mode);
        }
    }
    Ok(modes)
}

impl Module for Pooling {
    fn kind(&self) -> &'static str {
        "Pooling"
    }

    /// Reads `token_embeddings`, `attention_mask`, `token_weights_sum` and
    /// `cls_token_embeddings`; writes an f32 `sentence_embedding` (pipelines compute in f32).
    fn forward(&self, mut features: Features) -> Result<Features> {
        let tokens = features.token_embeddings.clone().ok_or_else(|| {
            Error::invalid("Pooling needs token_embeddings from the module before it")
        })?;
        let batch = PaddedBatch::new(tokens, features.attention_mask.as_ref())?;
        let extras = PoolExtras {
            token_weights_sum: features.token_weights_sum.as_deref(),
            cls_token_embeddings: features.cls_token_embeddings.as_ref(),
        };
        let pooled = pool_padded(&batch, &self.spec(), &extras)?.to_dtype(DType::F32)?;
        features.sentence_embedding = Some(pooled);
        Ok(features)
    }

    fn output_dim(&self) -> Option<usize> {
        Some(self.modes.len() * self.embedding_dimension)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stk_core::testing::expect_err;
    use stk_core::Tensor;

    fn load(v: Value) -> Result<Pooling> {
        Pooling::from_config(&v, Path::new("config.json"))
    }

    #[test]
    fn reads_both_spellings() {
        let p = load(json!({"embedding_dimension": 8, "pooling_mode": ["max", "mean"], "include_prompt": false})).unwrap();
        assert_eq!(p.modes(), [PoolingMode::Max, PoolingMode::Mean]);
        assert_eq!((p.embedding_dimension(), p.include_prompt()), (8, false));
        assert_eq!(
            p.clone().with_prompt_length(Some(3)).spec().prompt_length,
            Some(3)
        );
        let p = load(json!({"embedding_dimension": 8, "pooling_mode": "lasttoken"})).unwrap();
        assert_eq!(
            (p.modes(), p.include_prompt()),
            (&[PoolingMode::LastToken][..], true)
        );
        assert_eq!(p.with_prompt_length(Some(3)).spec().prompt_length, None);

        let legacy = load(json!({
            "word_embedding_dimension": 4,
            "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": true,
            "pooling_mode_weightedmean_tokens": false, "pooling_mode_lasttoken": true,
            "include_prompt": true
        }))
        .unwrap();
        assert_eq!(
            legacy.modes(),
            [
                PoolingMode::Cls,
                PoolingMode::Mean,
                PoolingMode::MeanSqrtLenTokens,
                PoolingMode::LastToken
            ]
        );
        assert_eq!(legacy.output_dim(), Some(16));
        let defaults = load(json!({"word_embedding_dimension": 4})).unwrap();
        assert_eq!(defaults.modes(), [PoolingMode::Mean]);
    }

    #[test]
    fn rejects_bad_configs() {
        let unknown =
            load(json!({"embedding_dimension": 8, "pooling_mode": ["mean", "avg"]})).unwrap_err();
        assert!(
            matches!(unknown, Error::UnknownPoolingMode(ref m) if m == "avg"),
            "{unknown}"
        );
        let unknown =
            load(json!({"word_embedding_dimension": 8, "pooling_mode_median_tokens": true}))
                .unwrap_err();
        assert!(
            matches!(unknown, Error::UnknownPoolingMode(ref m) if m == "median_tokens"),
            "{unknown}"
        );
        for bad in [
            json!({"pooling_mode": "mean"}),
            json!({"embedding_dimension": -1, "pooling_mode": "mean"}),
            json!({"embedding_dimension": 8, "pooling_mode": []}),
            json!({"embedding_dimension": 8, "pooling_mode": 3}),
            json!({"embedding_dimension": 8, "pooling_mode": "mean", "include_prompt": "no"}),
            json!({"word_embedding_dimension": 8, "pooling_mode_mean_tokens": false}),
            json!({"word_embedding_dimension": 8, "pooling_mode_mean_tokens": 1}),
            json!([1, 2]),
        ] {
            assert!(
                matches!(load(bad.clone()), Err(Error::Config { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn forward_writes_f32_sentence_embedding() {
        let p = Pooling::new(2, vec![PoolingMode::Mean, PoolingMode::Max], true).unwrap();
        let tokens = Tensor::from_slice([1, 3, 2], &[1.0f32, 2.0, 3.0, 6.0, 100.0, 100.0]).unwrap();
        let features = Features {
            token_embeddings: Some(tokens.to_dtype(DType::F16).unwrap()),
            attention_mask: Some(Tensor::from_slice([1, 3], &[1i64, 1, 0]).unwrap()),
            ..Features::default()
        };
        let out = p.forward(features).unwrap().sentence_embedding.unwrap();
        assert_eq!(out.dtype(), DType::F32);
        assert_eq!(out.as_slice::<f32>().unwrap(), [2.0, 4.0, 3.0, 6.0]);
        expect_err(
            p.forward(Features::default()),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["Pooling needs token_embeddings"],
        );
    }
}
