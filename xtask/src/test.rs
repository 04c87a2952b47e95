//! `cargo xtask test`: every test of the repository in one command (what README.md and CI run).
//!
//! 1. `cargo test --workspace` (the Rust crates, golden cases, CLI).
//! 2. The Python package: `target/venv` from `crates/stk-python/requirements-test.txt` (created
//!    once, reused while the pins are unchanged), `pip install ./crates/stk-python` into it (built
//!    by maturin), then its pytest suite (`crates/stk-python/tests/`).
//!
//! `--rust` or `--python` runs only that half.

use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;

use crate::venv;

pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let (rust, python) = match args {
        [] => (true, true),
        ["--rust"] => (true, false),
        ["--python"] => (false, true),
        _ => bail!("usage: cargo xtask test [--rust | --python]"),
    };
    if rust {
        eprintln!("xtask: cargo test --workspace");
        venv::run(
            Command::new(env_cargo())
                .current_dir(root)
                .args(["test", "--workspace"]),
            "cargo test --workspace",
        )?;
    }
    if python {
        python_suite(root)?;
    }
    Ok(())
}

fn python_suite(root: &Path) -> Result<()> {
    let package = root.join("crates").join("stk-python");
    let python = venv::ensure(
        &root.join("target").join("venv"),
        &package.join("requirements-test.txt"),
    )?;
    eprintln!("xtask: pip install ./crates/stk-python (maturin, release build)");
    venv::run(
        Command::new(&python)
            .current_dir(root)
            // maturin's build backend runs the `maturin` executable of the venv.
            .env("PATH", venv::path_with_bin(&python)?)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                // maturin is pinned in the venv; no network round trip for an isolated build env.
                "--no-build-isolation",
                "--no-deps",
                "--force-reinstall",
                "./crates/stk-python",
            ]),
        "pip install ./crates/stk-python",
    )?;
    eprintln!("xtask: pytest crates/stk-python/tests");
    venv::run(
        Command::new(&python).current_dir(root).args([
            "-m",
            "pytest",
            "-q",
            "crates/stk-python/tests",
        ]),
        "pytest crates/stk-python/tests",
    )
}

/// The cargo that runs this xtask (so toolchain overrides carry over).
fn env_cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
