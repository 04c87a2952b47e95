use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// One pooling strategy of the reference `Pooling` module. A pooling layer computes a list
/// of them and concatenates the results in list order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolingMode {
    /// The first token's embedding (`cls`).
    Cls,
    /// The elementwise maximum over real tokens (`max`).
    Max,
    /// The mean over real tokens (`mean`).
    Mean,
    /// The sum over real tokens divided by the square root of their count
    /// (`mean_sqrt_len_tokens`).
    MeanSqrtLenTokens,
    /// The mean weighted by position, 1 for the first token up to T for the last
    /// (`weightedmean`).
    WeightedMean,
    /// The last real token's embedding (`lasttoken`).
    LastToken,
}

impl PoolingMode {
    /// Every mode, in the order the reference concatenates them.
    pub const ALL: [PoolingMode; 6] = [
        PoolingMode::Cls,
        PoolingMode::Max,
        PoolingMode::Mean,
        PoolingMode::MeanSqrtLenTokens,
        PoolingMode::WeightedMean,
        PoolingMode::LastToken,
    ];

    /// The reference's spelling (`mean_sqrt_len_tokens`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PoolingMode::Cls => "cls",
            PoolingMode::Max => "max",
            PoolingMode::Mean => "mean",
            PoolingMode::MeanSqrtLenTokens => "mean_sqrt_len_tokens",
            PoolingMode::WeightedMean => "weightedmean",
            PoolingMode::LastToken => "lasttoken",
        }
    }

    /// Parse a comma-separated list such as `cls,max,mean` (order kept, must not be empty).
    pub fn parse_list(s: &str) -> Result<Vec<PoolingMode>> {
        if s.trim().is_empty() {
            return Err(Error::invalid(format!(
                "the list of pooling modes is empty (expected comma-separated modes from: {})",
                PoolingMode::ALL.map(|m| m.as_str()).join(", ")
            )));
        }
        if s.split(',').any(|m| m.trim().is_empty()) {
            return Err(Error::invalid(format!(
                "the list of pooling modes `{s}` has an empty entry"
            )));
        }
        let modes = s
            .split(',')
            .map(|m| m.trim().parse())
            .collect::<Result<Vec<PoolingMode>>>()?;
        Ok(modes)
    }
}

impl FromStr for PoolingMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PoolingMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Error::UnknownPoolingMode(s.to_string()))
    }
}

impl fmt::Display for PoolingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a pooling layer computes: the modes (output concatenated in this order) and the
/// prompt to leave out. `prompt_length: Some(p)` with `p > 0` is the reference's
/// `include_prompt = false` with that prompt length; `None` or `Some(0)` includes everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolingSpec {
    /// The modes, at least one; outputs are concatenated in this order.
    pub modes: Vec<PoolingMode>,
    /// Tokens to leave out at the start of each sequence (`None`: none).
    pub prompt_length: Option<usize>,
}

impl PoolingSpec {
    /// A spec with `modes` and no prompt exclusion; [`Error::InvalidArgument`] if `modes` is empty.
    pub fn new(modes: Vec<PoolingMode>) -> Result<Self> {
        if modes.is_empty() {
            return Err(Error::invalid("a pooling layer needs at least one mode"));
        }
        Ok(PoolingSpec {
            modes,
            prompt_length: None,
        })
    }
    /// The same spec leaving out the first `p` tokens of each sequence.
    pub fn with_prompt_length(mut self, p: Option<usize>) -> Self {
        self.prompt_length = p;
        self
    }
    /// Number of positions excluded at the start of each sequence.
    pub fn excluded_prompt(&self) -> usize {
        self.prompt_length.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::expect_err;
    #[test]
    fn parses_lists() {
        assert_eq!(
            PoolingMode::parse_list("cls,max,mean_sqrt_len_tokens").unwrap(),
            vec![
                PoolingMode::Cls,
                PoolingMode::Max,
                PoolingMode::MeanSqrtLenTokens
            ]
        );
        assert!(
            matches!(PoolingMode::parse_list("mean,avg"), Err(Error::UnknownPoolingMode(m)) if m == "avg")
        );
        for empty in ["", " "] {
            expect_err(
                PoolingMode::parse_list(empty),
                |e| matches!(e, Error::InvalidArgument(_)),
                &["list of pooling modes is empty", "cls, max, mean"],
            );
        }
        expect_err(
            PoolingMode::parse_list("mean,"),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["pooling modes `mean,` has an empty entry"],
        );
        expect_err(
            PoolingSpec::new(vec![]),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["at least one mode"],
        );
    }
}
