//! Shared helpers for the workspace-level tests: finding golden cases and comparing outputs
//! with the tolerances of `tests/golden/README.md`.
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};

/// Repository root: the nearest ancestor of this crate that holds `tests/golden`. (Test files
/// of other crates include this file with `#[path = "../../../tests/lib.rs"]`, so the
/// manifest directory is not always `tests/`.)
///
/// `STK_REPO_ROOT`, when set, wins: test binaries copied to another machine (the GPU bundle)
/// run away from the checkout they were built in.
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("STK_REPO_ROOT") {
        return PathBuf::from(root);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("tests").join("golden").is_dir())
        .unwrap_or(here)
        .to_path_buf()
}

/// `tests/golden`; panics (fails the test) if it is missing: golden tests never skip.
pub fn golden_dir() -> PathBuf {
    let d = repo_root().join("tests").join("golden");
    assert!(d.is_dir(), "golden data missing at {}", d.display());
    d
}

/// One golden case folder with its parsed `case.json`.
pub struct GoldenCase {
    pub name: String,
    pub dir: PathBuf,
    pub case: serde_json::Value,
}

impl GoldenCase {
    pub fn kind(&self) -> &str {
        self.case["kind"].as_str().unwrap_or("")
    }
}

/// All cases whose `kind` is one of `kinds`, sorted by name. Fails if none is found.
pub fn golden_cases(kinds: &[&str]) -> Vec<GoldenCase> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let dir = entry.unwrap().path();
        let case_file = dir.join("case.json");
        if !case_file.is_file() {
            continue;
        }
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&case_file).unwrap()).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let c = GoldenCase { name, dir, case };
        if kinds.contains(&c.kind()) {
            out.push(c);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!out.is_empty(), "no golden cases of kind {kinds:?}");
    out
}

/// Where a `static` case's model lives: the repository's `models/` first, then the shared
/// folder beside the checkout. `None` when neither has it (the one allowed skip).
pub fn resolve_model(rel: &str) -> Option<PathBuf> {
    let root = repo_root();
    [root.join(rel), root.join("..").join("shared").join(rel)]
        .into_iter()
        .find(|p| p.is_dir())
}

/// The `static` cases that must run: those whose model the repository itself carries
/// (`models/NAME`). The others may be skipped when `../shared` is absent (golden/README.md).
pub fn static_cases_required(cases: &[GoldenCase]) -> usize {
    cases
        .iter()
        .filter(|c| {
            c.case["model"]
                .as_str()
                .is_some_and(|rel| repo_root().join(rel).is_dir())
        })
        .count()
}

/// Say that a `static` case is skipped for its missing model, on stderr directly so the line
/// shows in CI logs (the test harness captures `println!`).
pub fn report_missing_model(case: &str, rel: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {case}: model {rel} is in neither models/ nor ../shared/models"
    );
}

/// Default tolerance for a dtype name (`f32`, `float16`, ...), from golden/README.md.
pub fn tolerance_for(dtype: &str, text_pipeline: bool) -> f32 {
    match dtype {
        "f16" | "float16" => 2e-3,
        "bf16" | "bfloat16" => 1.6e-2,
        _ if text_pipeline => 1e-4,
        _ => 1e-5,
    }
}

/// `|got − expected| ≤ tol · max(1, |expected|)` elementwise; infinities must match exactly,
/// NaN only matches NaN. Returns a description of the first mismatch.
pub fn compare(got: &[f32], expected: &[f32], tol: f32) -> Result<(), String> {
    if got.len() != expected.len() {
        return Err(format!(
            "length {} != expected {}",
            got.len(),
            expected.len()
        ));
    }
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let ok = if e.is_infinite() || g.is_infinite() {
            g == e
        } else if e.is_nan() || g.is_nan() {
            e.is_nan() && g.is_nan()
        } else {
            (g - e).abs() <= tol * e.abs().max(1.0)
        };
        if !ok {
            return Err(format!("element {i}: got {g}, expected {e} (tol {tol})"));
        }
    }
    Ok(())
}

/// Run `check` on every case of a table and fail once, at the end, listing every case that
/// failed (an `Err` or a panic) by its name, so that one broken case hides no other.
/// Names must be unique within the table.
#[track_caller]
pub fn check_table<C>(
    table: &str,
    cases: &[C],
    name: impl Fn(&C) -> &str,
    check: impl Fn(&C) -> Result<(), String>,
) {
    let mut names: Vec<&str> = cases.iter().map(&name).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        panic!("{table}: two cases are named {:?}", w[0]);
    }
    let mut failures = Vec::new();
    for case in cases {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(case)));
        let why = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(why)) => why,
            Err(panic) => format!("panicked: {}", panic_text(panic.as_ref())),
        };
        failures.push(format!("{}: {why}", name(case)));
    }
    assert!(
        failures.is_empty(),
        "{table}: {} of {} cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// `Err` naming the first of `words` that `message` lacks.
pub fn says_all(message: &str, words: &[&str]) -> Result<(), String> {
    match words.iter().find(|w| !message.contains(*w)) {
        Some(w) => Err(format!("message {message:?} lacks {w:?}")),
        None => Ok(()),
    }
}

/// Copy of the folder `from` (files and sub-folders, recursively) at `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn compare_rules() {
        assert!(compare(
            &[1.0, f32::NEG_INFINITY],
            &[1.000001, f32::NEG_INFINITY],
            1e-5
        )
        .is_ok());
        assert!(compare(&[1.0], &[1.1], 1e-5).is_err());
        assert!(compare(&[f32::MAX], &[f32::INFINITY], 1.0).is_err());
        assert!(compare(&[0.0], &[f32::NAN], 1.0).is_err());
        assert!(compare(&[1.0], &[1.0, 2.0], 1.0).is_err());
        assert!(compare(&[200.0], &[200.001], 1e-5).is_ok());
    }
}
