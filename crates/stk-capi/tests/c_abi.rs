//! libstk through C: compiles tests/c/stk_test.c (C11) and examples/cpp/encode.cpp (C++17)
//! with the system compilers against include/stk.h and the built libstk.so, runs them on
//! golden cases written from tests/golden, and checks that the library exports only `stk_`
//! symbols. A missing compiler, `nm` or library fails the test: nothing here is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use stk_core::{DType, SafetensorsFile, Tensor};

// The shared encode-option cases name the facade `stk`, as every other crate does; this
// crate's own library is `stk` too (a cdylib, not linked into its tests).
extern crate stk_facade as stk;
#[path = "../../../tests/encode_option_cases.rs"]
#[allow(dead_code)] // the library test uses the rest
mod option_cases;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `libstk.so`'s folder (`target/<profile>`), after building it: cargo builds a cdylib-only
/// library for nobody's tests, so the test builds it, with the profile this test was built
/// with (whose dependencies are built already).
fn lib_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("the test executable's path");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>/deps/")
                .to_path_buf();
            let profile = match dir.file_name().and_then(|n| n.to_str()) {
                Some("release") => "release",
                _ => "test",
            };
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            run(Command::new(cargo)
                .args(["build", "-p", "stk-capi", "--profile", profile])
                .env("CARGO_TARGET_DIR", dir.parent().expect("target/")));
            assert!(
                dir.join("libstk.so").is_file(),
                "{} was not built",
                dir.join("libstk.so").display()
            );
            dir
        })
        .clone()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed?)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn golden(case: &str) -> PathBuf {
    repo_root().join("tests/golden").join(case)
}

fn case_json(case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(golden(case).join("case.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn f32_bytes(t: &Tensor) -> Vec<u8> {
    t.to_f32_vec()
        .unwrap()
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::I32 => "i32",
        DType::I64 => "i64",
        other => panic!("no C dtype for {other}"),
    }
}

/// `values` as i32 little-endian bytes (the 32-bit variant of an i64 mask or offsets).
fn as_i32_bytes(t: &Tensor) -> Vec<u8> {
    t.to_i64_vec()
        .unwrap()
        .iter()
        .flat_map(|&v| (v as i32).to_le_bytes())
        .collect()
}

fn dims(d: &[usize]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The golden tolerance of an output dtype (tests/golden/README.md).
fn tolerance(expected: DType) -> f64 {
    match expected {
        DType::F16 => 2e-3,
        DType::BF16 => 1.6e-2,
        _ => 1e-5,
    }
}

/// Write pooling case `case` as `name` (and, with `narrow`, its mask or offsets as i32).
fn write_pool_case(data: &Path, case: &str, name: &str, narrow: bool) {
    let file = SafetensorsFile::open(golden(case).join("tensors.safetensors")).unwrap();
    let json = case_json(case);
    let tokens = file.get("token_embeddings").unwrap();
    let expected = file.get("expected").unwrap();
    let mut lines = vec![format!("dtype {}", dtype_name(tokens.dtype()))];
    let mut token_dims = tokens.dims().to_vec();
    if let Some(mask) = file.get_opt("attention_mask").unwrap() {
        let (bytes, dtype) = match narrow {
            true => (as_i32_bytes(&mask), DType::I32),
            false => (mask.bytes().to_vec(), mask.dtype()),
        };
        std::fs::write(data.join(format!("{name}.mask")), bytes).unwrap();
        lines.push(format!("mask_dims {}", dims(mask.dims())));
        lines.push(format!("mask_dtype {}", dtype_name(dtype)));
    }
    if let Some(cu) = file.get_opt("cu_seq_lens_q").unwrap() {
        let (bytes, dtype) = match narrow {
            true => (as_i32_bytes(&cu), DType::I32),
            false => (cu.bytes().to_vec(), cu.dtype()),
        };
        std::fs::write(data.join(format!("{name}.cu")), bytes).unwrap();
        lines.push(format!("cu_seq_lens_len {}", cu.numel()));
        lines.push(format!("cu_seq_lens_dtype {}", dtype_name(dtype)));
        token_dims = token_dims[token_dims.len() - 2..].to_vec(); // [1, N, D] → [N, D]
    }
    lines.push(format!("tokens_dims {}", dims(&token_dims)));
    let modes: Vec<&str> = json["pooling_mode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    lines.push(format!("modes {}", modes.join(" ")));
    if let (Some(p), false) = (
        json["prompt_length"].as_u64(),
        json["include_prompt"] == true,
    ) {
        lines.push(format!("prompt_length {p}"));
    }
    lines.push(format!("tolerance {}", tolerance(expected.dtype())));
    std::fs::write(data.join(format!("{name}.tokens")), tokens.bytes()).unwrap();
    std::fs::write(data.join(format!("{name}.expected")), f32_bytes(&expected)).unwrap();
    std::fs::write(data.join(format!("{name}.case")), lines.join("\n") + "\n").unwrap();
}

/// The golden case whose texts `encode.texts` holds.
const ENCODE_CASE: &str = "model2vec_potion-base-8M-f16";

/// The texts of a golden case.
fn golden_texts(case: &str) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(golden(case).join("texts.json")).unwrap())
        .unwrap()
}

/// The files stk_test.c reads (see its header comment).
fn write_cases(data: &Path) {
    let encode = ENCODE_CASE;
    let texts = golden_texts(encode);
    write_texts(&data.join("encode.texts"), &texts);
    let expected = SafetensorsFile::open(golden(encode).join("expected.safetensors"))
        .unwrap()
        .get("expected")
        .unwrap();
    assert_eq!(expected.dims(), [texts.len(), 256]);
    std::fs::write(data.join("encode.expected"), f32_bytes(&expected)).unwrap();
    let tol = case_json(encode)["tolerance"].as_f64().unwrap();
    std::fs::write(data.join("encode.case"), format!("tolerance {tol}\n")).unwrap();

    let padded = "pool_cls+max+mean_f16_5x17x96_right_prompt2";
    let varlen = "varlen_mean+mean_sqrt_len_tokens+weightedmean+lasttoken_bf16_prompt2";
    write_pool_case(data, padded, "padded", false);
    write_pool_case(data, padded, "padded_i32_mask", true);
    write_pool_case(data, varlen, "varlen", false);
    write_pool_case(data, varlen, "varlen_i32", true);

    let file = SafetensorsFile::open(golden("normalize_bf16").join("tensors.safetensors")).unwrap();
    let x = file.get("sentence_embedding").unwrap();
    let expected = file.get("expected").unwrap();
    std::fs::write(data.join("normalize.x"), x.bytes()).unwrap();
    std::fs::write(data.join("normalize.expected"), f32_bytes(&expected)).unwrap();
    let case = format!(
        "dtype {}\ndims {}\ntolerance {}\n",
        dtype_name(x.dtype()),
        dims(x.dims()),
        tolerance(expected.dtype())
    );
    std::fs::write(data.join("normalize.case"), case).unwrap();
}

/// The encode-option cases of `tests/fixtures/encode_options` (sentence-transformers 6.2) as
/// `opt.texts`, `opt.case` (their count) and per case `optK.case` (model folder, options, output dtype and
/// shape), `optK.expected` (the output bytes) and `optK.calibration` (f32 rows, when the case
/// calibrates). The precision numbers are the `STK_PRECISION_*` values.
fn write_option_cases(data: &Path) {
    use stk::{Elements, Precision};
    let (texts, _) = option_cases::texts();
    write_texts(&data.join("opt.texts"), &texts);
    let cases = option_cases::cases();
    // In the order of the STK_PRECISION_* values.
    let precisions = [
        Precision::Float32,
        Precision::Int8,
        Precision::Uint8,
        Precision::Binary,
        Precision::Ubinary,
    ];
    for (k, case) in cases.iter().enumerate() {
        let precision = precisions
            .iter()
            .position(|&p| p == case.precision)
            .unwrap();
        // The STK_DTYPE_* value of the output and its bytes.
        let (expected, rows, cols) = case.expected();
        let (dtype, size, bytes): (i32, usize, Vec<u8>) = match expected {
            Elements::F32(v) => (0, 4, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Elements::I8(v) => (5, 1, v.iter().map(|&b| b as u8).collect()),
            Elements::U8(v) => (6, 1, v),
            other => panic!("{}: unexpected output {other:?}", case.name()),
        };
        assert_eq!(bytes.len(), rows * cols * size);
        let mut lines = vec![
            format!("model {}", case.model_dir().display()),
            format!("truncate_dim {}", case.truncate_dim),
            format!("normalize {}", u8::from(case.normalize_embeddings)),
            format!("precision {precision}"),
            format!("dtype {dtype}"),
            format!("rows {rows}"),
            format!("cols {cols}"),
        ];
        if case.calibration {
            let (values, cal_rows, _) = case.f32_tensor(&format!("{}_cal", case.base()));
            lines.push(format!("calibration_rows {cal_rows}"));
            let cal: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
            std::fs::write(data.join(format!("opt{k}.calibration")), cal).unwrap();
        }
        std::fs::write(data.join(format!("opt{k}.expected")), bytes).unwrap();
        std::fs::write(data.join(format!("opt{k}.case")), lines.join("\n") + "\n").unwrap();
    }
    std::fs::write(data.join("opt.case"), format!("count {}\n", cases.len())).unwrap();
}

/// model2vec's `encode_as_sequence` through the library, for the C test to compare with:
/// `seqK.case` (model folder, `max_length` or -1 for none), `seqK.offsets` (u64 row offsets)
/// and `seqK.expected` (f32 rows) over the texts of `encode.texts`; `seq.case` their count.
fn write_sequence_cases(data: &Path) {
    let texts = golden_texts(ENCODE_CASE);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let models = ["potion-base-8M-int8-vq2048-d128", "stk-unigram-8k-64d-int8"];
    let cases = models
        .iter()
        .flat_map(|m| [(m, None), (m, Some(4))])
        .collect::<Vec<_>>();
    for (k, (name, max_length)) in cases.iter().enumerate() {
        let folder = repo_root().join("models").join(name);
        let model = stk::Model::load(&folder).unwrap();
        let rows = model.encode_as_sequence(&texts, *max_length).unwrap();
        assert!(
            rows.offsets().last().unwrap() > &texts.len(),
            "{name}: few tokens"
        );
        let offsets: Vec<u8> = rows
            .offsets()
            .iter()
            .flat_map(|&o| (o as u64).to_le_bytes())
            .collect();
        let values: Vec<u8> = rows
            .as_slice()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let limit = max_length.map_or(-1, |m| m as i64);
        let case = format!("model {}\nmax_length {limit}\n", folder.display());
        std::fs::write(data.join(format!("seq{k}.case")), case).unwrap();
        std::fs::write(data.join(format!("seq{k}.offsets")), offsets).unwrap();
        std::fs::write(data.join(format!("seq{k}.expected")), values).unwrap();
    }
    std::fs::write(data.join("seq.case"), format!("count {}\n", cases.len())).unwrap();
}

/// `texts` as stk_test.c reads them: a "LENGTH\nBYTES\n" record each.
fn write_texts(path: &Path, texts: &[String]) {
    let mut records = Vec::new();
    for t in texts {
        records.extend_from_slice(format!("{}\n", t.len()).as_bytes());
        records.extend_from_slice(t.as_bytes());
        records.push(b'\n');
    }
    std::fs::write(path, records).unwrap();
}

#[test]
fn the_c_program_passes_on_golden_cases_and_bad_arguments() {
    let root = repo_root();
    let lib = lib_dir();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_cases(&data);
    write_option_cases(&data);
    write_sequence_cases(&data);
    let exe = tmp.path().join("stk_test");
    run(Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o"])
        .arg(&exe)
        .arg(root.join("tests/c/stk_test.c"))
        .arg("-I")
        .arg(root.join("include"))
        .arg("-L")
        .arg(&lib)
        .args(["-lstk", "-lm"]));
    let cuda = if stk_cuda::driver_present() {
        "cuda"
    } else {
        "no-cuda"
    };
    let output = run(Command::new(&exe)
        .arg(&data)
        .arg(root.join("models/potion-base-8M-f16"))
        .arg(cuda)
        .env("LD_LIBRARY_PATH", &lib));
    println!("{output}");
    assert!(output.contains("PASSED: 0 failed"), "{output}");
}

#[test]
fn the_cpp_example_builds_and_prints_similarities() {
    let root = repo_root();
    let lib = lib_dir();
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("encode");
    run(Command::new("c++")
        .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(root.join("examples/cpp/encode.cpp"))
        .arg("-I")
        .arg(root.join("include"))
        .arg("-L")
        .arg(&lib)
        .arg("-lstk"));
    let output = run(Command::new(&exe).env("LD_LIBRARY_PATH", &lib));
    // Each sentence is most similar to itself (cosine 1 of a normalized embedding), and the two
    // sentences about cats are closer to each other than to the one about interest rates.
    let rows: Vec<Vec<f64>> = output
        .lines()
        .filter(|l| l.starts_with('['))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{output}");
    for (i, row) in rows.iter().enumerate() {
        assert!((row[i] - 1.0).abs() < 1e-3, "{output}");
    }
    assert!(
        rows[0][1] > rows[0][2] && rows[0][1] > rows[1][2],
        "{output}"
    );
}

/// The example linked with `libstk.a` (as README says) prints what the shared build prints.
#[test]
fn the_static_library_links_and_matches_the_shared_one() {
    let root = repo_root();
    let lib = lib_dir();
    let tmp = tempfile::tempdir().unwrap();
    let (shared, fixed) = (tmp.path().join("shared"), tmp.path().join("static"));
    let compile = |exe: &Path, libs: &[&std::ffi::OsStr]| {
        run(Command::new("c++")
            .args(["-std=c++17", "-o"])
            .arg(exe)
            .arg(root.join("examples/cpp/encode.cpp"))
            .arg("-I")
            .arg(root.join("include"))
            .args(libs));
    };
    compile(&shared, &["-L".as_ref(), lib.as_os_str(), "-lstk".as_ref()]);
    let archive = lib.join("libstk.a");
    compile(
        &fixed,
        &[
            archive.as_os_str(),
            "-lpthread".as_ref(),
            "-ldl".as_ref(),
            "-lm".as_ref(),
        ],
    );
    let static_output = run(Command::new(&fixed).env_clear());
    assert_eq!(
        static_output,
        run(Command::new(&shared).env("LD_LIBRARY_PATH", &lib))
    );
}

#[test]
fn the_shared_library_exports_only_stk_symbols() {
    let lib = lib_dir().join("libstk.so");
    let output = run(Command::new("nm").args(["-D", "--defined-only"]).arg(&lib));
    let symbols: Vec<&str> = output
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for wanted in [
        "stk_model_load",
        "stk_model_encode",
        "stk_pool",
        "stk_pool_device",
    ] {
        assert!(
            symbols.contains(&wanted),
            "{wanted} is not exported:\n{output}"
        );
    }
    let foreign: Vec<&&str> = symbols.iter().filter(|s| !s.starts_with("stk_")).collect();
    assert!(foreign.is_empty(), "non-stk symbols exported: {foreign:?}");
}
