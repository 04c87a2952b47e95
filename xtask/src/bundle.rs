//! `cargo xtask gpu-bundle`: everything the GPU run needs, built here, in one folder.
//!
//! The GPU machine has the driver, Python with PyTorch and sentence-transformers, and no Rust
//! toolchain. The bundle holds release builds of stk-cuda's test binaries and of `stk`
//! (debug info stripped), `run.sh` (from `scripts/gpu/run.sh`) and a manifest. It lives in
//! the checkout (`gpu-bundle/`, git-ignored); the golden cases and the Python comparison
//! scripts are read from the checkout around it.

use crate::ptx;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the device machine accepts for the working tree plus carried folders together.
const LIMIT_BYTES: u64 = 64 << 20;

/// The test binaries `run.sh` runs (crate test targets of stk-cuda and stk-cli).
const GPU_TESTS: [&str; 3] = ["no_driver", "parity", "cuda_facade"];

pub fn gpu_bundle(root: &Path, out: &Path) -> Result<()> {
    // The PTX is embedded in the binaries: it must be the fresh, spill-free build.
    ptx::check(root)?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The tests that need the GPU: the kernels against the CPU, the no-driver/no-device
    // errors, and `--device cuda` through the facade and the `stk` binary.
    let mut args = vec!["test", "--release", "-p", "stk-cuda", "-p", "stk-cli"];
    for t in GPU_TESTS {
        args.extend(["--test", t]);
    }
    args.extend(["--no-run", "--message-format=json"]);
    let mut tests = cargo_executables(root, Command::new(&cargo).args(&args))?;
    tests.retain(|(kind, _, _)| kind == "test");
    if tests.len() != GPU_TESTS.len() {
        bail!(
            "cargo built {} test binaries, expected {}",
            tests.len(),
            GPU_TESTS.len()
        );
    }
    let stk = cargo_executables(
        root,
        Command::new(&cargo).args([
            "build",
            "--release",
            "-p",
            "stk-cli",
            "--bin",
            "stk",
            "--message-format=json",
        ]),
    )?;
    let Some((_, _, stk)) = stk
        .into_iter()
        .find(|(kind, name, _)| kind == "bin" && name == "stk")
    else {
        bail!("cargo built no `stk` binary");
    };

    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let bin = out.join("bin");
    std::fs::create_dir_all(&bin)?;
    let mut manifest = vec![
        format!("stk GPU bundle, commit {}", git_head(root)),
        format!("built in {}", root.display()),
    ];
    let all = tests
        .iter()
        .map(|(_, n, e)| (n.as_str(), e))
        .chain([("stk", &stk)]);
    for (name, exe) in all {
        let packed = pack_binary(exe, &bin.join(name))?;
        manifest.push(format!(
            "bin/{name}.xz  {} bytes ({} unpacked, unstripped)",
            std::fs::metadata(&packed)?.len(),
            std::fs::metadata(exe)?.len()
        ));
    }
    let run_sh = out.join("run.sh");
    std::fs::copy(root.join("scripts").join("gpu").join("run.sh"), &run_sh)?;
    set_executable(&run_sh)?;
    std::fs::write(out.join("MANIFEST.txt"), manifest.join("\n") + "\n")?;

    let bundle = dir_size(out)?;
    let tree = tracked_size(root)?;
    println!("{}", manifest.join("\n"));
    println!(
        "gpu-bundle: {:.1} MiB; with the tracked tree ({:.1} MiB) {:.1} MiB of the {} MiB the GPU machine takes",
        mib(bundle),
        mib(tree),
        mib(bundle + tree),
        LIMIT_BYTES >> 20
    );
    if bundle + tree > LIMIT_BYTES {
        bail!("the bundle and the tree exceed {} MiB", LIMIT_BYTES >> 20);
    }
    println!(
        "On the GPU machine, from the checkout root (bundle carried along): bash {}/run.sh",
        out.strip_prefix(root).unwrap_or(out).display()
    );
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// Run a cargo build with `--message-format=json` and collect `(kind, target name, path)` of
/// each executable it produced.
fn cargo_executables(root: &Path, cmd: &mut Command) -> Result<Vec<(String, String, PathBuf)>> {
    let output = cmd
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !output.status.success() {
        bail!("cargo failed ({})", output.status);
    }
    Ok(executables_from_json(&String::from_utf8_lossy(
        &output.stdout,
    )))
}

/// `(kind, name, executable)` of each `compiler-artifact` message that has an executable.
fn executables_from_json(messages: &str) -> Vec<(String, String, PathBuf)> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let exe = m["executable"].as_str()?;
            let kind = m["target"]["kind"][0].as_str()?.to_string();
            let name = m["target"]["name"].as_str()?.to_string();
            Some((kind, name, PathBuf::from(exe)))
        })
        .collect()
}

/// Write `src` to `dest` + `.xz`: symbols and debug info stripped (release builds keep line
/// tables), then xz-compressed, which brings the binaries to a fifth of their size; `run.sh`
/// unpacks them on the GPU machine. Returns the written path.
fn pack_binary(src: &Path, dest: &Path) -> Result<PathBuf> {
    let stripped = dest.with_extension("stripped");
    let status = Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(&stripped)
        .arg(src)
        .status()
        .context("running strip (binutils)")?;
    if !status.success() {
        bail!("strip failed on {}", src.display());
    }
    let packed = PathBuf::from(format!("{}.xz", dest.display()));
    let file = std::fs::File::create(&packed)?;
    let status = Command::new("xz")
        .args(["-9", "-c"])
        .arg(&stripped)
        .stdout(file)
        .status()
        .context("running xz")?;
    std::fs::remove_file(&stripped)?;
    if !status.success() {
        bail!("xz failed on {}", src.display());
    }
    Ok(packed)
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms)?;
    Ok(())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Bytes of the files git tracks or would add (what travels to the GPU machine besides the bundle).
fn tracked_size(root: &Path) -> Result<u64> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    Ok(out
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .filter_map(|p| std::fs::metadata(root.join(String::from_utf8_lossy(p).as_ref())).ok())
        .map(|m| m.len())
        .sum())
}

fn git_head(root: &Path) -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_executables_from_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"stk_cuda"},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"parity"},"executable":"/t/release/deps/parity-abc"}
not json
{"reason":"build-finished","success":true}
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"stk"},"executable":"/t/release/stk"}"#;
        assert_eq!(
            executables_from_json(messages),
            vec![
                (
                    "test".into(),
                    "parity".into(),
                    PathBuf::from("/t/release/deps/parity-abc")
                ),
                ("bin".into(), "stk".into(), PathBuf::from("/t/release/stk")),
            ]
        );
    }
}
