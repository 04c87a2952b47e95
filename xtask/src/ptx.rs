//! `cargo xtask ptx [--check]`: build the committed PTX, or check that it is fresh and that no
//! kernel spills registers on the measured architecture (sm_90).

use crate::cuda::{self, Toolchain};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The virtual architecture the PTX targets: the driver JIT-compiles it for A100 (sm_80) and
/// H100/H200 (sm_90) alike.
pub const PTX_ARCH: &str = "compute_80";
/// The architecture ptxas checks registers and spills for: the machine the project measures.
pub const CHECK_ARCH: &str = "sm_90";

/// Each `kernels/<name>.cu`, sorted by name.
pub fn sources(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let dir = root.join("kernels");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cu") {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out.push((name, path));
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no kernels/*.cu found in {}", dir.display());
    }
    Ok(out)
}

/// Start every command, then wait for all of them: the compiles run in parallel.
fn run_all(mut commands: Vec<Command>) -> Result<Vec<Output>> {
    let children = commands
        .iter_mut()
        .map(|c| {
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {:?}", c.get_program()))
        })
        .collect::<Result<Vec<_>>>()?;
    children
        .into_iter()
        .map(|c| c.wait_with_output().context("waiting for a compiler"))
        .collect()
}

/// Compile every source to `<out_dir>/<name>.ptx` (one nvcc process each, in parallel).
fn compile_all(tc: &Toolchain, sources: &[(String, PathBuf)], out_dir: &Path) -> Result<()> {
    let commands = sources
        .iter()
        .map(|(name, src)| {
            let mut c = Command::new(&tc.nvcc);
            c.args(["-ptx", &format!("--gpu-architecture={PTX_ARCH}"), "-o"])
                .arg(out_dir.join(format!("{name}.ptx")))
                .arg(src);
            c
        })
        .collect();
    for ((name, _), output) in sources.iter().zip(run_all(commands)?) {
        if !output.status.success() {
            bail!(
                "nvcc failed on kernels/{name}.cu:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(())
}

/// `cargo xtask ptx`: rebuild `kernels/ptx/*.ptx` (through a temporary folder, so a failed
/// compile leaves the committed files alone), remove PTX whose source is gone, then check.
pub fn build(root: &Path) -> Result<()> {
    let tc = cuda::ensure(root)?;
    let srcs = sources(root)?;
    let tmp = tempfile::tempdir()?;
    compile_all(&tc, &srcs, tmp.path())?;
    let ptx_dir = root.join("kernels").join("ptx");
    std::fs::create_dir_all(&ptx_dir)?;
    for (name, _) in &srcs {
        let file = format!("{name}.ptx");
        std::fs::copy(tmp.path().join(&file), ptx_dir.join(&file))?;
        println!("kernels/ptx/{file}");
    }
    for orphan in orphans(&ptx_dir, &srcs)? {
        std::fs::remove_file(ptx_dir.join(&orphan))?;
        println!("removed kernels/ptx/{orphan} (no kernels/*.cu for it)");
    }
    let usage = ptxas_usage(
        &tc,
        &srcs
            .iter()
            .map(|(n, _)| ptx_dir.join(format!("{n}.ptx")))
            .collect::<Vec<_>>(),
    )?;
    report(&usage)
}

/// `cargo xtask ptx --check`: fail when the committed PTX differs from a fresh build, or
/// when any kernel spills. Returns the per-kernel usage.
pub fn check(root: &Path) -> Result<Vec<KernelUsage>> {
    let tc = cuda::ensure(root)?;
    let srcs = sources(root)?;
    let tmp = tempfile::tempdir()?;
    compile_all(&tc, &srcs, tmp.path())?;
    let ptx_dir = root.join("kernels").join("ptx");
    let mut problems = Vec::new();
    for (name, _) in &srcs {
        let file = format!("{name}.ptx");
        let fresh = std::fs::read(tmp.path().join(&file))?;
        match std::fs::read(ptx_dir.join(&file)) {
            Ok(committed) if committed == fresh => {}
            Ok(_) => problems.push(format!("kernels/ptx/{file} is stale")),
            Err(_) => problems.push(format!("kernels/ptx/{file} is missing")),
        }
    }
    for orphan in orphans(&ptx_dir, &srcs)? {
        problems.push(format!("kernels/ptx/{orphan} has no kernels/*.cu source"));
    }
    if !problems.is_empty() {
        bail!(
            "{}\nrun `cargo xtask ptx` and commit kernels/ptx/",
            problems.join("\n")
        );
    }
    let fresh: Vec<PathBuf> = srcs
        .iter()
        .map(|(n, _)| tmp.path().join(format!("{n}.ptx")))
        .collect();
    let usage = ptxas_usage(&tc, &fresh)?;
    report(&usage)?;
    println!(
        "kernels/ptx/ is fresh ({} files, {} kernels, no spills on {CHECK_ARCH})",
        srcs.len(),
        usage.len()
    );
    Ok(usage)
}

/// `.ptx` files in `dir` with no source among `srcs`.
fn orphans(dir: &Path, srcs: &[(String, PathBuf)]) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if path.extension().is_some_and(|e| e == "ptx") && !srcs.iter().any(|(n, _)| *n == stem) {
            out.push(format!("{stem}.ptx"));
        }
    }
    out.sort();
    Ok(out)
}

/// Registers, stack and spills of one kernel on [`CHECK_ARCH`], as ptxas reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelUsage {
    pub kernel: String,
    pub registers: u32,
    pub stack_bytes: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

impl KernelUsage {
    pub fn spills(&self) -> bool {
        self.spill_stores > 0 || self.spill_loads > 0
    }
}

fn ptxas_usage(tc: &Toolchain, files: &[PathBuf]) -> Result<Vec<KernelUsage>> {
    let commands = files
        .iter()
        .map(|f| {
            let mut c = Command::new(&tc.ptxas);
            c.args([&format!("-arch={CHECK_ARCH}"), "-v", "-o", "/dev/null"])
                .arg(f);
            c
        })
        .collect();
    let mut usage = Vec::new();
    for (file, out) in files.iter().zip(run_all(commands)?) {
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("ptxas rejected {}:\n{text}", file.display());
        }
        let parsed = parse_ptxas(&text)?;
        if parsed.is_empty() {
            bail!("ptxas reported no kernels for {}", file.display());
        }
        usage.extend(parsed);
    }
    Ok(usage)
}

/// Print the per-kernel table; fail if any kernel spills.
fn report(usage: &[KernelUsage]) -> Result<()> {
    println!(
        "{:<24} {:>5} {:>6} {:>12} {:>11}",
        "kernel (sm_90)", "regs", "stack", "spill stores", "spill loads"
    );
    for u in usage {
        println!(
            "{:<24} {:>5} {:>6} {:>12} {:>11}",
            u.kernel, u.registers, u.stack_bytes, u.spill_stores, u.spill_loads
        );
    }
    let spilling: Vec<&str> = usage
        .iter()
        .filter(|u| u.spills())
        .map(|u| u.kernel.as_str())
        .collect();
    if !spilling.is_empty() {
        bail!("register spills in: {}", spilling.join(", "));
    }
    Ok(())
}

/// Parse `ptxas -v` output into one record per kernel.
pub fn parse_ptxas(text: &str) -> Result<Vec<KernelUsage>> {
    let mut out: Vec<KernelUsage> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("ptxas info    : Compiling entry function '") {
            let name = rest.split('\'').next().unwrap_or_default();
            out.push(KernelUsage {
                kernel: name.to_string(),
                registers: 0,
                stack_bytes: 0,
                spill_stores: 0,
                spill_loads: 0,
            });
        } else if let Some(current) = out.last_mut() {
            if line.contains("bytes stack frame") {
                current.stack_bytes = number_before(line, "bytes stack frame")?;
                current.spill_stores = number_before(line, "bytes spill stores")?;
                current.spill_loads = number_before(line, "bytes spill loads")?;
            } else if line.contains("Used ") && line.contains(" registers") {
                current.registers = number_before(line, "registers")?;
            }
        }
    }
    Ok(out)
}

/// The integer just before `label` in `line` (`"..., 12 bytes spill stores, ..."`).
fn number_before(line: &str, label: &str) -> Result<u32> {
    let at = line
        .find(label)
        .with_context(|| format!("no `{label}` in ptxas line `{line}`"))?;
    let n = line[..at]
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())
        .with_context(|| format!("no number before `{label}` in `{line}`"))?;
    Ok(n.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'pool_full_f16_v8' for 'sm_90'
ptxas info    : Function properties for pool_full_f16_v8
    16 bytes stack frame, 16 bytes spill stores, 24 bytes spill loads
ptxas info    : Used 80 registers, used 1 barriers, 16 bytes cumulative stack size
ptxas info    : Compiling entry function 'normalize_f32_v1' for 'sm_90'
ptxas info    : Function properties for normalize_f32_v1
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers
";

    #[test]
    fn parses_ptxas_verbose_output() {
        let u = parse_ptxas(SAMPLE).unwrap();
        assert_eq!(
            u,
            vec![
                KernelUsage {
                    kernel: "pool_full_f16_v8".into(),
                    registers: 80,
                    stack_bytes: 16,
                    spill_stores: 16,
                    spill_loads: 24
                },
                KernelUsage {
                    kernel: "normalize_f32_v1".into(),
                    registers: 32,
                    stack_bytes: 0,
                    spill_stores: 0,
                    spill_loads: 0
                },
            ]
        );
        assert!(u[0].spills() && !u[1].spills());
        assert!(report(&u)
            .unwrap_err()
            .to_string()
            .contains("pool_full_f16_v8"));
        assert!(report(&u[1..]).is_ok());
    }

    #[test]
    fn finds_every_committed_kernel_source() {
        let root = crate::repo_root();
        let names: Vec<String> = sources(&root)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["embedding_bag", "layer_pool", "normalize", "pool"]);
        assert!(
            orphans(&root.join("kernels").join("ptx"), &sources(&root).unwrap())
                .unwrap()
                .is_empty()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gone.ptx"), "").unwrap();
        std::fs::write(dir.path().join("pool.ptx"), "").unwrap();
        assert_eq!(
            orphans(dir.path(), &sources(&root).unwrap()).unwrap(),
            ["gone.ptx"]
        );
    }

    #[test]
    fn numbers_in_ptxas_lines() {
        assert_eq!(
            number_before("Used 255 registers, used 1 barriers", "registers").unwrap(),
            255
        );
        assert!(number_before("Used registers", "registers").is_err());
    }
}
