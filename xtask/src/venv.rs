//! Python virtual environments installed from a pinned requirements file, reused while the
//! file is unchanged (a copy of it is kept in the venv as a marker).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Create `venv` if needed and install `requirements` into it unless the venv already holds
/// exactly that file's pins. Returns the venv's python.
pub fn ensure(venv: &Path, requirements: &Path) -> Result<PathBuf> {
    let wanted = std::fs::read_to_string(requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let marker = venv.join(".stk-requirements");
    let python = venv.join("bin").join("python");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) && python.is_file()
    {
        return Ok(python);
    }
    eprintln!(
        "xtask: installing {} into {}",
        requirements.display(),
        venv.display()
    );
    if !python.is_file() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(venv),
            &format!("python3 -m venv {}", venv.display()),
        )?;
    }
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                // Every requirements file pins its whole closure, so pip resolves nothing.
                "--no-deps",
                // The wheels (GBs for torch) would otherwise stay in ~/.cache/pip beside the
                // installed copy; CI machines have little disk to spare.
                "--no-cache-dir",
                "-r",
            ])
            .arg(requirements),
        &format!("pip install -r {}", requirements.display()),
    )?;
    std::fs::write(&marker, &wanted).context("writing the venv marker")?;
    Ok(python)
}

/// Run `cmd` with inherited output; fail naming `what` when it fails.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `PATH` with the folder of the venv's `python` (its `bin/`) first.
pub fn path_with_bin(python: &Path) -> Result<std::ffi::OsString> {
    let bin = python.parent().context("the venv python has no folder")?;
    let mut paths = vec![bin.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).context("joining PATH")
}
