//! Bad input through the `stk` binary: every case must end with exit code 1 (a panic is 101, a
//! clap usage error would be 2), print a specific `error` line on stderr, and leave the output
//! folder as it was: no output file, no temporary file, and an output that existed before the
//! run untouched. Empty input is not an error: it gives zero rows.
//!
//! Library-level counterparts (error variants) are in `tests/bad_input.rs`.

#[path = "../../../tests/lib.rs"]
#[allow(dead_code)]
mod golden;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use golden::repo_root;
use stk_core::{write_safetensors, DType, SafetensorsFile, Tensor};
use tempfile::TempDir;

/// Smallest committed static model (int8 table, mapping, weights).
const SMALL_STATIC: &str = "models/potion-base-8M-int8-vq2048-d128";

fn run_stk(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stk"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the stk binary");
    if let Some(bytes) = stdin {
        // The child may fail before reading everything: a broken pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(bytes);
    }
    child.wait_with_output().unwrap()
}

/// A scratch folder with an `out/` folder that must stay as it is after a failing run.
struct Scratch {
    tmp: TempDir,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("out")).unwrap();
        // An output left by an earlier run: a failing run must not replace or remove it.
        std::fs::write(
            tmp.path().join("out").join("earlier.npy"),
            b"earlier result",
        )
        .unwrap();
        Scratch { tmp }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
    fn out(&self, name: &str) -> String {
        self.s(&format!("out/{name}"))
    }
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    }
    /// A copy of a committed folder under `name`.
    fn copy(&self, rel: &str, name: &str) -> PathBuf {
        let to = self.path(name);
        copy_dir(&repo_root().join(rel), &to);
        to
    }
    fn out_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Run `stk args` in `scratch` and check that it fails the way bad input must.
#[track_caller]
fn fails(scratch: &Scratch, args: &[&str], stdin: Option<&[u8]>, needles: &[&str]) {
    let o = run_stk(args, stdin);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stk {args:?}: exit {:?}, stderr:\n{err}",
        o.status
    );
    assert!(!err.contains("panicked"), "stk {args:?} panicked:\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("stk: error:") || l.starts_with("error:"))
        .unwrap_or_else(|| panic!("stk {args:?}: no error line in:\n{err}"));
    // Shown with `--nocapture`, to review the wording of every message.
    println!("{line}");
    for n in needles {
        assert!(
            err.contains(n),
            "stk {args:?}: {n:?} not in {line:?}\n{err}"
        );
    }
    assert_eq!(
        scratch.out_entries(),
        ["earlier.npy"],
        "stk {args:?} left files in the output folder"
    );
    assert_eq!(
        std::fs::read(scratch.path("out/earlier.npy")).unwrap(),
        b"earlier result",
        "stk {args:?} changed an existing output"
    );
    assert!(o.stdout.is_empty(), "stk {args:?} printed to stdout");
}

fn small_static() -> String {
    repo_root().join(SMALL_STATIC).to_str().unwrap().to_string()
}

/// `stk encode --model MODEL --input INPUT --output OUT` failing with `needles`.
#[track_caller]
fn encode_fails(scratch: &Scratch, model: &str, input: &str, output: &str, needles: &[&str]) {
    fails(
        scratch,
        &[
            "encode", "--model", model, "--input", input, "--output", output, "--quiet",
        ],
        None,
        needles,
    );
}

/// A copy of the small static model whose `model.safetensors` holds `tensors`.
fn static_with(scratch: &Scratch, name: &str, tensors: &[(&str, Tensor)]) -> String {
    let dir = scratch.copy(SMALL_STATIC, name);
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    write_safetensors(dir.join("model.safetensors"), &refs).unwrap();
    dir.to_str().unwrap().to_string()
}

fn original_tensor(name: &str) -> Tensor {
    let f =
        SafetensorsFile::open(repo_root().join(SMALL_STATIC).join("model.safetensors")).unwrap();
    let t = f.get(name).unwrap();
    Tensor::from_bytes(t.dims().to_vec(), t.dtype(), t.bytes()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// encode: input texts

#[test]
fn encode_input_missing_directory_or_unreadable() {
    let s = Scratch::new();
    let model = small_static();
    encode_fails(
        &s,
        &model,
        &s.s("nope.txt"),
        &s.out("x.npy"),
        &["nope.txt", "No such file"],
    );
    std::fs::create_dir(s.path("texts_dir.txt")).unwrap();
    encode_fails(
        &s,
        &model,
        &s.s("texts_dir.txt"),
        &s.out("x.npy"),
        &["texts_dir.txt"],
    );
    std::fs::create_dir(s.path("texts_dir.json")).unwrap();
    encode_fails(
        &s,
        &model,
        &s.s("texts_dir.json"),
        &s.out("x.npy"),
        &["texts_dir.json"],
    );

    // Permission 000: only meaningful when not running as root (root reads it anyway).
    use std::os::unix::fs::PermissionsExt;
    let locked = s.write("locked.txt", "a\n");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&locked).is_err() {
        encode_fails(
            &s,
            &model,
            &locked,
            &s.out("x.npy"),
            &["locked.txt", "Permission denied"],
        );
    } else {
        eprintln!("running as root: permission 000 does not stop reading; case not applicable");
    }
}

#[test]
fn encode_input_not_utf8_names_the_line() {
    let s = Scratch::new();
    let model = small_static();
    // After 30 good lines, so that batches were already written when the bad line comes.
    let mut bytes = b"one\ntwo\nthree\n".repeat(10);
    bytes.extend_from_slice(b"caf\xe9\nlast\n");
    let bad = s.write("latin1.txt", &bytes);
    for ext in ["npy", "safetensors", "jsonl"] {
        fails(
            &s,
            &[
                "encode",
                "--model",
                &model,
                "--input",
                &bad,
                "--output",
                &s.out(&format!("x.{ext}")),
                "--batch-size",
                "4",
                "--quiet",
            ],
            None,
            &["latin1.txt", "line 31", "UTF-8"],
        );
    }
    fails(
        &s,
        &[
            "encode",
            "--model",
            &model,
            "--input",
            "-",
            "--output",
            &s.out("x.npy"),
            "--quiet",
        ],
        Some(b"fine\n\xff\xfe\n"),
        &["<stdin>", "line 2", "UTF-8"],
    );
    // Invalid UTF-8 inside a JSON string.
    let json = s.write("bad.json", b"[\"ok\", \"caf\xe9\"]");
    encode_fails(&s, &model, &json, &s.out("x.npy"), &["bad.json"]);
}

#[test]
fn encode_json_input_not_an_array_of_strings() {
    let s = Scratch::new();
    let model = small_static();
    for (name, content) in [
        ("object.json", r#"{"texts": ["a"]}"#),
        ("number.json", r#"["a", 3]"#),
        ("nested.json", r#"[["a"]]"#),
        ("null.json", r#"["a", null]"#),
        ("truncated.json", r#"["a", "b"#),
        ("trailing.json", r#"["a"] ["b"]"#),
        ("empty_file.json", ""),
    ] {
        let p = s.write(name, content);
        encode_fails(
            &s,
            &model,
            &p,
            &s.out("x.npy"),
            &[name, "JSON array of strings"],
        );
    }
}

#[test]
fn encode_empty_input_is_zero_rows() {
    let s = Scratch::new();
    let model = small_static();
    for (name, content) in [
        ("empty.txt", ""),
        ("empty.json", "[]"),
        ("spaces.json", " [ ] \n"),
    ] {
        let input = s.write(name, content);
        let out = s.path(&format!("{name}.safetensors"));
        let o = run_stk(
            &[
                "encode",
                "--model",
                &model,
                "--input",
                &input,
                "--output",
                out.to_str().unwrap(),
                "--quiet",
            ],
            None,
        );
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let t = SafetensorsFile::open(&out)
            .unwrap()
            .get("embeddings")
            .unwrap();
        assert_eq!(t.dims(), [0, 128], "{name}");
    }
    let out = s.path("stdin.npy");
    let o = run_stk(
        &[
            "encode",
            "--model",
            &model,
            "--input",
            "-",
            "--output",
            out.to_str().unwrap(),
            "--quiet",
        ],
        Some(b""),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file());
}

// ---------------------------------------------------------------------------------------------
// encode: outputs and arguments

#[test]
fn encode_output_folder_missing_is_a_directory_or_unknown_extension() {
    let s = Scratch::new();
    let model = small_static();
    let input = s.write("t.txt", "hello\n");
    encode_fails(
        &s,
        &model,
        &input,
        &s.out("no/such/dir/x.npy"),
        &["does not exist"],
    );
    std::fs::create_dir(s.path("out/as_dir.npy")).unwrap();
    let o = run_stk(
        &[
            "encode",
            "--model",
            &model,
            "--input",
            &input,
            "--output",
            &s.out("as_dir.npy"),
            "--quiet",
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(s.path("out/as_dir.npy").is_dir());
    std::fs::remove_dir(s.path("out/as_dir.npy")).unwrap();
    assert_eq!(s.out_entries(), ["earlier.npy"], "temporary file left");
    encode_fails(
        &s,
        &model,
        &input,
        &s.out("x.csv"),
        &["x.csv", "unknown extension"],
    );
}

#[test]
fn encode_bad_arguments() {
    let s = Scratch::new();
    let model = small_static();
    let input = s.write("t.txt", "hello\n");
    let out = s.out("x.npy");
    let base = [
        "encode", "--model", &model, "--input", &input, "--output", &out, "--quiet",
    ];
    for (extra, needle) in [
        (&["--device", "tpu"][..], "tpu"),
        (&["--device", "cuda:x"][..], "cuda:x"),
        (&["--semantics", "bert"][..], "bert"),
        (&["--batch-size", "0"][..], "batch-size"),
        (&["--batch-size", "-5"][..], "-5"),
        (&["--max-length", "-1"][..], "-1"),
        (&["--no-such-flag"][..], "--no-such-flag"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        fails(&s, &args, None, &[needle]);
    }
    fails(&s, &["no-such-command"], None, &["no-such-command"]);
}

// ---------------------------------------------------------------------------------------------
// encode: model folders

#[test]
fn encode_model_folder_missing_or_not_a_folder() {
    let s = Scratch::new();
    let input = s.write("t.txt", "hello\n");
    encode_fails(
        &s,
        &s.s("no-model"),
        &input,
        &s.out("x.npy"),
        &["no-model", "not found"],
    );
    encode_fails(
        &s,
        &input,
        &input,
        &s.out("x.npy"),
        &["t.txt", "not a model folder"],
    );
    std::fs::create_dir(s.path("empty")).unwrap();
    encode_fails(
        &s,
        &s.s("empty"),
        &input,
        &s.out("x.npy"),
        &["not a model folder"],
    );
}

#[test]
fn encode_model_safetensors_truncated_or_absurd_header() {
    let s = Scratch::new();
    let input = s.write("t.txt", "hello\n");
    let dir = s.copy(SMALL_STATIC, "truncated");
    let w = dir.join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 3]).unwrap();
    encode_fails(
        &s,
        dir.to_str().unwrap(),
        &input,
        &s.out("x.npy"),
        &["model.safetensors", "truncated"],
    );

    let dir = s.copy(SMALL_STATIC, "absurd");
    let w = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&w, &bytes).unwrap();
    encode_fails(
        &s,
        dir.to_str().unwrap(),
        &input,
        &s.out("x.npy"),
        &["model.safetensors", "header length"],
    );

    let dir = s.copy(SMALL_STATIC, "as_dir");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::create_dir(dir.join("model.safetensors")).unwrap();
    let o = run_stk(
        &[
            "encode",
            "--model",
            dir.to_str().unwrap(),
            "--input",
            &input,
            "--output",
            &s.out("x.npy"),
            "--quiet",
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(s.out_entries(), ["earlier.npy"]);
}

#[test]
fn encode_model_tensors_missing_wrong_dtype_or_shape() {
    let s = Scratch::new();
    let input = s.write("t.txt", "hello\n");
    let out = s.out("x.npy");
    let m = static_with(
        &s,
        "no_table",
        &[
            ("mapping", original_tensor("mapping")),
            ("weights", original_tensor("weights")),
        ],
    );
    encode_fails(
        &s,
        &m,
        &input,
        &out,
        &["embeddings", "not found", "mapping, weights"],
    );
    let m = static_with(
        &s,
        "i32_table",
        &[
            (
                "embeddings",
                Tensor::zeros([2048, 128], DType::I32).unwrap(),
            ),
            ("mapping", original_tensor("mapping")),
            ("weights", original_tensor("weights")),
        ],
    );
    encode_fails(&s, &m, &input, &out, &["embedding table", "i32"]);
    let m = static_with(
        &s,
        "flat_table",
        &[
            (
                "embeddings",
                Tensor::zeros([2048 * 128], DType::I8).unwrap(),
            ),
            ("mapping", original_tensor("mapping")),
            ("weights", original_tensor("weights")),
        ],
    );
    encode_fails(&s, &m, &input, &out, &["embedding table", "rank 2"]);
}

#[test]
fn encode_model_ids_past_the_table() {
    let s = Scratch::new();
    let input = s.write("t.txt", "hello\n");
    let out = s.out("x.npy");
    // mapping entry past the 2048 table rows.
    let mut mapping = original_tensor("mapping").to_i64_vec().unwrap();
    mapping[100] = 5000;
    let mapping: Vec<i32> = mapping.into_iter().map(|x| x as i32).collect();
    let m = static_with(
        &s,
        "mapping_past",
        &[
            ("embeddings", original_tensor("embeddings")),
            (
                "mapping",
                Tensor::from_vec([mapping.len()], mapping).unwrap(),
            ),
            ("weights", original_tensor("weights")),
        ],
    );
    encode_fails(&s, &m, &input, &out, &["mapping[100] = 5000", "2048 rows"]);
    // A table too short for the tokenizer's ids.
    let m = static_with(
        &s,
        "short_table",
        &[("embeddings", Tensor::zeros([50, 4], DType::F32).unwrap())],
    );
    encode_fails(&s, &m, &input, &out, &["token ids up to 29527", "50 rows"]);
}

#[test]
fn encode_model_json_files_not_json_or_wrong_shape() {
    let s = Scratch::new();
    let input = s.write("t.txt", "hello\n");
    let out = s.out("x.npy");
    for (i, (file, content, needles)) in [
        ("config.json", "{ nope", &["config.json"][..]),
        (
            "config.json",
            r#"{"normalize": "sometimes"}"#,
            &["config.json", "boolean"][..],
        ),
        (
            "tokenizer.json",
            "not json at all",
            &["tokenizer.json", "JSON"][..],
        ),
        (
            "tokenizer.json",
            r#"{"version": "1.0"}"#,
            &["tokenizer.json", "`model`"][..],
        ),
        (
            "tokenizer.json",
            r#"{"model": {"type": "Imaginary"}}"#,
            &["tokenizer.json"][..],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = s.copy(SMALL_STATIC, &format!("json{i}"));
        std::fs::write(dir.join(file), content).unwrap();
        encode_fails(&s, dir.to_str().unwrap(), &input, &out, needles);
    }
    // modules.json is read for sentence-transformers semantics.
    for (i, content) in [
        "[{",
        r#"{"type": "StaticEmbedding"}"#,
        "[]",
        r#"[{"path": 3}]"#,
    ]
    .into_iter()
    .enumerate()
    {
        let dir = s.copy(SMALL_STATIC, &format!("modules{i}"));
        std::fs::write(dir.join("modules.json"), content).unwrap();
        fails(
            &s,
            &[
                "encode",
                "--model",
                dir.to_str().unwrap(),
                "--semantics",
                "sentence-transformers",
                "--input",
                &input,
                "--output",
                &out,
                "--quiet",
            ],
            None,
            &["modules.json"],
        );
    }
}

#[test]
fn encode_pipeline_folder_inconsistencies() {
    let s = Scratch::new();
    let input = s.write("t.txt", "hello world\n");
    let out = s.out("x.npy");
    let edit = |dir: &Path, file: &str, from: &str, to: &str| {
        let p = dir.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} lacks {from}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    };
    let dir = s.copy("tests/golden/wordemb_mean/model", "unknown_module");
    edit(&dir, "modules.json", "pooling.Pooling", "pooling.Pooling2");
    encode_fails(
        &s,
        dir.to_str().unwrap(),
        &input,
        &out,
        &["Pooling2", "unsupported module type"],
    );

    let dir = s.copy("tests/golden/wordemb_mean/model", "unknown_mode");
    edit(&dir, "1_Pooling/config.json", "\"mean\"", "\"median\"");
    encode_fails(
        &s,
        dir.to_str().unwrap(),
        &input,
        &out,
        &["median", "unknown pooling mode"],
    );

    let dir = s.copy("tests/golden/cnn_max/model", "cnn_width");
    edit(
        &dir,
        "1_CNN/cnn_config.json",
        "\"in_embedding_dimension\": 64",
        "\"in_embedding_dimension\": 63",
    );
    encode_fails(&s, dir.to_str().unwrap(), &input, &out, &["1_CNN", "63"]);

    let dir = s.copy("tests/golden/lstm_mean/model", "lstm_layers");
    edit(
        &dir,
        "1_LSTM/lstm_config.json",
        "\"num_layers\": 2",
        "\"num_layers\": 4",
    );
    encode_fails(&s, dir.to_str().unwrap(), &input, &out, &["1_LSTM", "l2"]);

    let dir = s.copy("tests/golden/wordemb_mean/model", "short_table");
    let t = Tensor::zeros([5, 64], DType::F32).unwrap();
    write_safetensors(dir.join("model.safetensors"), &[("emb_layer.weight", &t)]).unwrap();
    encode_fails(&s, dir.to_str().unwrap(), &input, &out, &["1019", "5 rows"]);
}

// ---------------------------------------------------------------------------------------------
// pool / normalize / layer-pool

/// Write a safetensors input holding `tensors`.
fn st_input(s: &Scratch, name: &str, tensors: &[(&str, Tensor)]) -> String {
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let p = s.path(name);
    write_safetensors(&p, &refs).unwrap();
    p.to_str().unwrap().to_string()
}

fn tokens(n: usize, d: usize) -> Tensor {
    Tensor::from_vec([1, n, d], (0..n * d).map(|i| i as f32).collect::<Vec<_>>()).unwrap()
}

#[test]
fn pool_bad_files() {
    let s = Scratch::new();
    let out = s.out("p.safetensors");
    let pool = |input: &str, extra: &[&str], needles: &[&str]| {
        let mut args = vec!["pool", "--input", input, "--output", &out];
        args.extend_from_slice(extra);
        fails(&s, &args, None, needles);
    };
    pool(
        &s.s("missing.safetensors"),
        &[],
        &["missing.safetensors", "No such file"],
    );
    pool(s.tmp.path().to_str().unwrap(), &[], &["directory"]);
    let trunc = s.write(
        "trunc.safetensors",
        &std::fs::read(repo_root().join("tests/golden/varlen_mean_f32/tensors.safetensors"))
            .unwrap()[..100],
    );
    pool(&trunc, &[], &["trunc.safetensors"]);
    let mut absurd = 1u64.wrapping_shl(62).to_le_bytes().to_vec();
    absurd.extend_from_slice(b"{}");
    pool(
        &s.write("absurd.safetensors", absurd),
        &[],
        &["absurd.safetensors", "header length"],
    );
    let no_tokens = st_input(
        &s,
        "no_tokens.safetensors",
        &[("attention_mask", Tensor::zeros([1, 3], DType::I64).unwrap())],
    );
    pool(
        &no_tokens,
        &[],
        &["token_embeddings", "not found", "attention_mask"],
    );
    let ints = st_input(
        &s,
        "ints.safetensors",
        &[(
            "token_embeddings",
            Tensor::zeros([1, 3, 4], DType::I32).unwrap(),
        )],
    );
    pool(&ints, &[], &["token_embeddings", "i32"]);
    let rank2 = st_input(
        &s,
        "rank2.safetensors",
        &[(
            "token_embeddings",
            Tensor::zeros([3, 4], DType::F32).unwrap(),
        )],
    );
    pool(&rank2, &[], &["token_embeddings"]);
    let bad_mask = st_input(
        &s,
        "mask.safetensors",
        &[
            ("token_embeddings", tokens(3, 4)),
            // A batch dimension that differs (a different T is allowed: the reference then
            // counts every position).
            (
                "attention_mask",
                Tensor::from_vec([2, 3], vec![1i64; 6]).unwrap(),
            ),
        ],
    );
    pool(&bad_mask, &[], &["attention_mask", "[2, 3]"]);
    let mask_value = st_input(
        &s,
        "mask_value.safetensors",
        &[
            ("token_embeddings", tokens(3, 4)),
            (
                "attention_mask",
                Tensor::from_vec([1, 3], vec![1i64, 7, 0]).unwrap(),
            ),
        ],
    );
    pool(&mask_value, &[], &["attention_mask", "7"]);
}

#[test]
fn pool_bad_cu_seq_lens() {
    let s = Scratch::new();
    let out = s.out("p.safetensors");
    for (name, cu, needle) in [
        ("decreasing", vec![0i64, 4, 2, 6], "decreases"),
        ("overlong", vec![0i64, 3, 9], "ends at 9"),
        ("short", vec![0i64, 3, 5], "ends at 5"),
        ("negative", vec![0i64, -2, 6], "decreases"),
        ("not_zero", vec![1i64, 6], "start at 0"),
        ("empty", vec![], "empty"),
    ] {
        let input = st_input(
            &s,
            &format!("{name}.safetensors"),
            &[
                ("token_embeddings", tokens(6, 2)),
                ("cu_seq_lens_q", Tensor::from_vec([cu.len()], cu).unwrap()),
            ],
        );
        fails(
            &s,
            &["pool", "--input", &input, "--output", &out],
            None,
            &["cu_seq_lens", needle],
        );
    }
    let float_cu = st_input(
        &s,
        "float_cu.safetensors",
        &[
            ("token_embeddings", tokens(6, 2)),
            (
                "cu_seq_lens_q",
                Tensor::from_vec([2], vec![0f32, 6.0]).unwrap(),
            ),
        ],
    );
    fails(
        &s,
        &["pool", "--input", &float_cu, "--output", &out],
        None,
        &["cu_seq_lens_q", "f32"],
    );
    let both = st_input(
        &s,
        "both.safetensors",
        &[
            ("token_embeddings", tokens(6, 2)),
            (
                "cu_seq_lens_q",
                Tensor::from_vec([2], vec![0i64, 6]).unwrap(),
            ),
            (
                "attention_mask",
                Tensor::from_vec([1, 6], vec![1i64; 6]).unwrap(),
            ),
        ],
    );
    fails(
        &s,
        &["pool", "--input", &both, "--output", &out],
        None,
        &["both"],
    );
}

#[test]
fn pool_bad_arguments() {
    let s = Scratch::new();
    let out = s.out("p.safetensors");
    let input = st_input(&s, "ok.safetensors", &[("token_embeddings", tokens(3, 2))]);
    for (extra, needles) in [
        (&["--mode", "avg"][..], &["unknown pooling mode", "avg"][..]),
        (&["--mode", "mean,"][..], &["unknown pooling mode"][..]),
        (
            &["--prompt-length", "-1"][..],
            &["--prompt-length", "-1"][..],
        ),
        (
            &["--prompt-length", "99999999999999999999999"][..],
            &["--prompt-length", "too large"][..],
        ),
        (
            &["--prompt-length", "two"][..],
            &["--prompt-length", "two"][..],
        ),
        (&["--device", "gpu"][..], &["unknown device", "gpu"][..]),
    ] {
        let mut args = vec!["pool", "--input", &input, "--output", &out];
        args.extend_from_slice(extra);
        fails(&s, &args, None, needles);
    }
    // Output folder that does not exist.
    fails(
        &s,
        &[
            "pool",
            "--input",
            &input,
            "--output",
            &s.out("missing/p.safetensors"),
        ],
        None,
        &["does not exist"],
    );
}

#[test]
fn normalize_and_layer_pool_bad_files() {
    let s = Scratch::new();
    let out = s.out("n.safetensors");
    let ints = st_input(
        &s,
        "ints.safetensors",
        &[(
            "sentence_embedding",
            Tensor::zeros([2, 3], DType::I64).unwrap(),
        )],
    );
    fails(
        &s,
        &["normalize", "--input", &ints, "--output", &out],
        None,
        &["sentence_embedding", "i64"],
    );
    let none = st_input(
        &s,
        "none.safetensors",
        &[("other", Tensor::zeros([2, 3], DType::F32).unwrap())],
    );
    fails(
        &s,
        &["normalize", "--input", &none, "--output", &out],
        None,
        &["sentence_embedding", "not found"],
    );

    let layers = Tensor::zeros([4, 1, 2, 3], DType::F32).unwrap();
    let wrong_weights = st_input(
        &s,
        "wlp.safetensors",
        &[
            ("all_layer_embeddings", layers),
            (
                "layer_weights",
                Tensor::from_vec([2], vec![1f32, 1.0]).unwrap(),
            ),
        ],
    );
    let lp = |start: &str, needles: &[&str]| {
        fails(
            &s,
            &[
                "layer-pool",
                "--input",
                &wrong_weights,
                "--output",
                &out,
                "--layer-start",
                start,
            ],
            None,
            needles,
        )
    };
    lp("0", &["layer_weights", "[4]", "[2]"]);
    lp("9", &["layer_start"]);
    lp("-1", &["--layer-start", "-1"]);
}

#[test]
fn unknown_device_and_no_cuda_driver() {
    let s = Scratch::new();
    let input = st_input(
        &s,
        "ok.safetensors",
        &[(
            "sentence_embedding",
            Tensor::zeros([2, 3], DType::F32).unwrap(),
        )],
    );
    let out = s.out("n.safetensors");
    fails(
        &s,
        &[
            "normalize",
            "--input",
            &input,
            "--output",
            &out,
            "--device",
            "npu",
        ],
        None,
        &["unknown device", "npu"],
    );
    // cuda:N on a machine without a driver (or without device N): a clear error, no output.
    let o = run_stk(
        &[
            "normalize",
            "--input",
            &input,
            "--output",
            &out,
            "--device",
            "cuda:57",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("CUDA") || err.contains("cuda"), "{err}");
    assert_eq!(s.out_entries(), ["earlier.npy"]);
}
