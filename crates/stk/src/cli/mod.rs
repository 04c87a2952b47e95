//! Subcommand definitions. One file per subcommand family; each exposes `Args` and `run`.

mod encode;

use clap::{Parser, Subcommand};
use stk::Result;

#[derive(Parser)]
#[command(name = "stk", version, about = "Sentence-embedding kernels: pooling, normalize, static embeddings, encode")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode texts (a .txt, .json or stdin) into embeddings (.safetensors, .npy or .jsonl).
    Encode(encode::Args),
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Encode(args) => encode::run(args),
    }
}
