//! The module commands of the `stk` binary (`pool`, `normalize`, `layer-pool`, `bench pool`):
//! every golden case of kind `pooling`, `normalize` and `weighted_layer_pooling` through the
//! binary, and bad inputs that must end with exit code 1, a clear message and no output file.

#[path = "../../../tests/lib.rs"]
#[allow(dead_code)]
mod golden;

use golden::{compare, golden_cases, tolerance_for, GoldenCase};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use stk_core::{write_safetensors, DType, SafetensorsFile, Tensor};

fn stk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stk"))
        .args(args)
        .output()
        .expect("run the stk binary")
}

fn dtype_named(name: &str) -> DType {
    match name {
        "float32" | "f32" => DType::F32,
        "float16" | "f16" => DType::F16,
        "bfloat16" | "bf16" => DType::BF16,
        other => panic!("unknown dtype name {other}"),
    }
}

/// Run `args` (which write `out`), then compare `out`'s tensor `name` with the case's
/// `expected`.
fn run_and_check(
    case: &GoldenCase,
    args: &[&str],
    out: &Path,
    name: &str,
    input_dtype: DType,
) -> Tensor {
    let o = stk(args);
    assert!(
        o.status.success(),
        "{}: stk {args:?} failed: {}",
        case.name,
        String::from_utf8_lossy(&o.stderr)
    );
    let got = SafetensorsFile::open(out).unwrap().get(name).unwrap();
    let expected = SafetensorsFile::open(case.dir.join("tensors.safetensors"))
        .unwrap()
        .get("expected")
        .unwrap();
    assert_eq!(got.dims(), expected.dims(), "{}", case.name);
    let tol = tolerance_for(input_dtype.as_str(), false);
    if let Err(e) = compare(
        &got.to_f32_vec().unwrap(),
        &expected.to_f32_vec().unwrap(),
        tol,
    ) {
        panic!("{}: {e}", case.name);
    }
    got
}

#[test]
fn pool_matches_golden() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = golden_cases(&["pooling"]);
    assert!(cases.len() >= 200);
    for case in &cases {
        let input = case.dir.join("tensors.safetensors");
        let out = tmp.path().join(format!("{}.safetensors", case.name));
        let modes: Vec<&str> = case.case["pooling_mode"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        let modes = modes.join(",");
        let mut args = vec![
            "pool",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--mode",
            &modes,
        ];
        let prompt = case.case["prompt_length"].as_u64().map(|p| p.to_string());
        if case.case["include_prompt"] == false {
            args.extend(["--prompt-length", prompt.as_deref().unwrap()]);
        }
        let input_dtype = dtype_named(case.case["dtype"].as_str().unwrap());
        let got = run_and_check(case, &args, &out, "sentence_embedding", input_dtype);
        let expected_dtype = dtype_named(case.case["expected_dtype"].as_str().unwrap());
        assert_eq!(got.dtype(), expected_dtype, "{}", case.name);
    }
}

#[test]
fn normalize_and_layer_pool_match_golden() {
    let tmp = tempfile::tempdir().unwrap();
    for case in golden_cases(&["normalize"]) {
        let input = case.dir.join("tensors.safetensors");
        let out = tmp.path().join(format!("{}.safetensors", case.name));
        let args = [
            "normalize",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        let dtype = dtype_named(case.case["dtype"].as_str().unwrap());
        let got = run_and_check(&case, &args, &out, "sentence_embedding", dtype);
        assert_eq!(
            got.dtype(),
            dtype_named(case.case["expected_dtype"].as_str().unwrap())
        );
    }
    for case in golden_cases(&["weighted_layer_pooling"]) {
        let input = case.dir.join("tensors.safetensors");
        let out = tmp.path().join(format!("{}.safetensors", case.name));
        let start = case.case["layer_start"].as_u64().unwrap().to_string();
        let args = [
            "layer-pool",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--layer-start",
            &start,
        ];
        let got = run_and_check(&case, &args, &out, "token_embeddings", DType::F32);
        assert_eq!(got.dtype(), DType::F32);
    }
}

/// Inputs for the error cases, written once into a temporary folder.
struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tensor::from_slice([2, 3, 4], &[0.5f32; 24]).unwrap();
        let mask = Tensor::from_slice([2, 3], &[1i64, 1, 0, 1, 0, 0]).unwrap();
        let varlen_tokens = Tensor::from_slice([1, 5, 4], &[0.5f32; 20]).unwrap();
        let write = |name: &str, tensors: &[(&str, &Tensor)]| {
            write_safetensors(dir.path().join(name), tensors).unwrap();
        };
        write(
            "padded.safetensors",
            &[("token_embeddings", &tokens), ("attention_mask", &mask)],
        );
        write("no_tokens.safetensors", &[("attention_mask", &mask)]);
        let bad_cu = Tensor::from_slice([3], &[0i64, 2, 4]).unwrap();
        write(
            "bad_cu.safetensors",
            &[
                ("token_embeddings", &varlen_tokens),
                ("cu_seq_lens_q", &bad_cu),
            ],
        );
        let ints = Tensor::from_slice([1, 2, 2], &[1i64, 2, 3, 4]).unwrap();
        write("int_tokens.safetensors", &[("token_embeddings", &ints)]);
        let short_mask = Tensor::from_slice([1, 3], &[1i64, 1, 1]).unwrap();
        write(
            "mask_batch.safetensors",
            &[
                ("token_embeddings", &tokens),
                ("attention_mask", &short_mask),
            ],
        );
        let tws = Tensor::from_slice([3], &[1.0f32, 2.0, 3.0]).unwrap();
        write(
            "bad_tws.safetensors",
            &[
                ("token_embeddings", &tokens),
                ("attention_mask", &mask),
                ("token_weights_sum", &tws),
            ],
        );
        let layers = Tensor::from_slice([3, 1, 1, 2], &[1.0f32; 6]).unwrap();
        let weights = Tensor::from_slice([2], &[1.0f32, 1.0]).unwrap();
        write(
            "layers.safetensors",
            &[
                ("all_layer_embeddings", &layers),
                ("layer_weights", &weights),
            ],
        );
        std::fs::write(
            dir.path().join("garbage.safetensors"),
            b"definitely not safetensors",
        )
        .unwrap();
        Inputs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.safetensors")
    }
}

/// `stk args` must fail with exit code 1, say `message` on stderr, and leave no output.
fn assert_fails(inputs: &Inputs, args: &[&str], message: &str) {
    let out = inputs.out();
    let o = stk(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stk {args:?}: {stderr}");
    assert!(
        stderr.contains(message),
        "stk {args:?}: stderr {stderr:?} lacks {message:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists(), "stk {args:?} left an output file");
    let leftovers: Vec<_> = std::fs::read_dir(inputs.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn bad_inputs_exit_1_without_output() {
    let inp = Inputs::new();
    let out = inp.out();
    let out = out.to_str().unwrap();
    let padded = inp.path("padded.safetensors");
    let pool = |input: &str, extra: &[&'static str]| -> Vec<String> {
        let mut a = vec![
            "pool".to_string(),
            "--input".into(),
            input.into(),
            "--output".into(),
            out.into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            pool(&inp.path("no_tokens.safetensors"), &[]),
            "tensor `token_embeddings` not found",
        ),
        (
            pool(&inp.path("missing.safetensors"), &[]),
            "missing.safetensors",
        ),
        (
            pool(&inp.path("garbage.safetensors"), &[]),
            "not a valid safetensors file",
        ),
        (
            pool(&inp.path("bad_cu.safetensors"), &[]),
            "cu_seq_lens ends at 4 but token_embeddings has 5 tokens",
        ),
        (
            pool(&inp.path("int_tokens.safetensors"), &[]),
            "token_embeddings: expected dtype f32 or f16 or bf16, got i64",
        ),
        (
            pool(&inp.path("mask_batch.safetensors"), &[]),
            "attention_mask: expected shape [2, 3]",
        ),
        (
            pool(&inp.path("bad_tws.safetensors"), &[]),
            "token_weights_sum: expected shape [2]",
        ),
        (
            pool(&padded, &["--mode", "mean,avg"]),
            "unknown pooling mode `avg`",
        ),
        (pool(&padded, &["--mode", ""]), "unknown pooling mode ``"),
        (pool(&padded, &["--device", "gpu"]), "unknown device `gpu`"),
        (
            pool(&padded, &["--prompt-length", "-2"]),
            "--prompt-length must be 0 or more, got -2",
        ),
        (
            pool(&padded, &["--prompt-length", "4"]),
            "prompt length 4 is longer than the longest sequence (3 tokens)",
        ),
        (
            pool(&padded, &["--prompt-length", "99999999999999999999999"]),
            "--prompt-length 99999999999999999999999 is too large",
        ),
        (
            pool(&padded, &["--prompt-length", "two"]),
            "--prompt-length must be a whole number",
        ),
        (
            vec![
                "normalize".into(),
                "--input".into(),
                padded.clone(),
                "--output".into(),
                out.into(),
            ],
            "tensor `sentence_embedding` not found",
        ),
        (
            vec![
                "layer-pool".into(),
                "--input".into(),
                inp.path("layers.safetensors"),
                "--output".into(),
                out.into(),
                "--layer-start".into(),
                "0".into(),
            ],
            "layer_weights: expected shape [3]",
        ),
        (
            vec![
                "layer-pool".into(),
                "--input".into(),
                inp.path("layers.safetensors"),
                "--output".into(),
                out.into(),
                "--layer-start".into(),
                "-1".into(),
            ],
            "--layer-start must be 0 or more",
        ),
    ];
    for (args, message) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails(&inp, &args, message);
    }

    // The output folder does not exist.
    let nowhere = inp
        .dir
        .path()
        .join("no_such_folder")
        .join("out.safetensors");
    let o = stk(&[
        "pool",
        "--input",
        &padded,
        "--output",
        nowhere.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the output folder does not exist"));
    assert!(!nowhere.exists());

    // The same inputs succeed when nothing is wrong (the checks above are not vacuous).
    let o = stk(&[
        "pool",
        "--input",
        &padded,
        "--output",
        out,
        "--mode",
        "max,mean",
        "--prompt-length",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = SafetensorsFile::open(out)
        .unwrap()
        .get("sentence_embedding")
        .unwrap();
    assert_eq!(got.dims(), [2, 8]);
    let v = got.to_f32_vec().unwrap();
    // Row 2 has one real token, inside the prompt: max −inf, mean 0.
    assert_eq!(&v[..8], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
    assert_eq!(
        &v[8..],
        [f32::NEG_INFINITY; 4]
            .iter()
            .chain(&[0.0; 4])
            .copied()
            .collect::<Vec<_>>()
    );
}

#[test]
fn bench_pool_reports_json() {
    let o = stk(&[
        "bench",
        "pool",
        "--shape",
        "3x8x20",
        "--dtype",
        "bf16",
        "--mode",
        "cls,max,mean",
        "--runs",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8(o.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    for key in [
        "gbps",
        "fraction_of_copy",
        "copy_gbps",
        "real_token_fraction",
    ] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {line}");
    }
    assert_eq!(v["input_bytes"], 3 * 8 * 20 * 2);
    let fraction = v["real_token_fraction"].as_f64().unwrap();
    assert!(fraction <= 1.0);

    let o = stk(&["bench", "pool", "--shape", "3x8", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shape must be BxTxD"));
}
