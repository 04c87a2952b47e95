//! `Dense`: a linear layer plus an activation on the sentence embedding (or, when the config
//! says so, on every token embedding): `y = act(x·Wᵀ + b)`.

use crate::cnn::dot;
use crate::features::{Features, Module};
use crate::module_files::{f32_values, open_weights, positive, read_json_config};
use serde::Deserialize;
use std::path::Path;
use stk_core::{Error, Result, Tensor};

/// Config file of the module.
pub const DENSE_CONFIG: &str = "config.json";

#[derive(Deserialize)]
struct DenseConfig {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    #[serde(default = "default_activation")]
    activation_function: Option<String>,
    #[serde(default = "sentence_embedding")]
    module_input_name: String,
    #[serde(default)]
    module_output_name: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_activation() -> Option<String> {
    Some("torch.nn.modules.activation.Tanh".into())
}
fn sentence_embedding() -> String {
    "sentence_embedding".into()
}

/// The activations a saved Dense layer can name (PyTorch class, any module path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x` unchanged (`torch.nn.Identity`, or no activation named).
    Identity,
    /// `tanh(x)`, the reference's default.
    Tanh,
    /// `max(x, 0)`.
    ReLU,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Exact (erf) GELU, PyTorch's default.
    Gelu,
    /// `x · sigmoid(x)`.
    SiLU,
}

impl Activation {
    const NAMES: &'static str = "Identity, Tanh, ReLU, Sigmoid, GELU, SiLU";

    /// `torch.nn.modules.activation.Tanh` → `Tanh`; `None` (null in the config) → Identity.
    pub fn parse(name: Option<&str>) -> Option<Self> {
        let Some(name) = name else {
            return Some(Activation::Identity);
        };
        Some(match name.rsplit('.').next().unwrap_or(name) {
            "Identity" => Activation::Identity,
            "Tanh" => Activation::Tanh,
            "ReLU" => Activation::ReLU,
            "Sigmoid" => Activation::Sigmoid,
            "GELU" => Activation::Gelu,
            "SiLU" => Activation::SiLU,
            _ => return None,
        })
    }

    /// The activation of one value, in f32.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Tanh => x.tanh(),
            Activation::ReLU => x.max(0.0),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::SiLU => x / (1.0 + (-x).exp()),
        }
    }
}

/// Which feature a Dense layer reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseTarget {
    /// `sentence_embedding` `[B, in]` → `[B, out]` (the reference's default).
    SentenceEmbedding,
    /// `token_embeddings` `[B, T, in]` → `[B, T, out]`, every token alike.
    TokenEmbeddings,
}

/// Linear layer with activation.
#[derive(Debug, Clone)]
pub struct Dense {
    in_features: usize,
    out_features: usize,
    /// `[out, in]` row-major.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Activation,
    target: DenseTarget,
}

impl Dense {
    /// Read `config.json` (`in_features`, `out_features`, `bias`, `activation_function`,
    /// optional `module_input_name`/`module_output_name`) and `model.safetensors`
    /// (`linear.weight [out, in]`, `linear.bias [out]` when `bias`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(DENSE_CONFIG);
        let cfg: DenseConfig = read_json_config(dir, DENSE_CONFIG)?;
        let n_in = positive(&path, "in_features", cfg.in_features)?;
        let n_out = positive(&path, "out_features", cfg.out_features)?;
        let activation =
            Activation::parse(cfg.activation_function.as_deref()).ok_or_else(|| {
                Error::config(
                    &path,
                    format!(
                        "activation_function `{}` is not supported (supported: {})",
                        cfg.activation_function.as_deref().unwrap_or(""),
                        Activation::NAMES
                    ),
                )
            })?;
        let output_name = cfg
            .module_output_name
            .as_deref()
            .unwrap_or(&cfg.module_input_name);
        let target = match (cfg.module_input_name.as_str(), output_name) {
            ("sentence_embedding", "sentence_embedding") => DenseTarget::SentenceEmbedding,
            ("token_embeddings", "token_embeddings") => DenseTarget::TokenEmbeddings,
            (i, o) => {
                return Err(Error::config(
                    &path,
                    format!(
                        "Dense from `{i}` to `{o}` is not supported (input and output must both be \
                         sentence_embedding or both token_embeddings)"
                    ),
                ))
            }
        };
        let file = open_weights(dir, "Dense")?;
        let weight = f32_values(&file, "linear.weight", &[n_out, n_in])?;
        let bias = if cfg.bias {
            Some(f32_values(&file, "linear.bias", &[n_out])?)
        } else {
            if file.contains("linear.bias") {
                return Err(Error::config(
                    &path,
                    format!(
                        "`bias` is false but {} has `linear.bias`",
                        file.path().display()
                    ),
                ));
            }
            None
        };
        Self::new(weight, bias, n_in, n_out, activation, target)
    }

    /// A layer from a row-major `weight [out_features, in_features]` and an optional `bias
    /// [out_features]`; [`stk_core::Error::InvalidArgument`] if a width is 0 or a length disagrees.
    pub fn new(
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        in_features: usize,
        out_features: usize,
        activation: Activation,
        target: DenseTarget,
    ) -> Result<Self> {
        if in_features == 0
            || out_features == 0
            || weight.len() != in_features * out_features
            || bias.as_ref().is_some_and(|b| b.len() != out_features)
        {
            return Err(Error::invalid(format!(
                "Dense: {} weights / {:?} biases do not fit {in_features} → {out_features}",
                weight.len(),
                bias.as_ref().map(Vec::len)
            )));
        }
        Ok(Dense {
            in_features,
            out_features,
            weight,
            bias,
            activation,
            target,
        })
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.in_features
    }
    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
    /// The activation applied after the affine map.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// The feature it transforms.
    pub fn target(&self) -> DenseTarget {
        self.target
    }

    /// `rows` vectors of `in_features` → `rows` vectors of `out_features`.
    fn apply_rows(&self, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.in_features;
        let mut out = Vec::with_capacity(rows * self.out_features);
        for row in x.chunks_exact(self.in_features) {
            for o in 0..self.out_features {
                let mut v = dot(
                    &self.weight[o * self.in_features..(o + 1) * self.in_features],
                    row,
                );
                if let Some(b) = &self.bias {
                    v += b[o];
                }
                out.push(self.activation.apply(v));
            }
        }
        debug_assert_eq!(out.len(), rows * self.out_features);
        out
    }
}

impl Module for Dense {
    fn kind(&self) -> &'static str {
        "Dense"
    }

    fn forward(&self, mut features: Features) -> Result<Features> {
        let (slot, name) = match self.target {
            DenseTarget::SentenceEmbedding => {
                (&mut features.sentence_embedding, "sentence_embedding")
            }
            DenseTarget::TokenEmbeddings => (&mut features.token_embeddings, "token_embeddings"),
        };
        let x = slot.as_ref().ok_or_else(|| {
            Error::invalid(format!("Dense needs {name} from the module before it"))
        })?;
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.in_features) || dims.len() < 2 {
            return Err(Error::shape(
                format!("Dense: {name}"),
                format!("[..., {}] (in_features)", self.in_features),
                &dims,
            ));
        }
        let out = self.apply_rows(&x.to_f32_vec()?);
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank checked above") = self.out_features;
        *slot = Some(Tensor::from_vec(out_dims, out)?);
        Ok(features)
    }

    fn output_dim(&self) -> Option<usize> {
        Some(self.out_features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::testing::expect_err;
    use stk_core::write_safetensors;

    #[test]
    fn linear_then_activation() {
        // W = [[1, 2], [-1, 0.5], [0, 0]], b = [0.5, 0, -1]; x = [1, -1] → [-0.5, -1.5, -1].
        let w = vec![1.0, 2.0, -1.0, 0.5, 0.0, 0.0];
        let b = Some(vec![0.5, 0.0, -1.0]);
        let x = Tensor::from_slice([1, 2], &[1.0f32, -1.0]).unwrap();
        let run = |act: Activation| {
            let m = Dense::new(
                w.clone(),
                b.clone(),
                2,
                3,
                act,
                DenseTarget::SentenceEmbedding,
            )
            .unwrap();
            let f = Features {
                sentence_embedding: Some(x.clone()),
                ..Features::default()
            };
            m.forward(f)
                .unwrap()
                .sentence_embedding
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec()
        };
        assert_eq!(run(Activation::Identity), vec![-0.5, -1.5, -1.0]);
        assert_eq!(run(Activation::ReLU), vec![0.0, 0.0, 0.0]);
        let tanh = run(Activation::Tanh);
        for (g, w) in tanh.iter().zip([-0.46211716f32, -0.90514825, -0.7615942]) {
            assert!((g - w).abs() < 1e-6, "{tanh:?}");
        }
        let sig = run(Activation::Sigmoid);
        for (g, w) in sig.iter().zip([0.37754067f32, 0.18242552, 0.26894142]) {
            assert!((g - w).abs() < 1e-6, "{sig:?}");
        }
        // GELU(-0.5) = -0.15426877, GELU(-1.5) = -0.1002108, GELU(-1) = -0.15865525.
        let gelu = run(Activation::Gelu);
        for (g, w) in gelu.iter().zip([-0.15426877f32, -0.1002108, -0.15865525]) {
            assert!((g - w).abs() < 1e-6, "{gelu:?}");
        }
        // SiLU(x) = x·σ(x).
        let silu = run(Activation::SiLU);
        for (g, w) in silu.iter().zip([-0.18877034f32, -0.27363828, -0.26894142]) {
            assert!((g - w).abs() < 1e-6, "{silu:?}");
        }
    }

    #[test]
    fn token_embeddings_target_and_no_bias() {
        let m = Dense::new(
            vec![2.0, 0.0, 0.0, 3.0],
            None,
            2,
            2,
            Activation::Identity,
            DenseTarget::TokenEmbeddings,
        )
        .unwrap();
        let x = Tensor::from_slice([1, 2, 2], &[1.0f32, 1.0, 2.0, -1.0]).unwrap();
        let f = Features {
            token_embeddings: Some(x),
            ..Features::default()
        };
        let y = m.forward(f).unwrap().token_embeddings.unwrap();
        assert_eq!(y.dims(), &[1, 2, 2]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[2.0, 3.0, 4.0, -3.0]);
        // Wrong width / missing input.
        let f = Features {
            token_embeddings: Some(Tensor::from_slice([1, 3], &[1.0f32; 3]).unwrap()),
            ..Features::default()
        };
        assert!(matches!(m.forward(f), Err(Error::Shape { .. })));
        expect_err(
            m.forward(Features::default()),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["Dense needs token_embeddings"],
        );
    }

    #[test]
    fn folder_loading_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let cfg = |s: &str| std::fs::write(p.join(DENSE_CONFIG), s).unwrap();
        cfg(
            r#"{"in_features": 2, "out_features": 1, "bias": true, "activation_function": "torch.nn.modules.linear.Identity"}"#,
        );
        let w = Tensor::from_slice([1, 2], &[1.0f32, 1.0]).unwrap();
        let b = Tensor::from_slice([1], &[0.25f32]).unwrap();
        write_safetensors(
            p.join("model.safetensors"),
            &[("linear.weight", &w), ("linear.bias", &b)],
        )
        .unwrap();
        let m = Dense::from_dir(p).unwrap();
        assert_eq!(m.output_dim(), Some(1));
        let f = Features {
            sentence_embedding: Some(Tensor::from_slice([1, 2], &[1.0f32, 2.0]).unwrap()),
            ..Features::default()
        };
        assert_eq!(
            m.forward(f)
                .unwrap()
                .sentence_embedding
                .unwrap()
                .as_slice::<f32>()
                .unwrap(),
            &[3.25]
        );
        cfg(
            r#"{"in_features": 3, "out_features": 1, "activation_function": "torch.nn.modules.linear.Identity"}"#,
        );
        let e = Dense::from_dir(p).unwrap_err();
        assert!(
            matches!(e, Error::Shape { .. }) && e.to_string().contains("linear.weight"),
            "{e}"
        );
        cfg(
            r#"{"in_features": 2, "out_features": 1, "activation_function": "torch.nn.modules.activation.Softmax"}"#,
        );
        let e = Dense::from_dir(p).unwrap_err().to_string();
        assert!(e.contains("Softmax") && e.contains("Tanh"), "{e}");
        cfg(r#"{"in_features": 2, "out_features": 1, "bias": false}"#);
        assert!(matches!(Dense::from_dir(p), Err(Error::Config { .. })));
        cfg(r#"{"in_features": 2}"#);
        assert!(matches!(Dense::from_dir(p), Err(Error::Config { .. })));
        cfg(r#"{"in_features": 2, "out_features": 1}"#);
        std::fs::remove_file(p.join("model.safetensors")).unwrap();
        std::fs::write(p.join("pytorch_model.bin"), b"x").unwrap();
        let e = Dense::from_dir(p).unwrap_err().to_string();
        assert!(e.contains("pickled"), "{e}");
    }
}
