//! The module commands of the `stk` binary (`pool`, `normalize`, `layer-pool`, `bench pool`):
//! every golden case of kind `pooling`, `normalize` and `weighted_layer_pooling` through the
//! binary. Bad inputs (exit code 1, a clear message, no output file) are in `cli_bad_input.rs`.

use std::process::Output;

use stk_core::{write_safetensors, DType, SafetensorsFile, Tensor};
use stk_tests::{golden_cases, run_stk, stk_output_matches, tolerance_for, Expected, GoldenCase};

const STK: &str = env!("CARGO_BIN_EXE_stk");

fn stk(args: &[&str]) -> Output {
    run_stk(STK, args, None)
}

fn dtype_named(name: &str) -> DType {
    match name {
        "float32" | "f32" => DType::F32,
        "float16" | "f16" => DType::F16,
        "bfloat16" | "bf16" => DType::BF16,
        other => panic!("unknown dtype name {other}"),
    }
}

/// Run `args` (which write the tensor `name` to `out`), then compare it with the case's
/// `expected`; its dtype, for the caller's check.
fn run_and_check(
    case: &GoldenCase,
    args: &[&str],
    out: &std::path::Path,
    name: &str,
    input_dtype: DType,
) -> DType {
    let tol = tolerance_for(input_dtype.as_str(), false);
    let expected = Expected::from_file(&case.dir.join("tensors.safetensors"), tol);
    let got = stk_output_matches(STK, args, None, out, &expected, &case.name);
    assert_eq!(got.tensor.as_deref(), Some(name), "{}", case.name);
    got.dtype
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
        assert_eq!(got, expected_dtype, "{}", case.name);
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
            got,
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
        assert_eq!(got, DType::F32);
    }
}

/// A padded batch with a prompt through `stk pool`: the values the rules give. (Bad inputs of
/// the module commands are in `cli_bad_input.rs`.)
#[test]
fn pool_with_prompt_length() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("padded.safetensors");
    let out = dir.path().join("out.safetensors");
    let tokens = Tensor::from_slice([2, 3, 4], &[0.5f32; 24]).unwrap();
    let mask = Tensor::from_slice([2, 3], &[1i64, 1, 0, 1, 0, 0]).unwrap();
    write_safetensors(
        &input,
        &[("token_embeddings", &tokens), ("attention_mask", &mask)],
    )
    .unwrap();
    let o = stk(&[
        "pool",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--mode",
        "max,mean",
        "--prompt-length",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = SafetensorsFile::open(&out)
        .unwrap()
        .get("sentence_embedding")
        .unwrap();
    assert_eq!(got.dims(), [2, 8]);
    let v = got.to_f32_vec().unwrap();
    // Row 2 has one real token, inside the prompt: max −inf, mean 0.
    assert_eq!(&v[..8], [0.5; 8]);
    let want: Vec<f32> = [f32::NEG_INFINITY; 4]
        .iter()
        .chain(&[0.0; 4])
        .copied()
        .collect();
    assert_eq!(&v[8..], want);
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
