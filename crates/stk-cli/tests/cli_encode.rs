//! `stk encode` end to end: the static and pipeline golden cases through the binary (every
//! output format, every input form). The ways it must refuse bad input without leaving a file
//! behind are in `cli_bad_input.rs`.

use std::path::PathBuf;
use std::process::Output;

use stk_tests::{
    encode_args, golden_cases, read_output, repo_root, report_missing_model, resolve_model,
    run_stk, static_cases_required, stk_output_matches, Expected, GoldenCase,
};

const STK: &str = env!("CARGO_BIN_EXE_stk");

fn stk<A: AsRef<std::ffi::OsStr>>(args: &[A], stdin: Option<&[u8]>) -> Output {
    run_stk(STK, args, stdin)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn texts(case: &GoldenCase) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(case.dir.join("texts.json")).unwrap()).unwrap()
}

#[test]
fn golden_static_cases_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let formats = ["safetensors", "npy", "jsonl"];
    let inputs = ["json", "txt", "stdin"];
    let cases = golden_cases(&["static"]);
    let required = static_cases_required(&cases);
    let mut ran = 0;
    for (i, case) in cases.into_iter().enumerate() {
        let rel = case.case["model"].as_str().unwrap();
        let Some(model) = resolve_model(rel) else {
            report_missing_model(&case.name, rel);
            continue;
        };
        let texts = texts(&case);
        let format = formats[i % 3];
        let input = inputs[(i / 3) % 3];
        let out = tmp.path().join(format!("{}.{format}", case.name));
        let model_s = model.to_str().unwrap();
        let out_s = out.to_str().unwrap();
        let semantics = case.case["semantics"].as_str().unwrap();
        let normalize = if case.case["normalize"].as_bool().unwrap() {
            "--normalize"
        } else {
            "--no-normalize"
        };
        let max_length = case.case["max_length"]
            .as_u64()
            .map_or("0".to_string(), |m| m.to_string());
        let mut args = vec![
            "encode",
            "--model",
            model_s,
            "--output",
            out_s,
            "--semantics",
            semantics,
            normalize,
            "--max-length",
            &max_length,
            "--quiet",
            "--batch-size",
            "100",
        ];
        let json_in = case.dir.join("texts.json");
        let txt_in = tmp.path().join(format!("{}.txt", case.name));
        let lines = texts.join("\n") + "\n";
        let stdin = match input {
            "json" => {
                args.extend(["--input", json_in.to_str().unwrap()]);
                None
            }
            "txt" => {
                std::fs::write(&txt_in, &lines).unwrap();
                args.extend(["--input", txt_in.to_str().unwrap()]);
                None
            }
            _ => {
                args.extend(["--input", "-"]);
                Some(lines.as_bytes())
            }
        };
        let tol = case.case["tolerance"].as_f64().unwrap() as f32;
        let expected = Expected::from_file(&case.dir.join("expected.safetensors"), tol);
        let what = format!("{} ({format} from {input})", case.name);
        let got = stk_output_matches(STK, &args, stdin, &out, &expected, &what);
        check_embeddings_file(&got, &what);
        ran += 1;
    }
    assert!(
        ran >= required && ran > 0,
        "only {ran} static cases ran; {required} have their model in the repository"
    );
}

fn committed_model(name: &str) -> PathBuf {
    repo_root().join("models").join(name)
}

/// `stk encode` writes f32 values, under the name `embeddings` in a safetensors file.
fn check_embeddings_file(got: &stk_tests::OutputFile, what: &str) {
    assert_eq!(got.dtype, stk_core::DType::F32, "{what}");
    if let Some(name) = &got.tensor {
        assert_eq!(name, "embeddings", "{what}");
    }
}

#[test]
fn batches_and_formats_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    let text: String = (0..50)
        .map(|i| format!("sentence number {i} about {}\n", "rust ".repeat(i % 7)))
        .collect();
    std::fs::write(&input, text).unwrap();
    let model = committed_model("potion-base-8M-int8-vq2048-d128");
    let mut outputs = Vec::new();
    for (batch, ext) in [
        ("1000", "npy"),
        ("7", "npy"),
        ("1", "safetensors"),
        ("13", "jsonl"),
    ] {
        let out = tmp.path().join(format!("out-{batch}.{ext}"));
        let o = stk(
            &encode_args(&model, &input, &out, &["--batch-size", batch]),
            None,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let got = read_output(&out);
        outputs.push((got.dims, got.values));
    }
    assert_eq!(outputs[0].0, [50, 128]);
    for o in &outputs[1..] {
        assert_eq!(o, &outputs[0]);
    }
}

#[test]
fn default_model_and_empty_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one.txt");
    std::fs::write(&one, "Hello world\n").unwrap();
    let out = tmp.path().join("one.npy");
    let o = stk(
        &[
            "encode",
            "--input",
            one.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_output(&out);
    assert_eq!(got.dims, [1, 256]);
    let v = got.values;
    // The default model is potion-base-8M-f16 in model2vec semantics, normalized.
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");

    let empty_txt = tmp.path().join("empty.txt");
    std::fs::write(&empty_txt, "").unwrap();
    let empty_json = tmp.path().join("empty.json");
    std::fs::write(&empty_json, "[]").unwrap();
    for (input, stdin, ext) in [
        (empty_txt.to_str().unwrap(), None, "safetensors"),
        (empty_json.to_str().unwrap(), None, "npy"),
        ("-", Some(&b""[..]), "jsonl"),
    ] {
        let out = tmp.path().join(format!("empty.{ext}"));
        let o = stk(
            &[
                "encode",
                "--input",
                input,
                "--output",
                out.to_str().unwrap(),
                "--quiet",
            ],
            stdin,
        );
        assert!(o.status.success(), "{input} -> {ext}: {}", stderr(&o));
        let got = read_output(&out);
        assert!(got.values.is_empty());
        if ext != "jsonl" {
            assert_eq!(got.dims, [0, 256], "{ext}");
        } else {
            assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
        }
    }
}

/// A saved sentence-transformers pipeline folder goes through the same command: every golden
/// pipeline case, as `SentenceTransformer(folder).encode(texts)` gives it.
#[test]
fn pipeline_folders_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    for case in golden_cases(&["pipeline"]) {
        let out = tmp.path().join(format!("{}.safetensors", case.name));
        let model = case.dir.join("model");
        let input = case.dir.join("texts.json");
        let args = encode_args(&model, &input, &out, &[]);
        let expected = Expected::from_file(&case.dir.join("expected.safetensors"), 1e-4);
        let got = stk_output_matches(STK, &args, None, &out, &expected, &case.name);
        check_embeddings_file(&got, &case.name);
    }
}

#[test]
fn bench_encode_reports_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("bench.txt");
    std::fs::write(&input, "one sentence\nanother sentence here\nthird\n").unwrap();
    let model = committed_model("potion-base-8M-int8-vq2048-d128");
    let o = stk(
        &[
            "bench",
            "encode",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--repeat",
            "3",
            "--json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let line = String::from_utf8(o.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["sentences"], 9, "{v}");
    assert_eq!(v["semantics"], "model2vec");
    assert!(v["seconds"].as_f64().unwrap() > 0.0);
    assert!(v["sentences_per_s"].as_f64().unwrap() > 0.0);

    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let o = stk(
        &[
            "bench",
            "encode",
            "--model",
            model.to_str().unwrap(),
            "--input",
            empty.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        !o.status.success() && stderr(&o).contains("no text"),
        "{}",
        stderr(&o)
    );
}
