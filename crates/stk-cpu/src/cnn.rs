//! `CNN`: one 1-d convolution per kernel size over the token axis (embedding dims are the input
//! channels), zero padding `⌊(k−1)/2⌋`, outputs concatenated on the channel axis.
//! `[B, T, D] → [B, T', out_channels × kernels]`; `T'` differs from `T` for even kernels or
//! strides above 1, and Pooling then ignores the mask (the reference's rule).

use crate::features::{Features, Module};
use crate::module_files::{f32_values, open_weights, positive, read_json_config};
use serde::Deserialize;
use std::path::Path;
use stk_core::{Error, Result, Tensor};

/// Config file of the module.
pub const CNN_CONFIG: &str = "cnn_config.json";

#[derive(Deserialize)]
struct CnnConfig {
    /// `in_word_embedding_dimension` in folders saved by older versions.
    #[serde(alias = "in_word_embedding_dimension")]
    in_embedding_dimension: usize,
    #[serde(default = "default_out_channels")]
    out_channels: usize,
    #[serde(default = "default_kernel_sizes")]
    kernel_sizes: Vec<usize>,
    #[serde(default)]
    stride_sizes: Option<Vec<usize>>,
}

fn default_out_channels() -> usize {
    256
}
fn default_kernel_sizes() -> Vec<usize> {
    vec![1, 3, 5]
}

/// One convolution: weights rearranged to `[out][k][in]` so the inner loop reads one token's
/// embedding contiguously.
#[derive(Debug, Clone)]
struct Conv1d {
    kernel: usize,
    stride: usize,
    padding: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Conv1d {
    /// Output length for `t` input positions, or `None` when the input is too short.
    fn out_len(&self, t: usize) -> Option<usize> {
        (t + 2 * self.padding)
            .checked_sub(self.kernel)
            .map(|n| n / self.stride + 1)
    }
}

/// Multi-kernel 1-d convolution over token embeddings.
#[derive(Debug, Clone)]
pub struct Cnn {
    in_dim: usize,
    out_channels: usize,
    convs: Vec<Conv1d>,
}

impl Cnn {
    /// Read `cnn_config.json` and `model.safetensors` (`convs.{i}.weight [out, in, k]`,
    /// `convs.{i}.bias [out]`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(CNN_CONFIG);
        let cfg: CnnConfig = read_json_config(dir, CNN_CONFIG)?;
        let in_dim = positive(&path, "in_embedding_dimension", cfg.in_embedding_dimension)?;
        let out = positive(&path, "out_channels", cfg.out_channels)?;
        if cfg.kernel_sizes.is_empty() {
            return Err(Error::config(&path, "`kernel_sizes` is empty"));
        }
        let strides = cfg
            .stride_sizes
            .unwrap_or_else(|| vec![1; cfg.kernel_sizes.len()]);
        if strides.len() != cfg.kernel_sizes.len() {
            return Err(Error::config(
                &path,
                format!(
                    "`stride_sizes` has {} entries but `kernel_sizes` has {}",
                    strides.len(),
                    cfg.kernel_sizes.len()
                ),
            ));
        }
        let file = open_weights(dir, "CNN")?;
        let mut layers = Vec::with_capacity(strides.len());
        for (i, (&k, &s)) in cfg.kernel_sizes.iter().zip(&strides).enumerate() {
            positive(&path, "kernel_sizes", k)?;
            positive(&path, "stride_sizes", s)?;
            let w = f32_values(&file, &format!("convs.{i}.weight"), &[out, in_dim, k])?;
            let bias = f32_values(&file, &format!("convs.{i}.bias"), &[out])?;
            layers.push((k, s, w, bias));
        }
        let extra: Vec<&str> = file
            .names()
            .filter(|n| {
                n.strip_prefix("convs.")
                    .and_then(|r| r.split('.').next())
                    .and_then(|i| i.parse::<usize>().ok())
                    .is_some_and(|i| i >= strides.len())
            })
            .collect();
        if !extra.is_empty() {
            return Err(Error::config(
                &path,
                format!(
                    "{} lists {} kernels but {} has more convolutions ({})",
                    CNN_CONFIG,
                    strides.len(),
                    file.path().display(),
                    extra.join(", ")
                ),
            ));
        }
        Self::new(in_dim, out, layers)
    }

    /// From `(kernel, stride, weight [out, in, k] row-major, bias [out])` per convolution.
    pub fn new(
        in_dim: usize,
        out_channels: usize,
        convs: Vec<(usize, usize, Vec<f32>, Vec<f32>)>,
    ) -> Result<Self> {
        let convs = convs
            .into_iter()
            .map(|(k, stride, w, bias)| {
                if k == 0 || stride == 0 || w.len() != out_channels * in_dim * k || bias.len() != out_channels {
                    return Err(Error::invalid(format!(
                        "CNN convolution: kernel {k}, stride {stride}, {} weights and {} biases do not fit \
                         {out_channels} output and {in_dim} input channels",
                        w.len(),
                        bias.len()
                    )));
                }
                // [out][in][k] → [out][k][in]
                let mut weight = vec![0f32; w.len()];
                for o in 0..out_channels {
                    for c in 0..in_dim {
                        for j in 0..k {
                            weight[(o * k + j) * in_dim + c] = w[(o * in_dim + c) * k + j];
                        }
                    }
                }
                Ok(Conv1d {
                    kernel: k,
                    stride,
                    padding: (k - 1) / 2,
                    weight,
                    bias,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cnn {
            in_dim,
            out_channels,
            convs,
        })
    }

    /// Width of the token embeddings it reads.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Width of the output: out_channels × number of kernels.
    pub fn dim(&self) -> usize {
        self.out_channels * self.convs.len()
    }
}

impl Module for Cnn {
    fn kind(&self) -> &'static str {
        "CNN"
    }

    fn forward(&self, mut features: Features) -> Result<Features> {
        let x = features.token_embeddings.as_ref().ok_or_else(|| {
            Error::invalid("CNN needs token_embeddings from the module before it")
        })?;
        let dims = x.expect_rank("CNN: token_embeddings [B, T, D]", 3)?;
        let (b, t, d) = (dims[0], dims[1], dims[2]);
        if d != self.in_dim {
            return Err(Error::shape(
                "CNN: token_embeddings",
                format!("[B, T, {}] (in_embedding_dimension)", self.in_dim),
                dims,
            ));
        }
        let lens: Vec<Option<usize>> = self.convs.iter().map(|c| c.out_len(t)).collect();
        let t_out = match lens[0] {
            Some(n) if lens.iter().all(|&l| l == Some(n)) => n,
            _ => {
                let ks: Vec<usize> = self.convs.iter().map(|c| c.kernel).collect();
                let outputs: Vec<String> = lens
                    .iter()
                    .map(|l| l.map_or_else(|| "none".to_string(), |n| n.to_string()))
                    .collect();
                return Err(Error::invalid(format!(
                    "CNN: {t} positions are too few for kernels {ks:?}, or the kernels give outputs of \
                     different lengths ({}, per kernel) that cannot be concatenated",
                    outputs.join(", ")
                )));
            }
        };
        let x = x.to_f32_vec()?;
        let width = self.dim();
        let mut out = vec![0f32; b * t_out * width];
        for (ci, conv) in self.convs.iter().enumerate() {
            let k = conv.kernel;
            for bi in 0..b {
                let seq = &x[bi * t * d..(bi + 1) * t * d];
                for p in 0..t_out {
                    let row = &mut out[(bi * t_out + p) * width + ci * self.out_channels..]
                        [..self.out_channels];
                    // Input positions p·stride − padding + j that fall inside the text.
                    let start = (p * conv.stride) as isize - conv.padding as isize;
                    for (o, y) in row.iter_mut().enumerate() {
                        let mut acc = conv.bias[o];
                        let w = &conv.weight[o * k * d..(o + 1) * k * d];
                        for j in 0..k {
                            let pos = start + j as isize;
                            if pos < 0 || pos >= t as isize {
                                continue;
                            }
                            let xr = &seq[pos as usize * d..(pos as usize + 1) * d];
                            acc += dot(&w[j * d..(j + 1) * d], xr);
                        }
                        *y = acc;
                    }
                }
            }
        }
        features.token_embeddings = Some(Tensor::from_vec([b, t_out, width], out)?);
        Ok(features)
    }

    fn output_dim(&self) -> Option<usize> {
        Some(self.dim())
    }
}

/// Values per block of [`dot`]: the f32 error is that of a sum of this many products.
const DOT_BLOCK: usize = 256;

/// Dot product of blocks of [`DOT_BLOCK`] values, whose partial sums are added in f64, so the
/// rounding error does not grow with the length (Dense and LSTM rows can be thousands of
/// values long). Rows of at most one block round exactly as [`dot_block`] does.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    if a.len() <= DOT_BLOCK {
        return dot_block(a, b);
    }
    let blocks = a.chunks(DOT_BLOCK).zip(b.chunks(DOT_BLOCK));
    blocks.map(|(x, y)| f64::from(dot_block(x, y))).sum::<f64>() as f32
}

/// Dot product with four independent accumulators (lets the compiler vectorize).
fn dot_block(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::testing::expect_err;

    /// 20,000 positive products (where one running sum drifts most): within 1e-6 of the f64 sum.
    #[test]
    fn long_dot_products_do_not_drift() {
        let a: Vec<f32> = (0..20_000).map(|i| 0.1 + (i % 7) as f32 * 0.013).collect();
        let b: Vec<f32> = (0..20_000).map(|i| 1.0 - (i % 5) as f32 * 0.07).collect();
        let exact: f64 = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        let got = f64::from(dot(&a, &b));
        assert!(
            (got - exact).abs() <= 1e-6 * exact,
            "{got} vs exact {exact}"
        );
        // One block: the plain four-lane sum.
        assert_eq!(dot(&a[..256], &b[..256]), dot_block(&a[..256], &b[..256]));
    }
    use stk_core::write_safetensors;

    /// Direct evaluation of the Conv1d definition, for comparison.
    fn conv_naive(
        x: &[f32],
        t: usize,
        d: usize,
        w: &[f32],
        bias: &[f32],
        k: usize,
        s: usize,
    ) -> Vec<Vec<f32>> {
        let p = (k - 1) / 2;
        let t_out = (t + 2 * p - k) / s + 1;
        (0..t_out)
            .map(|q| {
                (0..bias.len())
                    .map(|o| {
                        let mut acc = bias[o] as f64;
                        for c in 0..d {
                            for j in 0..k {
                                let pos = (q * s + j) as isize - p as isize;
                                if pos >= 0 && (pos as usize) < t {
                                    acc += w[(o * d + c) * k + j] as f64
                                        * x[pos as usize * d + c] as f64;
                                }
                            }
                        }
                        acc as f32
                    })
                    .collect()
            })
            .collect()
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761u32) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_the_convolution_definition() {
        let (d, out, t) = (5, 3, 6);
        let layers = [(1usize, 1usize), (3, 1), (4, 2)];
        // Strided/even kernels have different output lengths; test them in separate CNNs.
        for &(k, s) in &layers {
            let w = values(out * d * k, k as u32);
            let bias = values(out, 7);
            let m = Cnn::new(d, out, vec![(k, s, w.clone(), bias.clone())]).unwrap();
            let x = values(2 * t * d, 3);
            let f = Features {
                token_embeddings: Some(Tensor::from_slice([2, t, d], &x).unwrap()),
                ..Features::default()
            };
            let y = m.forward(f).unwrap().token_embeddings.unwrap();
            let want0 = conv_naive(&x[..t * d], t, d, &w, &bias, k, s);
            let want1 = conv_naive(&x[t * d..], t, d, &w, &bias, k, s);
            assert_eq!(y.dims(), &[2, want0.len(), out]);
            let got = y.as_slice::<f32>().unwrap();
            let want: Vec<f32> = want0.into_iter().chain(want1).flatten().collect();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "k={k} s={s}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn concatenates_kernels_and_rejects_mismatched_lengths() {
        let (d, out) = (2, 1);
        let conv = |k: usize, s: usize| (k, s, vec![1.0f32; out * d * k], vec![0.5f32]);
        let m = Cnn::new(d, out, vec![conv(1, 1), conv(3, 1)]).unwrap();
        assert_eq!(m.dim(), 2);
        let x = Tensor::from_slice([1, 3, 2], &[1.0f32, 1.0, 2.0, 2.0, 3.0, 3.0]).unwrap();
        let f = Features {
            token_embeddings: Some(x.clone()),
            ..Features::default()
        };
        let y = m.forward(f).unwrap().token_embeddings.unwrap();
        // k=1: 2·x + 0.5; k=3 (padding 1): sums of neighbours.
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[2.5, 6.5, 4.5, 12.5, 6.5, 10.5]
        );
        let m = Cnn::new(d, out, vec![conv(1, 1), conv(2, 1)]).unwrap();
        let f = Features {
            token_embeddings: Some(x),
            ..Features::default()
        };
        expect_err(
            m.forward(f),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["CNN", "different lengths"],
        );
        // Too short for the kernel: an error, not a panic.
        let m = Cnn::new(d, out, vec![conv(2, 1)]).unwrap();
        let f = Features {
            token_embeddings: Some(Tensor::from_slice([1, 1, 2], &[1.0f32, 1.0]).unwrap()),
            ..Features::default()
        };
        expect_err(
            m.forward(f),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["CNN", "1 positions are too few for kernels [2]"],
        );
        expect_err(
            Cnn::new(d, out, vec![(3, 1, vec![1.0; 5], vec![0.0])]),
            |e| matches!(e, Error::InvalidArgument(_)),
            &[
                "CNN convolution",
                "kernel 3",
                "5 weights",
                "1 output and 2 input channels",
            ],
        );
    }

    #[test]
    fn folder_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join(CNN_CONFIG),
            r#"{"in_word_embedding_dimension": 2, "out_channels": 1, "kernel_sizes": [1, 3]}"#,
        )
        .unwrap();
        let w1 = Tensor::from_slice([1, 2, 1], &[1.0f32, 1.0]).unwrap();
        let w3 = Tensor::from_slice([1, 2, 3], &[1.0f32; 6]).unwrap();
        let b = Tensor::from_slice([1], &[0.0f32]).unwrap();
        let save =
            |ts: &[(&str, &Tensor)]| write_safetensors(p.join("model.safetensors"), ts).unwrap();
        save(&[
            ("convs.0.weight", &w1),
            ("convs.0.bias", &b),
            ("convs.1.weight", &w3),
            ("convs.1.bias", &b),
        ]);
        assert_eq!(Cnn::from_dir(p).unwrap().dim(), 2);
        // Kernel size in the config disagrees with the tensor.
        save(&[
            ("convs.0.weight", &w1),
            ("convs.0.bias", &b),
            ("convs.1.weight", &w1),
            ("convs.1.bias", &b),
        ]);
        let e = Cnn::from_dir(p).unwrap_err();
        assert!(
            matches!(e, Error::Shape { .. }) && e.to_string().contains("convs.1.weight"),
            "{e}"
        );
        save(&[
            ("convs.0.weight", &w1),
            ("convs.0.bias", &b),
            ("convs.1.weight", &w3),
        ]);
        assert!(matches!(Cnn::from_dir(p), Err(Error::MissingTensor { .. })));
        save(&[
            ("convs.0.weight", &w1),
            ("convs.0.bias", &b),
            ("convs.1.weight", &w3),
            ("convs.1.bias", &b),
            ("convs.2.bias", &b),
        ]);
        assert!(matches!(Cnn::from_dir(p), Err(Error::Config { .. })));
        std::fs::write(
            p.join(CNN_CONFIG),
            r#"{"in_embedding_dimension": 2, "kernel_sizes": [1, 3], "stride_sizes": [1]}"#,
        )
        .unwrap();
        assert!(matches!(Cnn::from_dir(p), Err(Error::Config { .. })));
        std::fs::write(p.join(CNN_CONFIG), r#"{"out_channels": 1}"#).unwrap();
        let e = Cnn::from_dir(p).unwrap_err().to_string();
        assert!(
            e.contains("in_embedding_dimension") && e.contains(CNN_CONFIG),
            "{e}"
        );
    }
}
