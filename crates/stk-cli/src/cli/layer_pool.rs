//! `stk layer-pool`: the WeightedLayerPooling module on a safetensors file.

use clap::Args;
use std::path::PathBuf;
use stk::{Device, Result};

#[derive(Args)]
pub struct LayerPoolArgs {
    /// safetensors file with `all_layer_embeddings` [L+1, B, T, D] and `layer_weights`
    /// [L + 1 − layer_start]
    #[arg(long)]
    input: PathBuf,
    /// safetensors file to write, holding `token_embeddings` [B, T, D]
    #[arg(long)]
    output: PathBuf,
    /// First layer of the average (layers before it are left out)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    layer_start: String,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: LayerPoolArgs) -> Result<()> {
    let device: Device = args.device.parse()?;
    let layer_start = super::pool::parse_count("--layer-start", &args.layer_start)?;
    stk::ops::layer_pool_file(&args.input, &args.output, layer_start, device)
}
