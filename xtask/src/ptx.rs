//! `cargo xtask ptx [--check]`: build the committed PTX and the kernel table generated from it
//! (`kernels/ptx/kernels.rs`: every entry's name, parameter kinds and launch bound, which
//! stk-cuda embeds instead of hand-kept lists), or check that both are fresh, that the PTX ISA
//! is one R535 (CUDA 12.2) drivers load, and that no kernel spills registers on sm_90.

use crate::cuda::{self, Toolchain};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The virtual architecture the PTX targets: the driver JIT-compiles it for A100 (sm_80) and
/// H100/H200 (sm_90) alike.
pub const PTX_ARCH: &str = "compute_80";
/// The architecture ptxas checks registers and spills for: the machine the project measures.
pub const CHECK_ARCH: &str = "sm_90";
/// The newest PTX ISA the committed PTX may declare: 8.2 is what CUDA 12.2 (driver R535)
/// JIT-compiles, the oldest driver branch serving fleets commonly run.
pub const MAX_PTX_ISA: (u32, u32) = (8, 2);
/// The generated kernel table, beside the PTX it describes.
pub const TABLE_FILE: &str = "kernels.rs";

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

/// Compile every source to `<out_dir>/<name>.ptx` (one NVRTC process each, in parallel), then
/// write the kernel table `<out_dir>/kernels.rs` generated from those files.
fn compile_all(tc: &Toolchain, sources: &[(String, PathBuf)], out_dir: &Path) -> Result<()> {
    let commands = sources
        .iter()
        .map(|(name, src)| tc.compile(src, &out_dir.join(format!("{name}.ptx")), PTX_ARCH))
        .collect();
    for ((name, _), output) in sources.iter().zip(run_all(commands)?) {
        if !output.status.success() {
            bail!(
                "NVRTC failed on kernels/{name}.cu:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let mut files = Vec::new();
    for (name, _) in sources {
        let text = std::fs::read_to_string(out_dir.join(format!("{name}.ptx")))?;
        files.push((name.clone(), text));
    }
    std::fs::write(out_dir.join(TABLE_FILE), kernel_table(&files)?)?;
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
    let generated = srcs
        .iter()
        .map(|(name, _)| format!("{name}.ptx"))
        .chain([TABLE_FILE.to_string()]);
    for file in generated {
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
    let generated = srcs
        .iter()
        .map(|(name, _)| format!("{name}.ptx"))
        .chain([TABLE_FILE.to_string()]);
    for file in generated {
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
    for (name, _) in &srcs {
        let text = std::fs::read_to_string(ptx_dir.join(format!("{name}.ptx")))?;
        let isa = ptx_isa(&text).with_context(|| format!("kernels/ptx/{name}.ptx"))?;
        if isa > MAX_PTX_ISA {
            bail!(
                "kernels/ptx/{name}.ptx declares PTX ISA {}.{}, newer than {}.{} (CUDA 12.2, driver R535)",
                isa.0,
                isa.1,
                MAX_PTX_ISA.0,
                MAX_PTX_ISA.1
            );
        }
    }
    let fresh: Vec<PathBuf> = srcs
        .iter()
        .map(|(n, _)| tmp.path().join(format!("{n}.ptx")))
        .collect();
    let usage = ptxas_usage(&tc, &fresh)?;
    report(&usage)?;
    println!(
        "kernels/ptx/ is fresh ({} files and their kernel table, {} kernels, PTX ISA <= {}.{}, no spills on {CHECK_ARCH})",
        srcs.len(),
        usage.len(),
        MAX_PTX_ISA.0,
        MAX_PTX_ISA.1
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

/// The `.version` a PTX text declares.
pub fn ptx_isa(ptx: &str) -> Result<(u32, u32)> {
    let line = ptx
        .lines()
        .find_map(|l| l.trim().strip_prefix(".version "))
        .context("no `.version` line")?;
    let (major, minor) = line
        .trim()
        .split_once('.')
        .with_context(|| format!("unreadable `.version {line}`"))?;
    Ok((major.parse()?, minor.parse()?))
}

/// One kernel entry as the PTX declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// `U64` (pointers and 64-bit integers), `U32` (32-bit integers), `F32`.
    pub params: Vec<&'static str>,
    /// `.maxntid` (from `__launch_bounds__`), if declared.
    pub max_threads: Option<u32>,
}

/// Every `.visible .entry` of a PTX text, in order.
pub fn ptx_entries(ptx: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (at, _) in ptx.match_indices(".visible .entry ") {
        let rest = &ptx[at + ".visible .entry ".len()..];
        let open = rest.find('(').context("entry without a parameter list")?;
        let name = rest[..open].trim().to_string();
        let close = rest.find(')').context("unterminated parameter list")?;
        let params = rest[open + 1..close]
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| param_kind(p).with_context(|| format!("kernel {name}")))
            .collect::<Result<Vec<_>>>()?;
        let body = &rest[close..rest.find('{').context("entry without a body")?];
        let max_threads = body
            .split(".maxntid")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.trim().parse().ok());
        out.push(Entry {
            name,
            params,
            max_threads,
        });
    }
    Ok(out)
}

fn param_kind(p: &str) -> Result<&'static str> {
    let ty = p
        .strip_prefix(".param")
        .map(str::trim_start)
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("unreadable parameter `{p}`"))?;
    Ok(match ty {
        ".u64" | ".s64" | ".b64" => "U64",
        ".u32" | ".s32" | ".b32" => "U32",
        ".f32" => "F32",
        other => bail!("parameter type {other} has no launcher counterpart"),
    })
}

/// The Rust source of the kernel table for `files` (`(family, PTX text)`, sorted by family).
pub fn kernel_table(files: &[(String, String)]) -> Result<String> {
    let mut isa = (0, 0);
    let mut rows = String::new();
    for (family, text) in files {
        isa = isa.max(ptx_isa(text).with_context(|| format!("{family}.ptx"))?);
        for e in ptx_entries(text).with_context(|| format!("{family}.ptx"))? {
            let params: Vec<String> = e.params.iter().map(|p| format!("P::{p}")).collect();
            rows.push_str(&format!(
                "    Kernel {{\n        family: \"{family}\",\n        name: \"{}\",\n        params: &[{}],\n        max_threads: {:?},\n    }},\n",
                e.name,
                params.join(", "),
                e.max_threads
            ));
        }
    }
    Ok(format!(
        "// @generated by `cargo xtask ptx` from kernels/ptx/*.ptx; `cargo xtask ptx --check` keeps it fresh.\n\
         // Included by crates/stk-cuda/src/ptx.rs.\n\n\
         /// The highest PTX ISA (`.version`) among the embedded files.\n\
         pub const PTX_ISA: (u32, u32) = ({}, {});\n\n\
         /// Every kernel entry of the embedded PTX.\n\
         pub const KERNELS: &[Kernel] = &[\n{rows}];\n",
        isa.0, isa.1
    ))
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
    fn kernel_table_from_ptx() {
        let ptx = ".version 8.2\n.target sm_80\n\
            .visible .entry k_a(\n\t.param .u64 k_a_param_0,\n\t.param .u32 k_a_param_1,\n\t.param .f32 k_a_param_2\n)\n.maxntid 256, 1, 1\n{\n}\n\
            .visible .entry k_b(\n)\n{\n}\n";
        let entries = ptx_entries(ptx).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].params, ["U64", "U32", "F32"]);
        assert_eq!(entries[0].max_threads, Some(256));
        assert_eq!(
            (entries[1].name.as_str(), entries[1].max_threads),
            ("k_b", None)
        );
        let table = kernel_table(&[("fam".into(), ptx.into())]).unwrap();
        assert!(table.contains("PTX_ISA: (u32, u32) = (8, 2)"));
        assert!(table.contains("params: &[P::U64, P::U32, P::F32]"));
        assert_eq!(ptx_isa(".version 9.0\n").unwrap(), (9, 0));
        assert!(ptx_isa(".target sm_80\n").is_err());
        assert!(ptx_entries(".visible .entry k(\n.param .f64 x\n)\n{\n}").is_err());
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
