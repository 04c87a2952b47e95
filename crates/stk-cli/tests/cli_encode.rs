//! `stk encode` end to end: the static golden cases through the binary (every output format,
//! every input form), and the ways it must refuse bad input without leaving a file behind.

#[path = "../../../tests/lib.rs"]
#[allow(dead_code)]
mod golden;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use golden::{
    compare, golden_cases, report_missing_model, resolve_model, static_cases_required, GoldenCase,
};
use stk_core::SafetensorsFile;

const STK: &str = env!("CARGO_BIN_EXE_stk");

fn stk(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(STK);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("run stk");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `[rows, dim]` and the values of an output file, whatever its format.
fn read_output(path: &Path) -> (Vec<usize>, Vec<f32>) {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let f = SafetensorsFile::open(path).unwrap();
            assert_eq!(f.names().collect::<Vec<_>>(), ["embeddings"]);
            let t = f.get("embeddings").unwrap();
            assert_eq!(t.dtype(), stk_core::DType::F32);
            (t.dims().to_vec(), t.to_f32_vec().unwrap())
        }
        Some("npy") => {
            let bytes = std::fs::read(path).unwrap();
            assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
            let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0, "NPY header not 64-aligned");
            let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
            assert!(
                header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
                "{header}"
            );
            let shape = header
                .split("'shape': (")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap();
            let dims: Vec<usize> = shape
                .split(',')
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            let data: Vec<f32> = bytes[10 + hlen..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(
                dims.iter().product::<usize>(),
                data.len(),
                "NPY shape vs data"
            );
            (dims, data)
        }
        Some("jsonl") => {
            let text = std::fs::read_to_string(path).unwrap();
            let rows: Vec<Vec<f32>> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let dim = rows.first().map_or(0, |r| r.len());
            assert!(rows.iter().all(|r| r.len() == dim));
            (vec![rows.len(), dim], rows.concat())
        }
        other => panic!("unexpected output {other:?}"),
    }
}

fn texts(case: &GoldenCase) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(case.dir.join("texts.json")).unwrap()).unwrap()
}

/// Files left in `dir` (to check that failures leave no output and no temporary file).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
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
        let output = match input {
            "json" => {
                args.extend(["--input", json_in.to_str().unwrap()]);
                stk(&args, None)
            }
            "txt" => {
                std::fs::write(&txt_in, &lines).unwrap();
                args.extend(["--input", txt_in.to_str().unwrap()]);
                stk(&args, None)
            }
            _ => {
                args.extend(["--input", "-"]);
                stk(&args, Some(lines.as_bytes()))
            }
        };
        assert!(
            output.status.success(),
            "{}: {}",
            case.name,
            stderr(&output)
        );
        let (dims, got) = read_output(&out);
        let want = SafetensorsFile::open(case.dir.join("expected.safetensors"))
            .unwrap()
            .get("expected")
            .unwrap();
        assert_eq!(dims, want.dims(), "{} ({format} from {input})", case.name);
        let tol = case.case["tolerance"].as_f64().unwrap() as f32;
        compare(&got, &want.to_f32_vec().unwrap(), tol)
            .unwrap_or_else(|e| panic!("{} ({format} from {input}): {e}", case.name));
        ran += 1;
    }
    assert!(
        ran >= required && ran > 0,
        "only {ran} static cases ran; {required} have their model in the repository"
    );
}

fn committed_model(name: &str) -> PathBuf {
    golden::repo_root().join("models").join(name)
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
            &[
                "encode",
                "--model",
                model.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--batch-size",
                batch,
            ],
            None,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        outputs.push(read_output(&out));
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
    let (dims, v) = read_output(&out);
    assert_eq!(dims, [1, 256]);
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
        let (dims, data) = read_output(&out);
        assert!(data.is_empty());
        if ext != "jsonl" {
            assert_eq!(dims, [0, 256], "{ext}");
        } else {
            assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
        }
    }
}

#[test]
fn bad_inputs_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = committed_model("potion-base-8M-int8-vq2048-d128");
    let model = model.to_str().unwrap();
    let good = dir.join("good.txt");
    std::fs::write(&good, "a\nb\n").unwrap();
    let good = good.to_str().unwrap();
    let outdir = dir.join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = |name: &str| outdir.join(name).to_str().unwrap().to_string();

    let check = |args: &[&str], stdin: Option<&[u8]>, needles: &[&str]| {
        let o = stk(args, stdin);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        for n in needles {
            assert!(err.contains(n), "{args:?}: `{n}` not in: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            entries(&outdir).is_empty(),
            "{args:?} left {:?}",
            entries(&outdir)
        );
    };

    // A line that is not UTF-8, after enough lines that a first batch was already written.
    let bad = dir.join("bad.txt");
    let mut bytes = b"one\ntwo\nthree\n".repeat(10);
    bytes.extend_from_slice(b"caf\xe9\nlast\n");
    std::fs::write(&bad, &bytes).unwrap();
    for ext in ["npy", "safetensors", "jsonl"] {
        check(
            &[
                "encode",
                "--model",
                model,
                "--input",
                bad.to_str().unwrap(),
                "--output",
                &out(&format!("x.{ext}")),
                "--batch-size",
                "4",
            ],
            None,
            &["bad.txt", "line 31", "UTF-8"],
        );
    }
    check(
        &[
            "encode",
            "--model",
            model,
            "--input",
            "-",
            "--output",
            &out("x.npy"),
        ],
        Some(b"ok\n\xff\n"),
        &["<stdin>", "line 2"],
    );

    // JSON that is not an array of strings.
    for (name, content) in [
        ("obj.json", r#"{"texts": ["a"]}"#),
        ("num.json", r#"["a", 3]"#),
        ("broken.json", r#"["a""#),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        check(
            &[
                "encode",
                "--model",
                model,
                "--input",
                p.to_str().unwrap(),
                "--output",
                &out("x.npy"),
            ],
            None,
            &[name, "JSON array of strings"],
        );
    }

    // Unknown output extension, missing input, missing output folder.
    check(
        &[
            "encode",
            "--model",
            model,
            "--input",
            good,
            "--output",
            &out("x.csv"),
        ],
        None,
        &["x.csv", "unknown extension"],
    );
    check(
        &[
            "encode",
            "--model",
            model,
            "--input",
            &out("missing.txt"),
            "--output",
            &out("x.npy"),
        ],
        None,
        &["missing.txt"],
    );
    let nowhere = dir.join("no/such/dir/x.npy");
    let o = stk(
        &[
            "encode",
            "--model",
            model,
            "--input",
            good,
            "--output",
            nowhere.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        !o.status.success() && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );

    // Model folders: missing, pickled weights only, not a model, hub id without the feature.
    let missing = dir.join("no-model");
    check(
        &[
            "encode",
            "--model",
            missing.to_str().unwrap(),
            "--input",
            good,
            "--output",
            &out("x.npy"),
        ],
        None,
        &["no-model", "not found"],
    );
    let pickled = dir.join("pickled");
    std::fs::create_dir(&pickled).unwrap();
    std::fs::write(pickled.join("pytorch_model.bin"), b"not really").unwrap();
    std::fs::write(pickled.join("config.json"), b"{}").unwrap();
    check(
        &[
            "encode",
            "--model",
            pickled.to_str().unwrap(),
            "--input",
            good,
            "--output",
            &out("x.npy"),
        ],
        None,
        &["pytorch_model.bin", "not supported"],
    );
    let empty_dir = dir.join("empty-model");
    std::fs::create_dir(&empty_dir).unwrap();
    check(
        &[
            "encode",
            "--model",
            empty_dir.to_str().unwrap(),
            "--input",
            good,
            "--output",
            &out("x.npy"),
        ],
        None,
        &["not a model folder"],
    );
    check(
        &[
            "encode",
            "--model",
            "someone/some-model",
            "--input",
            good,
            "--output",
            &out("x.npy"),
        ],
        None,
        &["someone/some-model", "hub"],
    );

    // A table that does not cover the tokenizer's ids.
    let small = dir.join("small-table");
    std::fs::create_dir(&small).unwrap();
    let src = committed_model("potion-base-8M-f16");
    std::fs::copy(src.join("tokenizer.json"), small.join("tokenizer.json")).unwrap();
    std::fs::copy(src.join("config.json"), small.join("config.json")).unwrap();
    let t = stk_core::Tensor::from_slice([10, 4], &[0.5f32; 40]).unwrap();
    stk_core::write_safetensors(small.join("model.safetensors"), &[("embeddings", &t)]).unwrap();
    check(
        &[
            "encode",
            "--model",
            small.to_str().unwrap(),
            "--input",
            good,
            "--output",
            &out("x.npy"),
        ],
        None,
        &["token ids up to 29527", "10 rows"],
    );

    // Bad arguments.
    check(
        &[
            "encode",
            "--model",
            model,
            "--input",
            good,
            "--output",
            &out("x.npy"),
            "--semantics",
            "bert",
        ],
        None,
        &["bert"],
    );
    check(
        &[
            "encode",
            "--model",
            model,
            "--input",
            good,
            "--output",
            &out("x.npy"),
            "--batch-size",
            "0",
        ],
        None,
        &["batch-size"],
    );
    check(
        &[
            "encode",
            "--model",
            model,
            "--input",
            good,
            "--output",
            &out("x.npy"),
            "--device",
            "tpu",
        ],
        None,
        &["tpu"],
    );
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
        let o = stk(
            &[
                "encode",
                "--model",
                model.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--quiet",
            ],
            None,
        );
        assert!(o.status.success(), "{}: {}", case.name, stderr(&o));
        let (dims, got) = read_output(&out);
        let want = SafetensorsFile::open(case.dir.join("expected.safetensors"))
            .unwrap()
            .get("expected")
            .unwrap();
        assert_eq!(dims, want.dims(), "{}", case.name);
        compare(&got, &want.to_f32_vec().unwrap(), 1e-4)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
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
