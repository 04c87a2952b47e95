//! `LSTM`: PyTorch's `nn.LSTM` (gate order i, f, g, o; `batch_first`; stacked layers; optional
//! reverse direction) run on each text over its own length, as the reference does with packed
//! sequences. Lengths are clamped to at least 1 (an empty text runs over one padding token);
//! outputs past a text's length are 0. Dropout between layers is inactive at inference.

use crate::cnn::dot;
use crate::features::{Features, Module};
use crate::module_files::{f32_values, open_weights, positive, read_json_config};
use serde::Deserialize;
use std::path::Path;
use stk_core::{Error, Result, Tensor};

/// Config file of the module.
pub const LSTM_CONFIG: &str = "lstm_config.json";

#[derive(Deserialize)]
struct LstmConfig {
    /// `word_embedding_dimension` in folders saved by older versions.
    #[serde(alias = "word_embedding_dimension")]
    embedding_dimension: usize,
    hidden_dim: usize,
    #[serde(default = "one")]
    num_layers: usize,
    /// Training-time dropout between layers; no effect on inference.
    #[serde(default)]
    #[allow(dead_code)]
    dropout: f64,
    #[serde(default = "yes")]
    bidirectional: bool,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

/// Parameters of one direction of one layer.
#[derive(Debug, Clone)]
pub struct LstmCell {
    /// `[4H, in]`, rows in gate order i, f, g, o.
    pub weight_ih: Vec<f32>,
    /// `[4H, H]`.
    pub weight_hh: Vec<f32>,
    /// `[4H]`, added to the input projection.
    pub bias_ih: Vec<f32>,
    /// `[4H]`, added to the hidden projection.
    pub bias_hh: Vec<f32>,
}

/// A (bi)directional stacked LSTM over token embeddings.
#[derive(Debug, Clone)]
pub struct Lstm {
    in_dim: usize,
    hidden: usize,
    /// Per layer: the forward cell, then the reverse cell when bidirectional.
    layers: Vec<Vec<LstmCell>>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Lstm {
    /// Read `lstm_config.json` and `model.safetensors` (`encoder.weight_ih_l{k}[_reverse]`
    /// `[4H, in]`, `encoder.weight_hh_l{k}[_reverse]` `[4H, H]`, `encoder.bias_ih_l{k}[_reverse]`
    /// and `encoder.bias_hh_l{k}[_reverse]` `[4H]`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(LSTM_CONFIG);
        let cfg: LstmConfig = read_json_config(dir, LSTM_CONFIG)?;
        let e = positive(&path, "embedding_dimension", cfg.embedding_dimension)?;
        let h = positive(&path, "hidden_dim", cfg.hidden_dim)?;
        let n = positive(&path, "num_layers", cfg.num_layers)?;
        let dirs = if cfg.bidirectional { 2 } else { 1 };
        let file = open_weights(dir, "LSTM")?;
        let mut layers = Vec::with_capacity(n);
        for l in 0..n {
            let in_l = if l == 0 { e } else { h * dirs };
            let mut cells = Vec::with_capacity(dirs);
            for sfx in ["", "_reverse"].iter().take(dirs) {
                let name = |what: &str| format!("encoder.{what}_l{l}{sfx}");
                cells.push(LstmCell {
                    weight_ih: f32_values(&file, &name("weight_ih"), &[4 * h, in_l])?,
                    weight_hh: f32_values(&file, &name("weight_hh"), &[4 * h, h])?,
                    bias_ih: f32_values(&file, &name("bias_ih"), &[4 * h])?,
                    bias_hh: f32_values(&file, &name("bias_hh"), &[4 * h])?,
                });
            }
            layers.push(cells);
        }
        // Tensors for layers or directions the config does not have mean the two disagree.
        let expected = |name: &str| {
            (0..n).any(|l| {
                ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
                    .iter()
                    .any(|w| {
                        ["", "_reverse"]
                            .iter()
                            .take(dirs)
                            .any(|sfx| name == format!("encoder.{w}_l{l}{sfx}"))
                    })
            })
        };
        let extra: Vec<&str> = file
            .names()
            .filter(|n| n.starts_with("encoder.") && !expected(n))
            .collect();
        if !extra.is_empty() {
            return Err(Error::config(
                &path,
                format!(
                    "{LSTM_CONFIG} says {n} layer(s), bidirectional = {}, but {} also has {}",
                    cfg.bidirectional,
                    file.path().display(),
                    extra.join(", ")
                ),
            ));
        }
        Self::new(e, h, layers)
    }

    /// From cells: `layers[l]` holds one cell (forward) or two (forward, reverse), the same
    /// count in every layer.
    pub fn new(in_dim: usize, hidden: usize, layers: Vec<Vec<LstmCell>>) -> Result<Self> {
        let dirs = layers.first().map_or(0, Vec::len);
        if layers.is_empty() || !(1..=2).contains(&dirs) || hidden == 0 || in_dim == 0 {
            return Err(Error::invalid(
                "LSTM needs at least one layer of one or two directions",
            ));
        }
        for (l, cells) in layers.iter().enumerate() {
            let in_l = if l == 0 { in_dim } else { hidden * dirs };
            for c in cells {
                if cells.len() != dirs
                    || c.weight_ih.len() != 4 * hidden * in_l
                    || c.weight_hh.len() != 4 * hidden * hidden
                    || c.bias_ih.len() != 4 * hidden
                    || c.bias_hh.len() != 4 * hidden
                {
                    return Err(Error::invalid(format!(
                        "LSTM layer {l}: parameters do not fit input {in_l}, hidden {hidden}, {dirs} direction(s)"
                    )));
                }
            }
        }
        Ok(Lstm {
            in_dim,
            hidden,
            layers,
        })
    }

    /// Width of the token embeddings it reads.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Width of the output: hidden size × directions.
    pub fn dim(&self) -> usize {
        self.hidden * self.layers[0].len()
    }

    /// Run one direction of one layer over the `len` positions of `x` (`[len, in]`); returns
    /// the hidden state at each position (`[len, H]`), in position order for both directions.
    fn run_cell(&self, cell: &LstmCell, x: &[f32], len: usize, reverse: bool) -> Vec<f32> {
        let h = self.hidden;
        let in_l = x.len() / len;
        let mut out = vec![0f32; len * h];
        let mut state_h = vec![0f32; h];
        let mut state_c = vec![0f32; h];
        let mut gates = vec![0f32; 4 * h];
        for step in 0..len {
            let t = if reverse { len - 1 - step } else { step };
            let xt = &x[t * in_l..(t + 1) * in_l];
            for (r, g) in gates.iter_mut().enumerate() {
                *g = (dot(&cell.weight_ih[r * in_l..(r + 1) * in_l], xt) + cell.bias_ih[r])
                    + (dot(&cell.weight_hh[r * h..(r + 1) * h], &state_h) + cell.bias_hh[r]);
            }
            for u in 0..h {
                let i = sigmoid(gates[u]);
                let f = sigmoid(gates[h + u]);
                let g = gates[2 * h + u].tanh();
                let o = sigmoid(gates[3 * h + u]);
                state_c[u] = f * state_c[u] + i * g;
                state_h[u] = o * state_c[u].tanh();
            }
            out[t * h..(t + 1) * h].copy_from_slice(&state_h);
        }
        out
    }
}

impl Module for Lstm {
    fn kind(&self) -> &'static str {
        "LSTM"
    }

    fn forward(&self, mut features: Features) -> Result<Features> {
        let x = features.token_embeddings.as_ref().ok_or_else(|| {
            Error::invalid("LSTM needs token_embeddings from the module before it")
        })?;
        let dims = x.expect_rank("LSTM: token_embeddings [B, T, D]", 3)?;
        let (b, t, d) = (dims[0], dims[1], dims[2]);
        if d != self.in_dim {
            return Err(Error::shape(
                "LSTM: token_embeddings",
                format!("[B, T, {}] (embedding_dimension)", self.in_dim),
                dims,
            ));
        }
        if features.sentence_lengths.len() != b {
            return Err(Error::invalid(format!(
                "LSTM needs one sentence length per text: {} given for {}",
                features.sentence_lengths.len(),
                stk_core::counted(b, "text")
            )));
        }
        let lens: Vec<usize> = features
            .sentence_lengths
            .iter()
            .map(|&l| l.max(1))
            .collect();
        if let Some((i, &l)) = lens.iter().enumerate().find(|(_, &l)| l > t) {
            return Err(Error::invalid(format!(
                "LSTM: text {i} has length {l} but token_embeddings has only {t} positions"
            )));
        }
        // Like unpacking a packed sequence: as many positions as the longest (clamped) text.
        let t_out = lens.iter().copied().max().unwrap_or(0);
        let width = self.dim();
        let x = x.to_f32_vec()?;
        let mut out = vec![0f32; b * t_out * width];
        for (i, &len) in lens.iter().enumerate() {
            let mut input = x[i * t * d..(i * t + len) * d].to_vec();
            for cells in &self.layers {
                // Directions side by side: [forward H | reverse H] per position.
                let mut layer_out = vec![0f32; len * width];
                for (dir, cell) in cells.iter().enumerate() {
                    let states = self.run_cell(cell, &input, len, dir == 1);
                    let rows = layer_out.chunks_exact_mut(width);
                    for (row, state) in rows.zip(states.chunks_exact(self.hidden)) {
                        row[dir * self.hidden..(dir + 1) * self.hidden].copy_from_slice(state);
                    }
                }
                input = layer_out;
            }
            out[i * t_out * width..(i * t_out + len) * width].copy_from_slice(&input);
        }
        features.token_embeddings = Some(Tensor::from_vec([b, t_out, width], out)?);
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

    fn cell(in_l: usize, h: usize, scale: f32) -> LstmCell {
        let v = |n: usize, s: f32| {
            (0..n)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * s)
                .collect::<Vec<_>>()
        };
        LstmCell {
            weight_ih: v(4 * h * in_l, 0.1 * scale),
            weight_hh: v(4 * h * h, 0.07 * scale),
            bias_ih: v(4 * h, 0.03),
            bias_hh: v(4 * h, -0.02),
        }
    }

    /// Scalar LSTM step by the textbook equations in f64, for comparison.
    fn reference_run(c: &LstmCell, xs: &[Vec<f32>], h: usize) -> Vec<Vec<f64>> {
        let in_l = xs[0].len();
        let (mut hs, mut cs) = (vec![0f64; h], vec![0f64; h]);
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let mut outs = Vec::new();
        for x in xs {
            let gate = |r: usize| {
                let wi = &c.weight_ih[r * in_l..(r + 1) * in_l];
                let wh = &c.weight_hh[r * h..(r + 1) * h];
                c.bias_ih[r] as f64
                    + c.bias_hh[r] as f64
                    + wi.iter()
                        .zip(x)
                        .map(|(&w, &v)| w as f64 * v as f64)
                        .sum::<f64>()
                    + wh.iter().zip(&hs).map(|(&w, &v)| w as f64 * v).sum::<f64>()
            };
            let g: Vec<f64> = (0..4 * h).map(gate).collect();
            for u in 0..h {
                cs[u] = sig(g[h + u]) * cs[u] + sig(g[u]) * g[2 * h + u].tanh();
                hs[u] = sig(g[3 * h + u]) * cs[u].tanh();
            }
            outs.push(hs.clone());
        }
        outs
    }

    #[test]
    fn unidirectional_matches_the_equations_and_zeroes_padding() {
        let (e, h) = (3, 2);
        let c = cell(e, h, 1.0);
        let m = Lstm::new(e, h, vec![vec![c.clone()]]).unwrap();
        let xs: Vec<Vec<f32>> = (0..4)
            .map(|t| (0..e).map(|k| (t * e + k) as f32 * 0.1 - 0.3).collect())
            .collect();
        let flat: Vec<f32> = xs.iter().flatten().copied().collect();
        let f = Features {
            token_embeddings: Some(
                Tensor::from_slice([1, 4, e], &flat)
                    .unwrap()
                    .reshape([1, 4, e])
                    .unwrap(),
            ),
            sentence_lengths: vec![3],
            ..Features::default()
        };
        let y = m.forward(f).unwrap().token_embeddings.unwrap();
        // Output length is the longest text (3), not the padded input (4).
        assert_eq!(y.dims(), &[1, 3, h]);
        let want = reference_run(&c, &xs[..3], h);
        for (g, w) in y
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(want.iter().flatten())
        {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn bidirectional_two_layers_and_empty_texts() {
        let (e, h) = (2, 3);
        let l0 = vec![cell(e, h, 1.0), cell(e, h, -1.0)];
        let l1 = vec![cell(2 * h, h, 0.5), cell(2 * h, h, -0.5)];
        let m = Lstm::new(e, h, vec![l0.clone(), l1.clone()]).unwrap();
        assert_eq!(m.dim(), 6);
        let xs: Vec<Vec<f32>> = vec![vec![0.5, -1.0], vec![0.25, 0.75], vec![9.0, 9.0]];
        let flat: Vec<f32> = xs
            .iter()
            .flatten()
            .copied()
            .chain([0.1, 0.2, 7.0, 7.0, 7.0, 7.0])
            .collect();
        let f = Features {
            token_embeddings: Some(Tensor::from_slice([2, 3, e], &flat).unwrap()),
            sentence_lengths: vec![2, 0],
            ..Features::default()
        };
        let y = m.forward(f).unwrap().token_embeddings.unwrap();
        assert_eq!(y.dims(), &[2, 2, 6]);
        let y = y.as_slice::<f32>().unwrap();
        // Text 0 over its 2 tokens: layer 0 both ways, then layer 1 on the concatenation.
        let run2 = |cells: &[LstmCell], xs: &[Vec<f32>]| -> Vec<Vec<f32>> {
            let fw = reference_run(&cells[0], xs, h);
            let rev: Vec<Vec<f32>> = xs.iter().rev().cloned().collect();
            let mut bw = reference_run(&cells[1], &rev, h);
            bw.reverse();
            fw.iter()
                .zip(&bw)
                .map(|(a, b)| a.iter().chain(b).map(|&v| v as f32).collect())
                .collect()
        };
        let want0 = run2(&l1, &run2(&l0, &xs[..2]));
        for (g, w) in y[..12].iter().zip(want0.iter().flatten()) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        // Text 1 is empty: one step over its padding token, then zeros.
        let want1 = run2(&l1, &run2(&l0, &[vec![0.1, 0.2]]));
        for (g, w) in y[12..18].iter().zip(want1.iter().flatten()) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        assert!(y[18..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn bad_inputs_and_folders() {
        let m = Lstm::new(2, 1, vec![vec![cell(2, 1, 1.0)]]).unwrap();
        let x = Tensor::from_slice([1, 2, 2], &[0.0f32; 4]).unwrap();
        let f = |lens: Vec<usize>| Features {
            token_embeddings: Some(x.clone()),
            sentence_lengths: lens,
            ..Features::default()
        };
        for (lengths, words) in [
            (
                vec![],
                &[
                    "LSTM needs one sentence length per text",
                    "0 given for 1 text",
                ][..],
            ),
            (
                vec![3],
                &["LSTM", "text 0 has length 3", "only 2 positions"],
            ),
        ] {
            expect_err(
                m.forward(f(lengths)),
                |e| matches!(e, Error::InvalidArgument(_)),
                words,
            );
        }

        assert!(m.forward(f(vec![2])).is_ok());

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join(LSTM_CONFIG), r#"{"embedding_dimension": 2, "hidden_dim": 1, "num_layers": 1, "bidirectional": false}"#)
            .unwrap();
        let c = cell(2, 1, 1.0);
        let t = |v: &[f32], dims: &[usize]| Tensor::from_slice(dims, v).unwrap();
        let (wi, wh, bi, bh) = (
            t(&c.weight_ih, &[4, 2]),
            t(&c.weight_hh, &[4, 1]),
            t(&c.bias_ih, &[4]),
            t(&c.bias_hh, &[4]),
        );
        let mut ts = vec![
            ("encoder.weight_ih_l0", &wi),
            ("encoder.weight_hh_l0", &wh),
            ("encoder.bias_ih_l0", &bi),
            ("encoder.bias_hh_l0", &bh),
        ];
        write_safetensors(p.join("model.safetensors"), &ts).unwrap();
        assert_eq!(Lstm::from_dir(p).unwrap().dim(), 1);
        // A reverse direction the config does not mention.
        ts.push(("encoder.weight_ih_l0_reverse", &wi));
        write_safetensors(p.join("model.safetensors"), &ts).unwrap();
        let e = Lstm::from_dir(p).unwrap_err().to_string();
        assert!(e.contains("weight_ih_l0_reverse"), "{e}");
        // The config says bidirectional: reverse tensors missing.
        std::fs::write(
            p.join(LSTM_CONFIG),
            r#"{"word_embedding_dimension": 2, "hidden_dim": 1}"#,
        )
        .unwrap();
        assert!(matches!(
            Lstm::from_dir(p),
            Err(Error::MissingTensor { .. })
        ));
        // Hidden size disagrees with the tensors.
        std::fs::write(
            p.join(LSTM_CONFIG),
            r#"{"embedding_dimension": 2, "hidden_dim": 2, "bidirectional": false}"#,
        )
        .unwrap();
        assert!(matches!(Lstm::from_dir(p), Err(Error::Shape { .. })));
        std::fs::write(
            p.join(LSTM_CONFIG),
            r#"{"embedding_dimension": 2, "hidden_dim": 0}"#,
        )
        .unwrap();
        assert!(matches!(Lstm::from_dir(p), Err(Error::Config { .. })));
    }
}
