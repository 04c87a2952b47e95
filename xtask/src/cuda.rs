//! The pinned CUDA 12.2 compiler (NVRTC, ptxas, headers) from PyPI wheels, in the venv `.cuda/`.
//!
//! Pins come from `kernels/requirements-cuda122.txt`. CUDA 12.2 is chosen for the PTX ISA it
//! emits (`.version 8.2`), which drivers of CUDA 12.2 (R535) and newer JIT-compile; PTX from a
//! newer toolkit would shut those serving fleets out. The 12.2 wheels carry NVRTC and ptxas but
//! no `nvcc` driver, so the sources are compiled through NVRTC (`xtask/nvrtc_compile.py`).
//! The venv is reused while the requirements file is unchanged.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The ptxas release that checks registers and spills (`ptxas --version`).
pub const PTXAS_RELEASE: &str = "V12.2.140";

pub struct Toolchain {
    /// The venv's python, which runs `xtask/nvrtc_compile.py`.
    pub python: PathBuf,
    pub compile_script: PathBuf,
    pub libnvrtc: PathBuf,
    /// `cuda_fp16.h`, `cuda_bf16.h`.
    pub include: PathBuf,
    pub ptxas: PathBuf,
}

impl Toolchain {
    /// The command compiling `src` to PTX `out` for `arch` (`compute_80`).
    pub fn compile(&self, src: &Path, out: &Path, arch: &str) -> Command {
        let mut c = Command::new(&self.python);
        c.arg(&self.compile_script)
            .arg(&self.libnvrtc)
            .arg(src)
            .arg(out)
            .arg(format!("--gpu-architecture={arch}"))
            .arg(format!("-I{}", self.include.display()))
            .arg(format!(
                "-I{}",
                src.parent().unwrap_or(Path::new(".")).display()
            ));
        c
    }
}

/// Install the pinned wheels if needed and locate NVRTC, the headers and ptxas.
pub fn ensure(root: &Path) -> Result<Toolchain> {
    let venv = root.join(".cuda");
    let requirements = root.join("kernels").join("requirements-cuda122.txt");
    let python = crate::venv::ensure(&venv, &requirements)?;
    let out = Command::new(&python)
        .args(["-c", "import nvidia; print(list(nvidia.__path__)[0])"])
        .output()
        .context("asking the venv where the CUDA wheels are")?;
    if !out.status.success() {
        bail!(
            "the venv has no `nvidia` package: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let nvidia = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let tc = Toolchain {
        python,
        compile_script: root.join("xtask").join("nvrtc_compile.py"),
        libnvrtc: nvidia.join("cuda_nvrtc").join("lib").join("libnvrtc.so.12"),
        include: nvidia.join("cuda_runtime").join("include"),
        ptxas: nvidia.join("cuda_nvcc").join("bin").join("ptxas"),
    };
    for (what, path) in [("NVRTC", &tc.libnvrtc), ("the CUDA headers", &tc.include)] {
        if !path.exists() {
            bail!(
                "{what} not found at {} (is the venv complete?)",
                path.display()
            );
        }
    }
    let version = Command::new(&tc.ptxas)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", tc.ptxas.display()))?;
    let version = String::from_utf8_lossy(&version.stdout);
    if !version.contains(PTXAS_RELEASE) {
        bail!(
            "{} is not ptxas {PTXAS_RELEASE}:\n{version}",
            tc.ptxas.display()
        );
    }
    Ok(tc)
}
