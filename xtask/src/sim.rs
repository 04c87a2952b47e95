//! `cargo xtask kernel-sim [--cases N]`: run the CUDA kernels on the CPU.
//!
//! `kernels/*.cu` are compiled as C++ by the host compiler with `-DSTK_KERNEL_SIM` (see
//! `kernels/sim/cuda_sim.h`: one OS thread per CUDA thread, barriers for `__syncthreads` and
//! warp shuffles) and AddressSanitizer, then stk-cuda's `kernel_sim` example feeds it the same
//! launches the real launchers build and checks the results against stk-cpu: every golden
//! module case and N random problems per kernel family. No GPU and no CUDA toolkit needed.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn run(root: &Path, cases: u32) -> Result<()> {
    let exe = build(root)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "run",
            "--quiet",
            "-p",
            "stk-cuda",
            "--example",
            "kernel_sim",
            "--",
        ])
        .arg(&exe)
        .arg(cases.to_string())
        .current_dir(root)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("the simulated kernels disagree with the CPU (see above)");
    }
    Ok(())
}

/// The sources the simulator is built from, sorted.
fn sources(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dir in [root.join("kernels"), root.join("kernels").join("sim")] {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let p = entry?.path();
            if p.extension()
                .is_some_and(|e| e == "cu" || e == "cuh" || e == "h" || e == "cpp")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// FNV-1a over the sources' names and contents: rebuild only when they change.
fn fingerprint(files: &[PathBuf]) -> Result<String> {
    let mut h: u64 = 0xcbf29ce484222325;
    for f in files {
        let bytes = std::fs::read(f)?;
        for b in f.to_string_lossy().bytes().chain(bytes) {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    Ok(format!("{h:016x}"))
}

fn build(root: &Path) -> Result<PathBuf> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let dir = target.join("kernel-sim");
    std::fs::create_dir_all(&dir)?;
    let exe = dir.join("stk-kernel-sim");
    let stamp = dir.join("stk-kernel-sim.fingerprint");
    let files = sources(root)?;
    let print = fingerprint(&files)?;
    if exe.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(print.as_str()) {
        return Ok(exe);
    }
    let cxx = std::env::var_os("CXX").unwrap_or_else(|| "g++".into());
    let cu: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    eprintln!(
        "xtask: building the kernel simulator ({} kernel files)",
        cu.len()
    );
    let status = Command::new(&cxx)
        .args([
            "-std=c++20",
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
        ])
        .args([
            "-fno-sanitize-recover=undefined",
            "-pthread",
            "-DSTK_KERNEL_SIM",
        ])
        .arg(format!("-I{}", root.join("kernels").display()))
        .args(["-x", "c++"])
        .args(&cu)
        .args(["-x", "none"])
        .arg(root.join("kernels").join("sim").join("sim_main.cpp"))
        .arg("-o")
        .arg(&exe)
        .status()
        .with_context(|| {
            format!(
                "starting {} (a C++20 compiler is needed; set CXX)",
                cxx.to_string_lossy()
            )
        })?;
    if !status.success() {
        bail!("building the kernel simulator failed");
    }
    std::fs::write(&stamp, print)?;
    Ok(exe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulator_sources_and_fingerprint() {
        let root = crate::repo_root();
        let files = sources(&root).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for needed in [
            "pool.cu",
            "embedding_bag.cu",
            "common.cuh",
            "cuda_sim.h",
            "sim_main.cpp",
        ] {
            assert!(
                names.iter().any(|n| n == needed),
                "{needed} missing from {names:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.cu");
        std::fs::write(&f, "x").unwrap();
        let one = fingerprint(std::slice::from_ref(&f)).unwrap();
        std::fs::write(&f, "y").unwrap();
        assert_ne!(one, fingerprint(&[f]).unwrap());
    }
}
