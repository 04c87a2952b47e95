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

/// Run the binary `exe` with `args`, feeding it `stdin` (or nothing: stdin is closed), and
/// collect its exit status, stdout and stderr.
pub fn run_stk<A: AsRef<std::ffi::OsStr>>(
    exe: &str,
    args: &[A],
    stdin: Option<&[u8]>,
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {exe}: {e}"));
    if let Some(bytes) = stdin {
        // The child may fail before reading everything: a broken pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(bytes);
    }
    child.wait_with_output().unwrap()
}

/// `encode --model MODEL --input INPUT --output OUTPUT --quiet EXTRA...`: the arguments of
/// `stk encode` (`INPUT` may be `-`, stdin).
pub fn encode_args(
    model: impl AsRef<Path>,
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    extra: &[&str],
) -> Vec<String> {
    let path = |p: &dyn AsRef<Path>| p.as_ref().to_str().unwrap().to_string();
    let mut args = vec!["encode".to_string(), "--model".into(), path(&model)];
    args.extend([
        "--input".into(),
        path(&input),
        "--output".into(),
        path(&output),
    ]);
    args.push("--quiet".into());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// An output file of the `stk` binary, read whatever its format.
#[derive(Debug, PartialEq)]
pub struct OutputFile {
    /// The name of the one tensor of a `.safetensors` output; `None` for `.npy` and `.jsonl`.
    pub tensor: Option<String>,
    /// `[rows, dim]` (or the tensor's shape); a `.jsonl` file of no line is `[0, 0]`.
    pub dims: Vec<usize>,
    /// Element type as stored (`.jsonl`: always f32).
    pub dtype: stk_core::DType,
    /// The values, widened to f32.
    pub values: Vec<f32>,
}

/// Read an output of `stk` by its extension: `.safetensors` (exactly one tensor), `.npy`
/// (version 1.0, little-endian `<f4` or `<f2`, C order, header padded to 64 bytes) or `.jsonl`
/// (one JSON array of numbers a line, all of one length). Panics on anything else.
pub fn read_output(path: &Path) -> OutputFile {
    let ext = path.extension().and_then(|e| e.to_str());
    match ext {
        Some("safetensors") => {
            let f = stk_core::SafetensorsFile::open(path).unwrap();
            let names: Vec<&str> = f.names().collect();
            assert_eq!(names.len(), 1, "{}: tensors {names:?}", path.display());
            let t = f.get(names[0]).unwrap();
            OutputFile {
                tensor: Some(names[0].to_string()),
                dims: t.dims().to_vec(),
                dtype: t.dtype(),
                values: t.to_f32_vec().unwrap(),
            }
        }
        Some("npy") => read_npy(&std::fs::read(path).unwrap()),
        Some("jsonl") => {
            let text = std::fs::read_to_string(path).unwrap();
            let rows: Vec<Vec<f32>> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let dim = rows.first().map_or(0, Vec::len);
            assert!(
                rows.iter().all(|r| r.len() == dim),
                "ragged {}",
                path.display()
            );
            OutputFile {
                tensor: None,
                dims: vec![rows.len(), dim],
                dtype: stk_core::DType::F32,
                values: rows.concat(),
            }
        }
        other => panic!("{}: unexpected output extension {other:?}", path.display()),
    }
}

/// The element type (`descr`, e.g. `<f4`), shape and data of an NPY 1.0 file, after checking
/// its framing: magic and version, a header padded to 64 bytes, C order.
pub fn npy_parts(bytes: &[u8]) -> (&str, Vec<usize>, &[u8]) {
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "not an NPY 1.0 file");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "NPY header not 64-aligned");
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.contains("'fortran_order': False"), "{header}");
    let descr = header.split("'descr': '").nth(1).unwrap();
    let descr = &descr[..descr.find('\'').unwrap()];
    let shape = header.split("'shape': (").nth(1).unwrap();
    let dims: Vec<usize> = shape
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    (descr, dims, &bytes[10 + hlen..])
}

fn read_npy(bytes: &[u8]) -> OutputFile {
    let (descr, dims, body) = npy_parts(bytes);
    let (dtype, values): (stk_core::DType, Vec<f32>) = match descr {
        "<f2" => {
            let v = body.chunks_exact(2);
            let v = v.map(|c| stk_core::f16::from_le_bytes([c[0], c[1]]).to_f32());
            (stk_core::DType::F16, v.collect())
        }
        "<f4" => {
            let v = body.chunks_exact(4);
            let v = v.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            (stk_core::DType::F32, v.collect())
        }
        other => panic!("NPY element type {other}: expected <f4 or <f2"),
    };
    assert_eq!(
        dims.iter().product::<usize>(),
        values.len(),
        "NPY shape vs data"
    );
    OutputFile {
        tensor: None,
        dims,
        dtype,
        values,
    }
}

/// What a golden run must give: a shape and values, within `tol` (by [`compare`]).
pub struct Expected {
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
    pub tol: f32,
}

impl Expected {
    /// The tensor `expected` of the safetensors file `path`.
    pub fn from_file(path: &Path, tol: f32) -> Self {
        let t = stk_core::SafetensorsFile::open(path)
            .unwrap()
            .get("expected")
            .unwrap();
        Expected {
            dims: t.dims().to_vec(),
            values: t.to_f32_vec().unwrap(),
            tol,
        }
    }
}

/// Run `stk args` (feeding it `stdin`), which must succeed and write `out`; read `out` and
/// check it against `expected`. Returns what was read, for checks of its own (dtype, name).
/// `what` names the case in a failure.
#[track_caller]
pub fn stk_output_matches<A: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    exe: &str,
    args: &[A],
    stdin: Option<&[u8]>,
    out: &Path,
    expected: &Expected,
    what: &str,
) -> OutputFile {
    let o = run_stk(exe, args, stdin);
    assert!(
        o.status.success(),
        "{what}: stk {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = read_output(out);
    assert_eq!(got.dims, expected.dims, "{what}: shape");
    if let Err(e) = compare(&got.values, &expected.values, expected.tol) {
        panic!("{what}: {e}");
    }
    got
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

mod copy_dir;
// Unused in the tests that include this file as a module of their own.
#[allow(unused_imports)]
pub use copy_dir::copy_dir;

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
        for (got, want, tol, says) in [
            (
                &[1.0f32][..],
                &[1.1f32][..],
                1e-5,
                "element 0: got 1, expected 1.1",
            ),
            (&[f32::MAX], &[f32::INFINITY], 1.0, "expected inf"),
            (&[0.0], &[f32::NAN], 1.0, "expected NaN"),
            (&[1.0], &[1.0, 2.0], 1.0, "length 1 != expected 2"),
        ] {
            let e = compare(got, want, tol).unwrap_err();
            assert!(e.contains(says), "{e:?} lacks {says:?}");
        }
        assert!(compare(&[200.0], &[200.001], 1e-5).is_ok());
    }

    #[test]
    fn check_table_lists_every_failing_case() {
        let cases = [("fine", 1), ("wrong", 2), ("panics", 3), ("also wrong", 4)];
        let outcome = std::panic::catch_unwind(|| {
            check_table(
                "t",
                &cases,
                |c| c.0,
                |c| match c.1 {
                    1 => Ok(()),
                    3 => panic!("boom"),
                    n => Err(format!("got {n}")),
                },
            )
        });
        let payload = outcome.expect_err("failing cases must fail the table");
        let message = panic_text(payload.as_ref());
        for part in [
            "t: 3 of 4 cases failed",
            "wrong: got 2",
            "panics: panicked: boom",
            "also wrong: got 4",
        ] {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
        assert!(!message.contains("fine"), "{message}");
    }

    #[test]
    fn read_output_reads_npy_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("x.jsonl");
        std::fs::write(&jsonl, "[1.0, 2.5]\n[3, 4]\n").unwrap();
        let got = read_output(&jsonl);
        assert_eq!(
            (got.dims, got.values),
            (vec![2, 2], vec![1.0, 2.5, 3.0, 4.0])
        );
        // An NPY 1.0 header padded to 64 bytes, then two f16 values.
        let header = "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 2), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let padded = format!("{header:<117}\n"); // 10 + 118 = 2 × 64 bytes
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        for v in [0.5f32, -2.0] {
            bytes.extend_from_slice(&stk_core::f16::from_f32(v).to_le_bytes());
        }
        let npy = dir.path().join("x.npy");
        std::fs::write(&npy, bytes).unwrap();
        let got = read_output(&npy);
        assert_eq!(got.dtype, stk_core::DType::F16);
        assert_eq!((got.dims, got.values), (vec![1, 2], vec![0.5, -2.0]));
    }
}
