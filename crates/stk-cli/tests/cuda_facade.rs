//! `--device cuda[:N]` through the facade and the `stk` binary.
//!
//! Without a CUDA driver (this machine, CI): every entry point that takes a device answers
//! with the typed "no CUDA driver" error, and the binary exits 1 with that line and writes
//! nothing. With a GPU (`gpu-bundle/run.sh`): every golden `static` case encoded on the GPU,
//! golden module cases through `stk pool|normalize|layer-pool --device cuda`, each
//! against the reference's expected output. A test that needs a GPU prints
//! `skipped: no CUDA driver` without one: the only skip allowed.

#[path = "../../../tests/lib.rs"]
#[allow(dead_code)]
mod golden;

use golden::{
    compare, golden_cases, report_missing_model, resolve_model, tolerance_for, GoldenCase,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};
use stk::{Device, Error, LoadOptions, Model, Semantics};
use stk_core::{DType, SafetensorsFile, Tensor};

/// The `stk` binary: `STK_BIN` when set (the bundle's copy), else the one cargo built.
fn stk(args: &[&str]) -> Output {
    let bin = std::env::var_os("STK_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_stk")), PathBuf::from);
    Command::new(bin)
        .args(args)
        .output()
        .expect("run the stk binary")
}

/// Whether a GPU is usable; prints the skip line when not.
fn gpu_or_skip(test: &str) -> bool {
    match stk_cuda::shared_device(0) {
        Ok(_) => true,
        Err(Error::NoCudaDriver) => {
            // Straight to stderr: the harness captures println!, and a skip must show in CI logs.
            let _ = writeln!(std::io::stderr(), "{test}: skipped: no CUDA driver");
            false
        }
        Err(Error::NoCudaDevice(n)) => {
            let _ = writeln!(std::io::stderr(), "{test}: skipped: no CUDA device {n}");
            false
        }
        Err(e) => panic!("{test}: opening CUDA device 0: {e}"),
    }
}

#[test]
fn without_a_driver_every_device_entry_point_says_so() {
    if stk_cuda::driver_present() {
        // A driver is here: an ordinal no machine has is a typed error, not a panic.
        let e = stk::ops::normalize_tensor(
            &Tensor::zeros([1, 4], DType::F32).unwrap(),
            Device::Cuda(1000),
        )
        .unwrap_err();
        assert!(matches!(e, Error::NoCudaDevice(1000)), "{e}");
        return;
    }
    let no_driver = |r: stk::Result<()>| {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::NoCudaDriver), "{e}");
    };
    let options = LoadOptions {
        device: Device::Cuda(0),
        ..LoadOptions::default()
    };
    no_driver(
        Model::load_with(
            golden::repo_root().join("models/potion-base-8M-f16"),
            &options,
        )
        .map(|_| ()),
    );
    let x = Tensor::zeros([2, 4], DType::F32).unwrap();
    no_driver(stk::ops::normalize_tensor(&x, Device::Cuda(0)).map(|_| ()));
    let layers = Tensor::zeros([2, 1, 1, 4], DType::F32).unwrap();
    let w = Tensor::from_vec([2], vec![1.0f32, 1.0]).unwrap();
    no_driver(stk::ops::layer_pool_tensors(&layers, 0, &w, Device::Cuda(0)).map(|_| ()));

    // The binary: exit 1, the error line, no output file.
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.safetensors");
    stk_core::write_safetensors(
        &input,
        &[
            (
                "token_embeddings",
                &Tensor::zeros([2, 3, 4], DType::F32).unwrap(),
            ),
            ("sentence_embedding", &x),
            ("all_layer_embeddings", &layers),
            ("layer_weights", &w),
        ],
    )
    .unwrap();
    let texts = tmp.path().join("texts.txt");
    std::fs::write(&texts, "hello\nworld\n").unwrap();
    let out = tmp.path().join("out.safetensors");
    let (i, o, t) = (
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        texts.to_str().unwrap(),
    );
    for args in [
        &[
            "pool", "--input", i, "--output", o, "--mode", "mean", "--device", "cuda",
        ][..],
        &[
            "normalize",
            "--input",
            i,
            "--output",
            o,
            "--device",
            "cuda:0",
        ],
        &[
            "layer-pool",
            "--input",
            i,
            "--output",
            o,
            "--layer-start",
            "0",
            "--device",
            "cuda",
        ],
        &[
            "encode", "--input", t, "--output", o, "--device", "cuda", "--quiet",
        ],
        &["bench", "pool", "--device", "cuda", "--shape", "2x3x4"],
        &[
            "bench",
            "embedding-bag",
            "--device",
            "cuda",
            "--rows",
            "10",
            "--dim",
            "4",
        ],
    ] {
        let r = stk(args);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "stk {args:?}: {stderr}");
        assert!(
            stderr.contains("no CUDA driver found"),
            "stk {args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists(), "stk {args:?} wrote an output");
    }
}

/// Every golden `static` case (both semantics, every model the repository or the shared folder
/// has) encoded with the table on the GPU.
#[test]
fn static_cases_on_gpu_match_the_reference() {
    if !gpu_or_skip("static_cases_on_gpu_match_the_reference") {
        return;
    }
    let mut ran = 0;
    for case in golden_cases(&["static"]) {
        let rel = case.case["model"].as_str().unwrap();
        let Some(dir) = resolve_model(rel) else {
            report_missing_model(&case.name, rel);
            continue;
        };
        let semantics: Semantics = case.case["semantics"].as_str().unwrap().parse().unwrap();
        let options = LoadOptions {
            semantics: Some(semantics),
            normalize: (semantics == Semantics::SentenceTransformers)
                .then(|| case.case["normalize"].as_bool().unwrap()),
            max_length: case.case["max_length"]
                .as_u64()
                .map_or(LoadOptions::default().max_length, |m| {
                    stk::model2vec::MaxLength::Limit(m as usize)
                }),
            device: Device::Cuda(0),
        };
        let model =
            Model::load_with(&dir, &options).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let texts: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(case.dir.join("texts.json")).unwrap())
                .unwrap();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let got = model
            .encode(&refs)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let expected = SafetensorsFile::open(case.dir.join("expected.safetensors"))
            .unwrap()
            .get("expected")
            .unwrap();
        assert_eq!(
            [got.rows(), got.dim()],
            [expected.dims()[0], expected.dims()[1]],
            "{}",
            case.name
        );
        let tol = case.case["tolerance"].as_f64().unwrap() as f32;
        if let Err(e) = compare(got.as_slice(), &expected.to_f32_vec().unwrap(), tol) {
            panic!("{} on the GPU: {e}", case.name);
        }
        ran += 1;
    }
    assert!(ran > 0, "no static case ran");
    println!("{ran} golden static cases matched with the table on the GPU");
}

fn dtype_named(name: &str) -> DType {
    DType::parse(match name {
        "float32" => "f32",
        "float16" => "f16",
        "bfloat16" => "bf16",
        other => other,
    })
    .unwrap()
}

/// Golden module cases through the binary's `--device cuda` commands.
#[test]
fn module_commands_on_gpu_match_the_reference() {
    if !gpu_or_skip("module_commands_on_gpu_match_the_reference") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let check = |case: &GoldenCase, args: &[&str], out: &PathBuf, name: &str, tol: f32| {
        let r = stk(args);
        assert!(
            r.status.success(),
            "{}: stk {args:?}: {}",
            case.name,
            String::from_utf8_lossy(&r.stderr)
        );
        let got = SafetensorsFile::open(out).unwrap().get(name).unwrap();
        let expected = SafetensorsFile::open(case.dir.join("tensors.safetensors"))
            .unwrap()
            .get("expected")
            .unwrap();
        assert_eq!(
            (got.dims(), got.dtype()),
            (expected.dims(), expected.dtype()),
            "{}",
            case.name
        );
        if let Err(e) = compare(
            &got.to_f32_vec().unwrap(),
            &expected.to_f32_vec().unwrap(),
            tol,
        ) {
            panic!("{}: {e}", case.name);
        }
    };
    // Every fourth pooling case: each run is a process with its own CUDA context, and the
    // kernels themselves meet every case in stk-cuda's parity test.
    for case in golden_cases(&["pooling"]).into_iter().step_by(4) {
        let input = case.dir.join("tensors.safetensors");
        let out = tmp.path().join(format!("{}.safetensors", case.name));
        let modes: Vec<&str> = case.case["pooling_mode"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        let modes = modes.join(",");
        let prompt = case.case["prompt_length"].as_u64().map(|p| p.to_string());
        let mut args = vec![
            "pool",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend(["--mode", &modes, "--device", "cuda"]);
        if case.case["include_prompt"] == false {
            args.extend(["--prompt-length", prompt.as_deref().unwrap()]);
        }
        let tol = tolerance_for(
            dtype_named(case.case["dtype"].as_str().unwrap()).as_str(),
            false,
        );
        check(&case, &args, &out, "sentence_embedding", tol);
    }
    for case in golden_cases(&["normalize"]) {
        let input = case.dir.join("tensors.safetensors");
        let out = tmp.path().join(format!("{}.safetensors", case.name));
        let args = [
            "normalize",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--device",
            "cuda",
        ];
        let tol = tolerance_for(case.case["dtype"].as_str().unwrap(), false);
        check(&case, &args, &out, "sentence_embedding", tol);
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
            "--device",
            "cuda",
        ];
        check(&case, &args, &out, "token_embeddings", 1e-5);
    }
}
