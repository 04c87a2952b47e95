//! `Dropout`: active only while training, so at inference it passes features through.

use crate::features::{Features, Module};
use crate::module_files::read_json_config;
use serde::Deserialize;
use std::path::Path;
use stk_core::{Error, Result};

/// Config file of the module.
pub const DROPOUT_CONFIG: &str = "config.json";

#[derive(Deserialize)]
struct DropoutConfig {
    #[serde(default = "default_rate")]
    dropout: f64,
}

fn default_rate() -> f64 {
    0.2
}

/// The identity at inference; the rate is kept only to validate and describe the module.
#[derive(Debug, Clone)]
pub struct Dropout {
    rate: f64,
}

impl Dropout {
    /// Read `config.json` (`dropout`, a probability in [0, 1]).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let cfg: DropoutConfig = read_json_config(dir, DROPOUT_CONFIG)?;
        if !(0.0..=1.0).contains(&cfg.dropout) {
            return Err(Error::config(
                dir.join(DROPOUT_CONFIG),
                format!(
                    "`dropout` must be a probability in [0, 1], got {}",
                    cfg.dropout
                ),
            ));
        }
        Ok(Dropout { rate: cfg.dropout })
    }

    /// The configured dropout probability (unused: inference applies none).
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl Module for Dropout {
    fn kind(&self) -> &'static str {
        "Dropout"
    }
    fn forward(&self, features: Features) -> Result<Features> {
        Ok(features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_config_checks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DROPOUT_CONFIG), r#"{"dropout": 0.1}"#).unwrap();
        let m = Dropout::from_dir(dir.path()).unwrap();
        assert_eq!(m.rate(), 0.1);
        let f = Features {
            sentence_lengths: vec![3],
            ..Features::default()
        };
        assert_eq!(m.forward(f).unwrap().sentence_lengths, vec![3]);
        std::fs::write(dir.path().join(DROPOUT_CONFIG), r#"{"dropout": 1.5}"#).unwrap();
        assert!(matches!(
            Dropout::from_dir(dir.path()),
            Err(Error::Config { .. })
        ));
        std::fs::write(dir.path().join(DROPOUT_CONFIG), "{").unwrap();
        assert!(matches!(
            Dropout::from_dir(dir.path()),
            Err(Error::Config { .. })
        ));
    }
}
