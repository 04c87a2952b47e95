//! `LayerNorm` on the sentence embedding: `(x − mean) / sqrt(var + 1e-5) · weight + bias` over
//! the last dimension, with the biased variance (PyTorch's `nn.LayerNorm` defaults).

use crate::features::{Features, Module};
use crate::module_files::{f32_values, open_weights, positive, read_json_config};
use serde::Deserialize;
use std::path::Path;
use stk_core::{Error, Result, Tensor};

/// Config file of the module.
pub const LAYER_NORM_CONFIG: &str = "config.json";
/// PyTorch's default `eps`, which the reference does not change.
pub const LAYER_NORM_EPS: f64 = 1e-5;

#[derive(Deserialize)]
struct LayerNormConfig {
    dimension: usize,
}

/// Layer normalisation of sentence embeddings.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl LayerNorm {
    /// Read `config.json` (`dimension`) and `model.safetensors` (`norm.weight`, `norm.bias`,
    /// both `[dimension]`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(LAYER_NORM_CONFIG);
        let cfg: LayerNormConfig = read_json_config(dir, LAYER_NORM_CONFIG)?;
        let d = positive(&path, "dimension", cfg.dimension)?;
        let file = open_weights(dir, "LayerNorm")?;
        let weight = f32_values(&file, "norm.weight", &[d])?;
        let bias = f32_values(&file, "norm.bias", &[d])?;
        Self::new(weight, bias)
    }

    /// A LayerNorm over the last dimension with these gains and biases, of the same non-zero
    /// length; [`stk_core::Error::InvalidArgument`] otherwise.
    pub fn new(weight: Vec<f32>, bias: Vec<f32>) -> Result<Self> {
        if weight.is_empty() || weight.len() != bias.len() {
            return Err(Error::invalid(format!(
                "LayerNorm: {} weights and {} biases (need the same non-zero count)",
                weight.len(),
                bias.len()
            )));
        }
        Ok(LayerNorm { weight, bias })
    }

    /// The normalized width.
    pub fn dim(&self) -> usize {
        self.weight.len()
    }
}

impl Module for LayerNorm {
    fn kind(&self) -> &'static str {
        "LayerNorm"
    }

    fn forward(&self, mut features: Features) -> Result<Features> {
        let x = features.sentence_embedding.as_ref().ok_or_else(|| {
            Error::invalid("LayerNorm needs sentence_embedding from the module before it")
        })?;
        let d = self.dim();
        let dims = x.expect_rank("LayerNorm: sentence_embedding [B, D]", 2)?;
        if dims[1] != d {
            return Err(Error::shape(
                "LayerNorm: sentence_embedding",
                format!("[B, {d}] (dimension)"),
                dims,
            ));
        }
        let shape = dims.to_vec();
        let mut v = x.to_f32_vec()?;
        for row in v.chunks_exact_mut(d) {
            // Statistics in f64: the f32 result is then correctly rounded to within an ulp.
            let mean = row.iter().map(|&a| a as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
            for (k, a) in row.iter_mut().enumerate() {
                *a = ((*a as f64 - mean) * inv) as f32 * self.weight[k] + self.bias[k];
            }
        }
        features.sentence_embedding = Some(Tensor::from_vec(shape, v)?);
        Ok(features)
    }

    fn output_dim(&self) -> Option<usize> {
        Some(self.dim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::testing::expect_err;
    use stk_core::write_safetensors;

    #[test]
    fn normalizes_rows() {
        let m = LayerNorm::new(vec![1.0, 2.0, 1.0, 1.0], vec![0.0, 0.0, 0.5, 0.0]).unwrap();
        // Row [1, 2, 3, 4]: mean 2.5, biased var 1.25 → (x − 2.5) / sqrt(1.25 + 1e-5).
        // Row [5, 5, 5, 5]: var 0 → zeros (+ bias).
        let x = Tensor::from_slice([2, 4], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0]).unwrap();
        let f = Features {
            sentence_embedding: Some(x),
            ..Features::default()
        };
        let y = m.forward(f).unwrap().sentence_embedding.unwrap();
        let s = (1.25f64 + 1e-5).sqrt();
        let want = [
            -1.5 / s,
            2.0 * (-0.5 / s),
            0.5 / s + 0.5,
            1.5 / s,
            0.0,
            0.0,
            0.5,
            0.0,
        ];
        for (g, w) in y.as_slice::<f32>().unwrap().iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
        let f = Features {
            sentence_embedding: Some(Tensor::from_slice([1, 3], &[1.0f32; 3]).unwrap()),
            ..Features::default()
        };
        assert!(matches!(m.forward(f), Err(Error::Shape { .. })));
        expect_err(
            m.forward(Features::default()),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["LayerNorm needs sentence_embedding"],
        );
        expect_err(
            LayerNorm::new(vec![1.0], vec![]),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["LayerNorm", "1 weights and 0 biases"],
        );
    }

    #[test]
    fn folder_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join(LAYER_NORM_CONFIG), r#"{"dimension": 2}"#).unwrap();
        let w = Tensor::from_slice([2], &[1.0f32, 1.0]).unwrap();
        write_safetensors(
            p.join("model.safetensors"),
            &[("norm.weight", &w), ("norm.bias", &w)],
        )
        .unwrap();
        assert_eq!(LayerNorm::from_dir(p).unwrap().dim(), 2);
        std::fs::write(p.join(LAYER_NORM_CONFIG), r#"{"dimension": 3}"#).unwrap();
        assert!(matches!(LayerNorm::from_dir(p), Err(Error::Shape { .. })));
        write_safetensors(p.join("model.safetensors"), &[("norm.weight", &w)]).unwrap();
        std::fs::write(p.join(LAYER_NORM_CONFIG), r#"{"dimension": 2}"#).unwrap();
        assert!(matches!(
            LayerNorm::from_dir(p),
            Err(Error::MissingTensor { .. })
        ));
        std::fs::write(p.join(LAYER_NORM_CONFIG), r#"{"dimension": "2"}"#).unwrap();
        assert!(matches!(LayerNorm::from_dir(p), Err(Error::Config { .. })));
    }
}
