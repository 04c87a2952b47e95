//! The model2vec fixtures (`tests/fixtures/model2vec`, made with model2vec 0.10 by
//! `tools/make_model2vec_fixtures.py`): float64 tables in all three folder layouts, `normalize`
//! true and false, config `max_length` 4 / 512 / absent / null, tokenizer.json with and without
//! its own truncation, a WordPiece tokenizer, a vocabulary-quantized table and an f16 table,
//! each encoded with several options, through the library and through `stk encode`, against
//! what model2vec itself returned.

use std::path::{Path, PathBuf};

use serde_json::Value;
use stk::{DType, LoadOptions, MaxLength, Model, Semantics};
use stk_tests as golden;
use stk_tests::{stk_output_matches, Expected};

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

/// What model2vec returned for `run`, as a golden expectation within the fixture's tolerance.
fn expected(fixture: &Fixture, run: &Value) -> Expected {
    let rows = run["expected"].as_array().unwrap();
    let dim = rows.first().map_or(0, |r| r.as_array().unwrap().len());
    Expected {
        dims: vec![rows.len(), dim],
        values: expected_rows(run),
        tol: tolerance(fixture),
    }
}

/// `stk encode` of the fixtures' texts with `model` and `flags` into `output`, checked against
/// `expected`; the element type written.
fn stk_encode(
    model: &Path,
    output: &Path,
    flags: &[String],
    expected: &Expected,
    what: &str,
) -> DType {
    let input = fixtures_dir().join("texts.json");
    let mut args = vec!["encode", "--quiet", "--model", model.to_str().unwrap()];
    args.extend([
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    args.extend(flags.iter().map(String::as_str));
    stk_output_matches(STK, &args, None, output, expected, what).dtype
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
            let what = format!("{} {}", fixture.name, run["options"]);
            let want = expected(&fixture, run);
            assert_eq!(want.dims[0], n_texts, "{what}");
            let dtype = stk_encode(&fixture.model, &output, &flags, &want, &what);
            assert_eq!(dtype, DType::F32, "{what}");
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
    let want = Expected {
        tol: F16_TOL,
        ..expected(&fixture, &fixture.runs()[0])
    };
    for format in ["safetensors", "npy", "jsonl"] {
        let output = tmp.path().join(format!("f16.{format}"));
        let flags = ["--output-dtype".into(), "f16".into()];
        let dtype = stk_encode(&fixture.model, &output, &flags, &want, format);
        if format != "jsonl" {
            assert_eq!(dtype, DType::F16, "{format}");
        }
        let got = stk_tests::read_output(&output).values;
        assert!(
            got.iter()
                .all(|&v| stk_core::f16::from_f32(v).to_f32() == v),
            "{format}: not f16 values"
        );
    }
    // (`--output-dtype bf16` is refused: `cli_bad_input.rs`.)
}
