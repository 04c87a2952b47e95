//! Repository tasks, run as `cargo xtask <task>` (alias in `.cargo/config.toml`):
//!
//! * `ptx`: compile each `kernels/*.cu` to `compute_80` PTX (ISA 8.2) under `kernels/ptx/` with
//!   the pinned CUDA 12.2 wheels (NVRTC; installed on first use into the git-ignored venv
//!   `.cuda/`), and generate the kernel table `kernels/ptx/kernels.rs` from it.
//! * `ptx --check`: rebuild into a temporary folder, fail when the committed PTX or table is
//!   stale or the PTX ISA is newer than 8.2, and run `ptxas -arch=sm_90 -v` on every kernel,
//!   printing its registers and failing on spills.
//! * `kernel-sim [--cases N]`: run the kernels on the CPU (compiled as C++ against a small
//!   CUDA stand-in, with AddressSanitizer) through the GPU parity checks.
//! * `test [--rust | --python]`: `cargo test --workspace`, then the Python package's pytest
//!   suite in the venv `target/venv` (see `test.rs`); README's and CI's test command.
//! * `capi-header [--check]`: generate `include/stk.h` (the C header of libstk) from
//!   crates/stk-capi with cbindgen; `--check` fails when the committed header is stale.
//! * `gpu-bundle`: build the GPU tests and the `stk` binary (release) and gather them with
//!   `run.sh` into `gpu-bundle/`, to run on a GPU machine that has no Rust toolchain.
#![deny(unsafe_code)]

mod bundle;
mod capi;
mod cuda;
mod ptx;
mod sim;
mod test;
mod venv;

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: cargo xtask ptx [--check] | cargo xtask kernel-sim [--cases N] | cargo xtask gpu-bundle [--out DIR] | cargo xtask capi-header [--check] | cargo xtask test [--rust | --python]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let root = repo_root();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["ptx"] => ptx::build(&root),
        ["ptx", "--check"] => ptx::check(&root).map(|_| ()),
        ["kernel-sim"] => sim::run(&root, 24),
        ["kernel-sim", "--cases", n] => sim::run(
            &root,
            n.parse()
                .map_err(|_| anyhow::anyhow!("--cases takes a number"))?,
        ),
        ["gpu-bundle"] => bundle::gpu_bundle(&root, &root.join("gpu-bundle")),
        ["gpu-bundle", "--out", dir] => bundle::gpu_bundle(&root, &PathBuf::from(dir)),
        ["capi-header"] => capi::write(&root),
        ["capi-header", "--check"] => capi::check(&root),
        ["test", rest @ ..] => test::run(&root, rest),
        ["help"] | ["--help"] | ["-h"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// The workspace root: the parent of this crate's folder.
fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
