//! Subcommand definitions. One file per subcommand family; each exposes `Args` and `run`.

mod bench;
mod bench_encode;
mod bench_gpu;
mod encode;
mod layer_pool;
mod normalize;
mod pool;

use clap::{Parser, Subcommand};
use stk::Result;

#[derive(Parser)]
#[command(
    name = "stk",
    version,
    about = "Sentence-embedding kernels: pooling, normalize, static embeddings, encode"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode texts (a .txt, .json or stdin) into embeddings (.safetensors, .npy or .jsonl).
    Encode(encode::Args),
    /// Pooling of token embeddings from a safetensors file (all six modes, padded or varlen)
    Pool(pool::PoolArgs),
    /// L2-normalize `sentence_embedding` from a safetensors file
    Normalize(normalize::NormalizeArgs),
    /// WeightedLayerPooling of `all_layer_embeddings` from a safetensors file
    LayerPool(layer_pool::LayerPoolArgs),
    /// Throughput benchmarks
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

pub fn run() -> Result<()> {
    // A usage error (unknown flag, invalid value) is bad input like any other: exit code 1,
    // not clap's default 2. Help and version requests still print and exit 0.
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 1 } else { 0 });
    });
    match cli.command {
        Command::Encode(args) => encode::run(args),
        Command::Pool(args) => pool::run(args),
        Command::Normalize(args) => normalize::run(args),
        Command::LayerPool(args) => layer_pool::run(args),
        Command::Bench { command } => bench::run(command),
    }
}
