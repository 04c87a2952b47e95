//! `stk pool`: the Pooling module on a safetensors file.

use clap::Args;
use std::path::PathBuf;
use stk::{Device, Error, PoolingMode, PoolingSpec, Result};

#[derive(Args)]
pub struct PoolArgs {
    /// safetensors file with `token_embeddings` and either `attention_mask` (padded, [B, T, D])
    /// or `cu_seq_lens_q` (varlen, [1, N, D]); `token_weights_sum` and `cls_token_embeddings`
    /// are used when present
    #[arg(long)]
    input: PathBuf,
    /// safetensors file to write, holding `sentence_embedding` [B, modes × D]
    #[arg(long)]
    output: PathBuf,
    /// Pooling modes, comma-separated, concatenated in this order: cls, max, mean,
    /// mean_sqrt_len_tokens, weightedmean, lasttoken
    #[arg(long, default_value = "mean")]
    mode: String,
    /// Leave the first P tokens of each sequence out (the reference's include_prompt = false)
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    prompt_length: Option<String>,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: PoolArgs) -> Result<()> {
    let device: Device = args.device.parse()?;
    let modes = PoolingMode::parse_list(&args.mode)?;
    let prompt_length = args
        .prompt_length
        .as_deref()
        .map(|p| parse_count("--prompt-length", p))
        .transpose()?;
    let spec = PoolingSpec::new(modes)?.with_prompt_length(prompt_length);
    stk::ops::pool_file(&args.input, &args.output, &spec, device)
}

/// A whole number ≥ 0 given on the command line, with a message naming the flag otherwise.
pub(crate) fn parse_count(flag: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<i128>() {
        Ok(n) if n < 0 => Err(Error::invalid(format!("{flag} must be 0 or more, got {n}"))),
        Ok(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| Error::invalid(format!("{flag} {n} is too large"))),
        Err(_) => Err(Error::invalid(format!(
            "{flag} must be a whole number, got `{value}`"
        ))),
    }
}
