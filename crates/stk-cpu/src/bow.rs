//! `BoW`: a bag-of-words vector per text, one entry per vocabulary word: the word's weight
//! (tf-idf style when the config carries idf weights), added per occurrence
//! (`cumulative_term_frequency`) or set once.

use crate::features::{Features, Module, TextModule};
use crate::module_files::read_json_config;
use crate::whitespace_tokenizer::WhitespaceTokenizer;
use crate::word_weights::weights_for_vocab;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use stk_core::{Result, Tensor};

/// Config file of the module.
pub const BOW_CONFIG: &str = "config.json";

#[derive(Deserialize)]
struct BowConfig {
    vocab: Vec<String>,
    #[serde(default)]
    word_weights: HashMap<String, f64>,
    #[serde(default = "one")]
    unknown_word_weight: f64,
    #[serde(default = "yes")]
    cumulative_term_frequency: bool,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

/// Bag-of-words sentence vectors of the vocabulary's size.
#[derive(Debug, Clone)]
pub struct BoW {
    tokenizer: WhitespaceTokenizer,
    /// Weight of each (deduplicated) vocabulary word.
    weights: Vec<f32>,
    cumulative_term_frequency: bool,
}

impl BoW {
    /// Read `config.json` (`vocab`, `word_weights`, `unknown_word_weight`,
    /// `cumulative_term_frequency`); BoW has no weights file.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let cfg: BowConfig = read_json_config(dir, BOW_CONFIG)?;
        Self::new(
            cfg.vocab,
            &cfg.word_weights,
            cfg.unknown_word_weight,
            cfg.cumulative_term_frequency,
        )
    }

    /// Repeated vocabulary words are dropped (the first stays), as in the reference.
    pub fn new(
        vocab: Vec<String>,
        word_weights: &HashMap<String, f64>,
        unknown_word_weight: f64,
        cumulative_term_frequency: bool,
    ) -> Result<Self> {
        let mut seen = HashSet::with_capacity(vocab.len());
        let vocab: Vec<String> = vocab
            .into_iter()
            .filter(|w| seen.insert(w.clone()))
            .collect();
        let weights = weights_for_vocab(&vocab, word_weights, unknown_word_weight);
        // The reference's BoW tokenizer keeps stop words and case.
        let tokenizer = WhitespaceTokenizer::new(&vocab, Vec::new(), false)?;
        Ok(BoW {
            tokenizer,
            weights,
            cumulative_term_frequency,
        })
    }

    /// Output width: the number of distinct vocabulary words.
    pub fn dim(&self) -> usize {
        self.weights.len()
    }
}

impl Module for BoW {
    fn kind(&self) -> &'static str {
        "BoW"
    }

    /// The vectors are made while tokenizing (as in the reference); nothing left to do.
    fn forward(&self, features: Features) -> Result<Features> {
        Ok(features)
    }

    fn output_dim(&self) -> Option<usize> {
        Some(self.dim())
    }
}

impl TextModule for BoW {
    fn tokenize(&self, texts: &[&str]) -> Result<Features> {
        let v = self.dim();
        let input_ids: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenizer.tokenize(t)).collect();
        let mut out = vec![0f32; texts.len() * v];
        for (row, ids) in out.chunks_mut(v.max(1)).zip(&input_ids) {
            for &id in ids {
                // Ids come from a tokenizer over this very vocabulary: always in range.
                let (slot, w) = (&mut row[id as usize], self.weights[id as usize]);
                if self.cumulative_term_frequency {
                    *slot += w;
                } else {
                    *slot = w;
                }
            }
        }
        Ok(Features {
            sentence_embedding: Some(Tensor::from_vec([texts.len(), v], out)?),
            sentence_lengths: input_ids.iter().map(Vec::len).collect(),
            input_ids,
            ..Features::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::Error;

    #[test]
    fn term_frequency_and_binary() {
        let vocab: Vec<String> = ["the", "cat", "The", "cat", "sat"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ww: HashMap<String, f64> = [("the".to_string(), 0.5), ("cat".to_string(), 2.0)].into();
        let m = BoW::new(vocab.clone(), &ww, 0.1, true).unwrap();
        assert_eq!(m.dim(), 4); // second "cat" dropped
        assert_eq!(m.output_dim(), Some(4));
        let f = m
            .tokenize(&["the cat, the CAT sat sat", "", "The"])
            .unwrap();
        let e = f.sentence_embedding.as_ref().unwrap();
        assert_eq!(e.dims(), &[3, 4]);
        let want = [
            1.0f32,
            2.0 + 2.0,
            0.0,
            0.2,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.5,
            0.0,
        ];
        let got = e.as_slice::<f32>().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        let m = BoW::new(vocab, &ww, 0.1, false).unwrap();
        let f = m.forward(m.tokenize(&["cat cat sat"]).unwrap()).unwrap();
        assert_eq!(
            f.sentence_embedding.unwrap().as_slice::<f32>().unwrap(),
            &[0.0, 2.0, 0.0, 0.1f32]
        );
        assert_eq!(
            m.tokenize(&[]).unwrap().sentence_embedding.unwrap().dims(),
            &[0, 4]
        );
    }

    #[test]
    fn config_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(BoW::from_dir(dir.path()), Err(Error::Io { .. })));
        std::fs::write(
            dir.path().join(BOW_CONFIG),
            r#"{"vocab": ["a"], "word_weights": {"a": "x"}}"#,
        )
        .unwrap();
        let e = BoW::from_dir(dir.path()).unwrap_err();
        assert!(
            matches!(e, Error::Config { .. }) && e.to_string().contains(BOW_CONFIG),
            "{e}"
        );
        std::fs::write(dir.path().join(BOW_CONFIG), r#"{"vocab": ["a", "b"]}"#).unwrap();
        let m = BoW::from_dir(dir.path()).unwrap();
        let f = m.tokenize(&["b b"]).unwrap();
        assert_eq!(
            f.sentence_embedding.unwrap().as_slice::<f32>().unwrap(),
            &[0.0, 2.0]
        );
    }
}
