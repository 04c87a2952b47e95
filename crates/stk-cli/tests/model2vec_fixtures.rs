//! The model2vec fixtures (`tests/fixtures/model2vec`, made with model2vec 0.10 by
//! `tools/make_model2vec_fixtures.py`): float64 tables in all three folder layouts, `normalize`
//! true and false, config `max_length` 4 / 512 / absent / null, tokenizer.json with and without
//! its own truncation, a WordPiece tokenizer, a vocabulary-quantized table and an f16 table,
//! each encoded with several options, through the library and through `stk encode`, against
//! what model2vec itself returned.

#[path = "../../../tests/lib.rs"]
#[allow(dead_code)]
mod golden;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use stk::{DType, LoadOptions, MaxLength, Model, Semantics};
use stk_core::SafetensorsFile;

const STK: &str = env!("CARGO_BIN_EXE_stk");

/// stk computes in f32 what model2vec computes in f64: a mean of up to 160 rows of N(0, 1)
/// values is a few f32 steps off (tests/golden allows 1e-4 for text pipelines).
const F32_TOL: f32 = 1e-5;
/// One f16 step at 1.0: stk rounds its f32 mean once, numpy rounds its f32-accumulated mean.
const F16_TOL: f32 = 1.0 / 1024.0;

struct Fixture {
    name: String,
    model: PathBuf,
    expected: Value,
}

impl Fixture {
    fn runs(&self) -> &[Value] {
        self.expected["runs"].as_array().unwrap()
    }
    /// model2vec answered in float16: the table is f16.
    fn is_f16(&self) -> bool {
        self.runs()[0]["dtype"] == "float16"
    }
}

fn fixtures_dir() -> PathBuf {
    golden::repo_root().join("tests/fixtures/model2vec")
}

/// Every fixture; missing fixtures fail the test.
fn fixtures() -> Vec<Fixture> {
    let dir = fixtures_dir();
    let mut out: Vec<Fixture> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("model2vec fixtures missing at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .map(|p| Fixture {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            model: p.join("model"),
            expected: serde_json::from_str(
                &std::fs::read_to_string(p.join("expected.json")).unwrap(),
            )
            .unwrap(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 11,
        "expected 11 fixtures in {}, found {}",
        dir.display(),
        out.len()
    );
    out
}

fn texts() -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(fixtures_dir().join("texts.json")).unwrap())
        .unwrap()
}

/// The reference's `from_pretrained` keyword arguments as stk options.
fn load_options(options: &Value) -> LoadOptions {
    let max_length = match options.get("max_length") {
        None => MaxLength::FromConfig,
        Some(Value::Null) => MaxLength::Unlimited,
        Some(n) => MaxLength::Limit(n.as_u64().unwrap() as usize),
    };
    LoadOptions {
        normalize: options.get("normalize").map(|v| v.as_bool().unwrap()),
        max_length,
        ..LoadOptions::default()
    }
}

/// The same options as `stk encode` flags; `None` for `max_length=0`, which the command line
/// spells as "no limit" (the library's `MaxLength::Limit(0)` covers it).
fn cli_flags(options: &Value) -> Option<Vec<String>> {
    let mut flags: Vec<String> = Vec::new();
    match options.get("max_length") {
        None => {}
        Some(Value::Null) => flags.extend(["--max-length".into(), "0".into()]),
        Some(n) if n.as_u64() == Some(0) => return None,
        Some(n) => flags.extend(["--max-length".into(), n.to_string()]),
    }
    match options.get("normalize").and_then(Value::as_bool) {
        Some(true) => flags.push("--normalize".into()),
        Some(false) => flags.push("--no-normalize".into()),
        None => {}
    }
    Some(flags)
}

fn expected_rows(run: &Value) -> Vec<f32> {
    run["expected"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect()
}

fn tolerance(fixture: &Fixture) -> f32 {
    if fixture.is_f16() {
        F16_TOL
    } else {
        F32_TOL
    }
}

#[test]
fn fixtures_through_the_library() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for fixture in fixtures() {
        // Every layout is model2vec's by default (none has a sentence-transformers modules.json
        // at the root besides the one model2vec itself writes next to config.json).
        let default =
            Model::load(&fixture.model).unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
        assert_eq!(
            default.semantics(),
            Semantics::Model2Vec,
            "{}",
            fixture.name
        );
        for run in fixture.runs() {
            let what = format!("{} {}", fixture.name, run["options"]);
            let model = Model::load_with(&fixture.model, &load_options(&run["options"]))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let got = model
                .encode(&refs)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got.rows(), texts.len(), "{what}");
            golden::compare(got.as_slice(), &expected_rows(run), tolerance(&fixture))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            if fixture.is_f16() {
                // model2vec's own output size: f16 values within one rounding step.
                let half = got.to_tensor_as(DType::F16).unwrap();
                assert_eq!(half.dtype(), DType::F16);
                golden::compare(&half.to_f32_vec().unwrap(), &expected_rows(run), F16_TOL)
                    .unwrap_or_else(|e| panic!("{what} as f16: {e}"));
            }
        }
    }
}

/// `[rows, dim]`, the element type and the values of an `stk encode` output file.
fn read_output(path: &Path) -> (Vec<usize>, DType, Vec<f32>) {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let t = SafetensorsFile::open(path)
                .unwrap()
                .get("embeddings")
                .unwrap();
            (t.dims().to_vec(), t.dtype(), t.to_f32_vec().unwrap())
        }
        Some("npy") => {
            let bytes = std::fs::read(path).unwrap();
            let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
            let body = &bytes[10 + hlen..];
            let (dtype, values): (DType, Vec<f32>) = if header.contains("'<f2'") {
                let v = body
                    .chunks_exact(2)
                    .map(|c| stk_core::f16::from_le_bytes([c[0], c[1]]).to_f32());
                (DType::F16, v.collect())
            } else {
                assert!(header.contains("'<f4'"), "{header}");
                let v = body
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                (DType::F32, v.collect())
            };
            let shape = header
                .split("'shape': (")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap();
            let dims = shape
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            (dims, dtype, values)
        }
        _ => {
            let text = std::fs::read_to_string(path).unwrap();
            let rows: Vec<Vec<f32>> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let dim = rows.first().map_or(0, Vec::len);
            (vec![rows.len(), dim], DType::F32, rows.concat())
        }
    }
}

fn stk_encode(model: &Path, output: &Path, flags: &[String]) {
    let input = fixtures_dir().join("texts.json");
    let out = Command::new(STK)
        .args(["encode", "--quiet", "--model"])
        .arg(model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(output)
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stk encode {flags:?} on {}: {}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fixtures_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let n_texts = texts().len();
    let formats = ["safetensors", "npy", "jsonl"];
    let mut ran = 0;
    for fixture in fixtures() {
        for (i, run) in fixture.runs().iter().enumerate() {
            let Some(flags) = cli_flags(&run["options"]) else {
                continue;
            };
            let output = tmp
                .path()
                .join(format!("{}-{i}.{}", fixture.name, formats[ran % 3]));
            stk_encode(&fixture.model, &output, &flags);
            let (dims, dtype, got) = read_output(&output);
            let what = format!("{} {}", fixture.name, run["options"]);
            assert_eq!((dims[0], dtype), (n_texts, DType::F32), "{what}");
            golden::compare(&got, &expected_rows(run), tolerance(&fixture))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            ran += 1;
        }
    }
    assert!(ran >= 44, "only {ran} runs through the binary");
}

/// `--output-dtype f16` writes model2vec's output size (F16 / `<f2` / f16-rounded JSON) for the
/// f16-table fixture, within one rounding step of model2vec's float16 answer.
#[test]
fn output_dtype_f16_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = fixtures()
        .into_iter()
        .find(Fixture::is_f16)
        .expect("an f16 fixture");
    let want = expected_rows(&fixture.runs()[0]);
    for format in ["safetensors", "npy", "jsonl"] {
        let output = tmp.path().join(format!("f16.{format}"));
        stk_encode(
            &fixture.model,
            &output,
            &["--output-dtype".into(), "f16".into()],
        );
        let (_, dtype, got) = read_output(&output);
        if format != "jsonl" {
            assert_eq!(dtype, DType::F16, "{format}");
        }
        assert!(
            got.iter()
                .all(|&v| stk_core::f16::from_f32(v).to_f32() == v),
            "{format}: not f16 values"
        );
        golden::compare(&got, &want, F16_TOL).unwrap_or_else(|e| panic!("{format}: {e}"));
    }
    let output = tmp.path().join("bad.npy");
    let out = Command::new(STK)
        .args(["encode", "--quiet", "--output-dtype", "bf16", "--input"])
        .arg(fixtures_dir().join("texts.json"))
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("f32 or f16"), "{err}");
    assert!(!output.exists());
}
