//! `stk encode --truncate-dim K --precision P [--normalize-embeddings] [--calibration FILE]`
//! end to end: every sentence-transformers 6.2 case of `tests/fixtures/encode_options` through
//! the binary into `.npy`, `.safetensors` and `.jsonl` (which carry the element type), and the
//! option combinations it must refuse without leaving a file.

#[path = "../../../tests/encode_option_cases.rs"]
#[allow(dead_code)] // the library test uses the rest
mod option_cases;

use std::path::Path;
use std::process::Output;

use option_cases::{cases, texts, OptionCase};
use stk::{Elements, Precision};
use stk_tests::encode_args;

const STK: &str = env!("CARGO_BIN_EXE_stk");

fn stk<A: AsRef<std::ffi::OsStr>>(args: &[A], stdin: Option<&[u8]>) -> Output {
    stk_tests::run_stk(STK, args, stdin)
}

fn path_arg(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Elements of `descr`/`dtype` from little-endian bytes.
fn elements(kind: &str, body: &[u8]) -> Elements {
    match kind {
        "<f4" | "F32" => Elements::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        "<f2" | "F16" => Elements::F16(
            body.chunks_exact(2)
                .map(|c| stk_core::f16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        "|i1" | "I8" => Elements::I8(body.iter().map(|&b| b as i8).collect()),
        "|u1" | "U8" => Elements::U8(body.to_vec()),
        other => panic!("unexpected element type {other}"),
    }
}

/// `[rows, cols]` and the elements of an output file; `precision` says how to read `.jsonl`.
fn read_output(path: &Path, precision: Precision) -> (Vec<usize>, Elements) {
    let bytes = std::fs::read(path).unwrap();
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => {
            let (descr, dims, body) = stk_tests::npy_parts(&bytes);
            (dims, elements(descr, body))
        }
        Some("safetensors") => {
            // Read by hand: stk's reader has no U8.
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
            let t = &header["embeddings"];
            let dims: Vec<usize> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let [start, end] = [0, 1].map(|i| t["data_offsets"][i].as_u64().unwrap() as usize);
            let dtype = t["dtype"].as_str().unwrap();
            (dims, elements(dtype, &bytes[8 + n + start..8 + n + end]))
        }
        Some("jsonl") => {
            let rows: Vec<Vec<serde_json::Value>> = std::str::from_utf8(&bytes)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let cols = rows.first().map_or(0, Vec::len);
            let values = rows.concat();
            let ints = || values.iter().map(|v| v.as_i64().expect("an integer"));
            let got = match precision {
                Precision::Float32 => {
                    Elements::F32(values.iter().map(|v| v.as_f64().unwrap() as f32).collect())
                }
                Precision::Int8 | Precision::Binary => {
                    Elements::I8(ints().map(|v| i8::try_from(v).unwrap()).collect())
                }
                Precision::Uint8 | Precision::Ubinary => {
                    Elements::U8(ints().map(|v| u8::try_from(v).unwrap()).collect())
                }
            };
            (vec![rows.len(), cols], got)
        }
        other => panic!("unexpected output {other:?}"),
    }
}

/// Matches sentence-transformers: f32 within 1e-5, integers exactly.
fn check(case: &OptionCase, got: &Elements, dims: &[usize], how: &str) {
    let (want, rows, cols) = case.expected();
    assert_eq!(dims, [rows, cols], "{} ({how})", case.name());
    match (got, &want) {
        (Elements::F32(g), Elements::F32(w)) => {
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{} ({how}) [{i}]: {a} vs {b}",
                    case.name()
                );
            }
        }
        _ => option_cases::assert_same_ints(got, &want, &format!("{} ({how})", case.name())),
    }
}

/// Writes `values` (`[rows, cols]` f32) as an NPY file.
fn write_npy(path: &Path, values: &[f32], rows: usize, cols: usize) {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header);
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn every_case_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (texts, calibration_texts) = texts();
    let input = tmp.path().join("texts.json");
    std::fs::write(&input, serde_json::to_string(&texts).unwrap()).unwrap();
    let calibration_json = tmp.path().join("calibration.json");
    std::fs::write(
        &calibration_json,
        serde_json::to_string(&calibration_texts).unwrap(),
    )
    .unwrap();
    let formats = ["npy", "safetensors", "jsonl"];
    let all = cases();
    for (i, case) in all.iter().enumerate() {
        let format = formats[i % 3];
        let out = tmp.path().join(format!("out{i}.{format}"));
        let k = case.truncate_dim.to_string();
        let mut args = encode_args(
            case.model_dir(),
            &input,
            &out,
            &[
                "--semantics",
                "sentence-transformers",
                "--truncate-dim",
                &k,
                "--precision",
                case.precision.as_str(),
                "--batch-size",
                "7",
            ],
        );
        if case.normalize_embeddings {
            args.push("--normalize-embeddings".into());
        }
        // Calibrated cases: from the calibration texts, or (every other case) from their
        // embeddings in an NPY file.
        let calibration_npy = tmp.path().join(format!("cal{i}.npy"));
        let said = if case.calibration {
            if i % 2 == 0 {
                args.extend(["--calibration".into(), path_arg(&calibration_json)]);
                format!("ranges from {} calibration texts", calibration_texts.len())
            } else {
                let (values, rows, cols) = case.f32_tensor(&format!("{}_cal", case.base()));
                write_npy(&calibration_npy, &values, rows, cols);
                args.extend(["--calibration".into(), path_arg(&calibration_npy)]);
                format!("ranges from {rows} calibration embeddings")
            }
        } else {
            format!("ranges from a first pass over {} texts", texts.len())
        };
        let output = stk(&args, None);
        assert!(
            output.status.success(),
            "{}: {}",
            case.name(),
            stderr(&output)
        );
        let message = stderr(&output);
        assert_eq!(
            message.contains(&said),
            case.precision.needs_ranges(),
            "{}: {message}",
            case.name()
        );
        let (dims, got) = read_output(&out, case.precision);
        check(case, &got, &dims, format);
    }
}

/// `--output-dtype f16` still works, now with truncation, through the same writer.
#[test]
fn f16_output_with_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let (texts, _) = texts();
    let input = tmp.path().join("texts.txt");
    std::fs::write(&input, texts.join("\n")).unwrap();
    let case = cases()
        .into_iter()
        .find(|c| c.precision == Precision::Float32 && !c.normalize_embeddings)
        .unwrap();
    for format in ["npy", "safetensors"] {
        let out = tmp.path().join(format!("f16.{format}"));
        let k = case.truncate_dim.to_string();
        let extra = [
            "--semantics",
            "sentence-transformers",
            "--truncate-dim",
            &k,
            "--output-dtype",
            "f16",
        ];
        let output = stk(&encode_args(case.model_dir(), &input, &out, &extra), None);
        assert!(output.status.success(), "{}", stderr(&output));
        let (dims, got) = read_output(&out, Precision::Float32);
        let Elements::F16(values) = got else {
            panic!("{format}: not f16")
        };
        let (want, rows, cols) = case.expected();
        assert_eq!(dims, [rows, cols]);
        let Elements::F32(want) = want else {
            unreachable!()
        };
        for (g, w) in values.iter().zip(&want) {
            assert_eq!(*g, stk_core::f16::from_f32(*w), "{format}");
        }
    }
}

/// Bad option combinations: a non-zero exit, a message naming the problem, no file.
#[test]
fn bad_options_leave_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "one text\nanother text\n").unwrap();
    let narrow = tmp.path().join("narrow.npy");
    write_npy(&narrow, &[0.0; 20], 2, 10);
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let model = option_cases::repo_root().join("models/potion-base-8M-int8-vq2048-d128");
    let inp = input.to_str().unwrap();
    let table: &[(&[&str], &str)] = &[
        (&["--truncate-dim", "0"], "truncate_dim 0 is out of range"),
        (&["--truncate-dim", "129"], "expected 1..=128"),
        (&["--truncate-dim", "x"], "--truncate-dim"),
        (&["--precision", "fp8"], "unknown precision `fp8`"),
        (
            &[
                "--precision",
                "int8",
                "--truncate-dim",
                "64",
                "--calibration",
                narrow.to_str().unwrap(),
            ],
            "calibration width mismatch",
        ),
        (
            &[
                "--precision",
                "binary",
                "--calibration",
                narrow.to_str().unwrap(),
            ],
            "precision binary has none",
        ),
        (
            &[
                "--precision",
                "uint8",
                "--calibration",
                empty.to_str().unwrap(),
            ],
            "holds no calibration texts",
        ),
        (
            &[
                "--precision",
                "int8",
                "--calibration",
                "/nonexistent/cal.npy",
            ],
            "/nonexistent/cal.npy",
        ),
        (
            &["--precision", "int8", "--output-dtype", "f16"],
            "applies to float32 precision only",
        ),
    ];
    for (i, (extra, message)) in table.iter().enumerate() {
        let out = tmp.path().join(format!("bad{i}.npy"));
        let output = stk(&encode_args(&model, inp, &out, extra), None);
        let e = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{extra:?}: {e}");
        assert!(e.contains(message), "{extra:?}: {e}");
        assert!(!e.contains("panicked"), "{extra:?}: {e}");
        assert!(!out.exists(), "{extra:?} left {}", out.display());
    }
    // An empty input is not an error: zero int8 rows.
    let out = tmp.path().join("empty.npy");
    let extra = ["--precision", "int8", "--truncate-dim", "16"];
    let output = stk(&encode_args(&model, &empty, &out, &extra), None);
    assert!(output.status.success(), "{}", stderr(&output));
    let (dims, got) = read_output(&out, Precision::Int8);
    assert_eq!((dims, got), (vec![0, 16], Elements::I8(Vec::new())));
    // int8 from standard input needs calibration: stdin cannot be read twice.
    let out = tmp.path().join("stdin.npy");
    let output = stk(
        &encode_args(&model, "-", &out, &["--precision", "int8"]),
        Some(b"a\nb\n"),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("standard input"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists());
}
