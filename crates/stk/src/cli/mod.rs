//! Subcommand definitions. One file per subcommand family; each exposes `Args` and `run`.

use clap::{Parser, Subcommand};
use stk::Result;

#[derive(Parser)]
#[command(name = "stk", version, about = "Sentence-embedding kernels: pooling, normalize, static embeddings, encode")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
