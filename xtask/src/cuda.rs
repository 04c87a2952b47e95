//! The pinned CUDA 13.0 compiler (nvcc, ptxas) from PyPI wheels, in the venv `.cuda/`.
//!
//! Pins come from `kernels/requirements-cuda130.txt`: every package is pinned, because an
//! unpinned `nvidia-nvvm`/`nvidia-cuda-crt` beside nvcc 13.0 emits PTX its own ptxas (and a
//! 13.0 driver) rejects. The venv is reused while the requirements file is unchanged.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The nvcc release the PTX is built with (what the measured H200 machine runs).
pub const NVCC_RELEASE: &str = "V13.0.88";

pub struct Toolchain {
    pub nvcc: PathBuf,
    pub ptxas: PathBuf,
}

/// Install the pinned wheels if needed and locate nvcc and ptxas.
pub fn ensure(root: &Path) -> Result<Toolchain> {
    let venv = root.join(".cuda");
    let requirements = root.join("kernels").join("requirements-cuda130.txt");
    let python = crate::venv::ensure(&venv, &requirements)?;
    let out = Command::new(&python)
        .args([
            "-c",
            "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13'))",
        ])
        .output()
        .context("asking the venv where the CUDA wheels are")?;
    if !out.status.success() {
        bail!(
            "the venv has no `nvidia` package: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cu = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let tc = Toolchain {
        nvcc: cu.join("bin").join("nvcc"),
        ptxas: cu.join("bin").join("ptxas"),
    };
    let version = Command::new(&tc.nvcc)
        .arg("--version")
        .output()
        .context("running nvcc --version")?;
    let version = String::from_utf8_lossy(&version.stdout);
    if !version.contains(NVCC_RELEASE) {
        bail!(
            "{} is not nvcc {NVCC_RELEASE}:\n{version}",
            tc.nvcc.display()
        );
    }
    Ok(tc)
}
