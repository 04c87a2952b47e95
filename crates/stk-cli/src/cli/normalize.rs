//! `stk normalize`: the Normalize module on a safetensors file.

use clap::Args;
use std::path::PathBuf;
use stk::{Device, Result};

#[derive(Args)]
pub struct NormalizeArgs {
    /// safetensors file with `sentence_embedding` [B, D]
    #[arg(long)]
    input: PathBuf,
    /// safetensors file to write, holding the L2-normalized `sentence_embedding`
    #[arg(long)]
    output: PathBuf,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: NormalizeArgs) -> Result<()> {
    let device: Device = args.device.parse()?;
    stk::ops::normalize_file(&args.input, &args.output, device)
}
