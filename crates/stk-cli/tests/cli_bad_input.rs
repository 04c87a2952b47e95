//! Bad input through the `stk` binary: every case must end with its exit status (1: a panic is
//! 101, a clap usage error would be 2), print an `error` line on stderr holding the case's
//! words, print nothing on stdout, and leave the output folder as it was: no output file, no
//! temporary file, and an output that existed before the run untouched. Empty input is not an
//! error: it gives zero rows.
//!
//! The cases are tables, one per command family (`encode` inputs and arguments, `encode` model
//! folders, the module commands), each driven by one loop that lists every failing case by
//! name. Count: before the tables, 17 `#[test]` functions here held 83 failing runs, and
//! `cli_encode.rs`, `cli_modules.rs`, `cli_pipelines.rs` and `model2vec_fixtures.rs` held 42
//! more, most of them the same inputs again. Now the tables hold 98 cases: 82 of those 83 (the
//! unreadable-file case is a test of its own, as it cannot fail when run as root), the 14 of
//! the other files that were not already here, and 2 new ones (a Pooling width that disagrees,
//! a module path leaving the folder).
//!
//! Library-level counterparts (error variants) are in `tests/bad_input.rs`.

use std::path::{Path, PathBuf};

use stk_core::{write_safetensors, DType, SafetensorsFile, Tensor};
use stk_tests::{check_table, copy_dir, encode_args, repo_root, run_stk, says_all};
use tempfile::TempDir;

const STK: &str = env!("CARGO_BIN_EXE_stk");

/// Smallest committed static model (int8 table `[2048, 128]`, mapping, weights; its tokenizer
/// has 29528 ids).
const SMALL_STATIC: &str = "models/potion-base-8M-int8-vq2048-d128";
const WORDEMB: &str = "tests/golden/wordemb_mean/model";
const CNN: &str = "tests/golden/cnn_max/model";
const LSTM: &str = "tests/golden/lstm_mean/model";

/// A scratch folder for one case, with an `out/` folder that must stay as it is.
struct Scratch {
    tmp: TempDir,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("out")).unwrap();
        // An output left by an earlier run: a failing run must not replace or remove it.
        std::fs::write(tmp.path().join("out/earlier.npy"), b"earlier result").unwrap();
        Scratch { tmp }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
    /// `out/name`: where a case's output goes.
    fn out(&self, name: &str) -> String {
        self.s(&format!("out/{name}"))
    }
    /// Write `bytes` at `name`; its path.
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        self.s(name)
    }
    /// `t.txt` holding one line of text.
    fn hello(&self) -> String {
        self.write("t.txt", "hello world\n")
    }
    /// A copy of the committed folder `rel` as `model`, broken by `edit`; its path.
    fn model(&self, rel: &str, edit: impl FnOnce(&Path)) -> String {
        let dir = self.path("model");
        copy_dir(&repo_root().join(rel), &dir);
        edit(&dir);
        self.s("model")
    }
    /// A safetensors file `name` holding `tensors`; its path.
    fn tensors(&self, name: &str, tensors: &[(&str, Tensor)]) -> String {
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        write_safetensors(self.path(name), &refs).unwrap();
        self.s(name)
    }
    /// Every entry under `out/` with its bytes (folders as `None`).
    fn out_state(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut v: Vec<_> = std::fs::read_dir(self.path("out"))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).ok())
            })
            .collect();
        v.sort();
        v
    }
}

/// One failing run: `args` prepares its inputs in the scratch folder and returns the arguments.
struct CliCase {
    name: &'static str,
    args: fn(&Scratch) -> Vec<String>,
    stdin: Option<&'static [u8]>,
    exit: i32,
    words: &'static [&'static str],
}

/// A case that must exit with status 1 (every bad input) with `words` on stderr.
fn fails(
    name: &'static str,
    args: fn(&Scratch) -> Vec<String>,
    words: &'static [&'static str],
) -> CliCase {
    CliCase {
        name,
        args,
        stdin: None,
        exit: 1,
        words,
    }
}

impl CliCase {
    fn with_stdin(self, bytes: &'static [u8]) -> Self {
        CliCase {
            stdin: Some(bytes),
            ..self
        }
    }

    /// Run the case in a fresh scratch folder; `Err` says what went wrong.
    fn check(&self) -> Result<(), String> {
        let s = Scratch::new();
        let args = (self.args)(&s);
        let before = s.out_state();
        let o = run_stk(STK, &args, self.stdin);
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.code() != Some(self.exit) {
            return Err(format!(
                "exit {:?}, expected {}; stderr:\n{err}",
                o.status, self.exit
            ));
        }
        if err.contains("panicked") {
            return Err(format!("panicked:\n{err}"));
        }
        let line = err
            .lines()
            .find(|l| l.starts_with("stk: error:") || l.starts_with("error:"))
            .ok_or_else(|| format!("no error line in:\n{err}"))?;
        // Shown with `--nocapture`, to review the wording of every message.
        println!("{line}");
        says_all(&err, self.words)?;
        if !o.stdout.is_empty() {
            return Err(format!(
                "printed to stdout: {}",
                String::from_utf8_lossy(&o.stdout)
            ));
        }
        let after = s.out_state();
        if after != before {
            let names =
                |v: &[(String, Option<Vec<u8>>)]| v.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
            return Err(format!(
                "the output folder changed: {:?} before, {:?} after (or a file's bytes)",
                names(&before),
                names(&after)
            ));
        }
        Ok(())
    }
}

fn check_cli_table(table: &str, cases: &[CliCase]) {
    check_table(table, cases, |c| c.name, CliCase::check);
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn small_static() -> String {
    repo_root().join(SMALL_STATIC).to_str().unwrap().to_string()
}

fn encode(model: &str, input: &str, output: &str, extra: &[&str]) -> Vec<String> {
    encode_args(model, input, output, extra)
}

/// `stk encode` of the small static model on `input`, to `out/x.npy`.
fn encode_input(s: &Scratch, input: &str) -> Vec<String> {
    encode(&small_static(), input, &s.out("x.npy"), &[])
}

/// `stk encode` of one line with the small static model, `extra` added.
fn encode_hello(s: &Scratch, extra: &[&str]) -> Vec<String> {
    encode(&small_static(), &s.hello(), &s.out("x.npy"), extra)
}

/// `stk encode` of one line with `model`.
fn encode_model(s: &Scratch, model: &str) -> Vec<String> {
    encode(model, &s.hello(), &s.out("x.npy"), &[])
}

/// The same with sentence-transformers semantics (which reads `modules.json`).
fn encode_model_st(s: &Scratch, model: &str) -> Vec<String> {
    encode(
        model,
        &s.hello(),
        &s.out("x.npy"),
        &["--semantics", "sentence-transformers"],
    )
}

/// 31 lines whose 31st is Latin-1, after enough lines that batches of 4 were already written.
fn latin1_lines(s: &Scratch) -> String {
    let mut bytes = b"one\ntwo\nthree\n".repeat(10);
    bytes.extend_from_slice(b"caf\xe9\nlast\n");
    s.write("latin1.txt", bytes)
}

// ---------------------------------------------------------------------------------------------
// encode: input texts, outputs and arguments

#[test]
fn encode_inputs_outputs_and_arguments() {
    let cases = [
        fails(
            "input missing",
            |s| encode_input(s, &s.s("nope.txt")),
            &["nope.txt", "No such file"],
        ),
        fails(
            "input .txt is a folder",
            |s| {
                std::fs::create_dir(s.path("texts_dir.txt")).unwrap();
                encode_input(s, &s.s("texts_dir.txt"))
            },
            &["texts_dir.txt", "Is a directory"],
        ),
        fails(
            "input .json is a folder",
            |s| {
                std::fs::create_dir(s.path("texts_dir.json")).unwrap();
                encode_input(s, &s.s("texts_dir.json"))
            },
            &["texts_dir.json", "Is a directory"],
        ),
        fails(
            "line 31 not UTF-8, to .npy",
            |s| {
                encode(
                    &small_static(),
                    &latin1_lines(s),
                    &s.out("x.npy"),
                    &["--batch-size", "4"],
                )
            },
            &["latin1.txt", "line 31", "UTF-8"],
        ),
        fails(
            "line 31 not UTF-8, to .safetensors",
            |s| {
                encode(
                    &small_static(),
                    &latin1_lines(s),
                    &s.out("x.safetensors"),
                    &["--batch-size", "4"],
                )
            },
            &["latin1.txt", "line 31", "UTF-8"],
        ),
        fails(
            "line 31 not UTF-8, to .jsonl",
            |s| {
                encode(
                    &small_static(),
                    &latin1_lines(s),
                    &s.out("x.jsonl"),
                    &["--batch-size", "4"],
                )
            },
            &["latin1.txt", "line 31", "UTF-8"],
        ),
        fails(
            "stdin line 2 not UTF-8",
            |s| encode_input(s, "-"),
            &["<stdin>", "line 2", "UTF-8"],
        )
        .with_stdin(b"fine\n\xff\xfe\n"),
        fails(
            "JSON string not UTF-8",
            |s| encode_input(s, &s.write("bad.json", b"[\"ok\", \"caf\xe9\"]")),
            &["bad.json", "invalid unicode code point"],
        ),
        fails(
            "JSON object",
            |s| encode_input(s, &s.write("object.json", r#"{"texts": ["a"]}"#)),
            &["object.json", "JSON array of strings"],
        ),
        fails(
            "JSON number in the array",
            |s| encode_input(s, &s.write("number.json", r#"["a", 3]"#)),
            &["number.json", "JSON array of strings"],
        ),
        fails(
            "JSON nested array",
            |s| encode_input(s, &s.write("nested.json", r#"[["a"]]"#)),
            &["nested.json", "JSON array of strings"],
        ),
        fails(
            "JSON null in the array",
            |s| encode_input(s, &s.write("null.json", r#"["a", null]"#)),
            &["null.json", "JSON array of strings"],
        ),
        fails(
            "JSON truncated",
            |s| encode_input(s, &s.write("truncated.json", r#"["a", "b"#)),
            &["truncated.json", "JSON array of strings"],
        ),
        fails(
            "JSON with a trailing array",
            |s| encode_input(s, &s.write("trailing.json", r#"["a"] ["b"]"#)),
            &["trailing.json", "JSON array of strings"],
        ),
        fails(
            "JSON file empty",
            |s| encode_input(s, &s.write("empty_file.json", "")),
            &["empty_file.json", "JSON array of strings"],
        ),
        fails(
            "output folder missing",
            |s| {
                encode(
                    &small_static(),
                    &s.hello(),
                    &s.out("no/such/dir/x.npy"),
                    &[],
                )
            },
            &["does not exist"],
        ),
        fails(
            "output is a folder",
            |s| {
                std::fs::create_dir(s.path("out/as_dir.npy")).unwrap();
                encode(&small_static(), &s.hello(), &s.out("as_dir.npy"), &[])
            },
            &["as_dir.npy", "Is a directory"],
        ),
        fails(
            "output extension unknown",
            |s| encode(&small_static(), &s.hello(), &s.out("x.csv"), &[]),
            &["x.csv", "unknown extension"],
        ),
        fails(
            "device tpu",
            |s| encode_hello(s, &["--device", "tpu"]),
            &["unknown device", "`tpu`"],
        ),
        fails(
            "device cuda:x",
            |s| encode_hello(s, &["--device", "cuda:x"]),
            &["unknown device", "`cuda:x`"],
        ),
        fails(
            "semantics bert",
            |s| encode_hello(s, &["--semantics", "bert"]),
            &["unknown semantics `bert`"],
        ),
        fails(
            "batch size 0",
            |s| encode_hello(s, &["--batch-size", "0"]),
            &["--batch-size", "0 is not in 1.."],
        ),
        fails(
            "batch size negative",
            |s| encode_hello(s, &["--batch-size", "-5"]),
            &["'-5'"],
        ),
        fails(
            "max length negative",
            |s| encode_hello(s, &["--max-length", "-1"]),
            &["'-1'"],
        ),
        fails(
            "unknown flag",
            |s| encode_hello(s, &["--no-such-flag"]),
            &["--no-such-flag"],
        ),
        fails(
            "unknown command",
            |_| strings(&["no-such-command"]),
            &["no-such-command"],
        ),
        fails(
            "output dtype bf16",
            |s| encode_hello(s, &["--output-dtype", "bf16"]),
            &["--output-dtype", "f32 or f16"],
        ),
    ];
    check_cli_table("encode inputs, outputs and arguments", &cases);
}

#[test]
fn encode_input_unreadable() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let locked = s.write("locked.txt", "a\n");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Permission 000 stops every user but root, who reads it anyway.
    if std::fs::read(&locked).is_ok() {
        eprintln!("running as root: permission 000 does not stop reading; case not applicable");
        return;
    }
    let case = fails(
        "unreadable",
        |s| encode_input(s, &s.s("locked.txt")),
        &["locked.txt", "Permission denied"],
    );
    // The case's own scratch folder needs the locked file too.
    let run = CliCase {
        args: |s| {
            let p = s.write("locked.txt", "a\n");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
            encode_input(s, &p)
        },
        ..case
    };
    check_cli_table("unreadable input", &[run]);
}

#[test]
fn encode_empty_input_is_zero_rows() {
    let s = Scratch::new();
    let model = small_static();
    for (name, content, stdin) in [
        ("empty.txt", Some(""), None),
        ("empty.json", Some("[]"), None),
        ("spaces.json", Some(" [ ] \n"), None),
        ("-", None, Some(&b""[..])),
    ] {
        let input = match content {
            Some(c) => s.write(name, c),
            None => name.to_string(),
        };
        let out = s.path(&format!("{name}.safetensors"));
        let o = run_stk(STK, &encode_args(&model, &input, &out, &[]), stdin);
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
}

// ---------------------------------------------------------------------------------------------
// encode: model folders

/// The small static model's tensors, with `edit` applied, written back into `dir`.
fn edit_static(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let path = dir.join("model.safetensors");
    let file = SafetensorsFile::open(&path).unwrap();
    let mut tensors: Vec<(String, Tensor)> = file
        .names()
        .map(|n| {
            let t = file.get(n).unwrap();
            (
                n.to_string(),
                Tensor::from_bytes(t.dims().to_vec(), t.dtype(), t.bytes()).unwrap(),
            )
        })
        .collect();
    drop(file);
    edit(&mut tensors);
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&path, &refs).unwrap();
}

fn replace(tensors: &mut [(String, Tensor)], name: &str, t: Tensor) {
    tensors.iter_mut().find(|(n, _)| n == name).unwrap().1 = t;
}

fn zeros(dims: &[usize], dtype: DType) -> Tensor {
    Tensor::zeros(dims.to_vec(), dtype).unwrap()
}

/// Replace `from` by `to` in `dir/file` (which must contain it).
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{file} lacks {from}");
    std::fs::write(&p, text.replace(from, to)).unwrap();
}

fn write_in(dir: &Path, file: &str, content: impl AsRef<[u8]>) {
    std::fs::write(dir.join(file), content).unwrap();
}

/// The small static model with `file` replaced by `content`, encoded.
fn static_with_file(s: &Scratch, file: &'static str, content: &'static str) -> Vec<String> {
    let model = s.model(SMALL_STATIC, |d| write_in(d, file, content));
    encode_model(s, &model)
}

/// The small static model with `modules.json` replaced by `content`, encoded with
/// sentence-transformers semantics.
fn static_with_modules(s: &Scratch, content: &'static str) -> Vec<String> {
    let model = s.model(SMALL_STATIC, |d| write_in(d, "modules.json", content));
    encode_model_st(s, &model)
}

#[test]
fn encode_model_folders() {
    let cases = [
        fails(
            "folder missing",
            |s| encode_model(s, &s.s("no-model")),
            &["no-model", "not found"],
        ),
        fails(
            "folder is a file",
            |s| encode_model(s, &s.hello()),
            &["t.txt", "not a model folder"],
        ),
        fails(
            "folder empty",
            |s| {
                std::fs::create_dir(s.path("empty")).unwrap();
                encode_model(s, &s.s("empty"))
            },
            &["not a model folder"],
        ),
        fails(
            "pickled weights only",
            |s| {
                s.write("pickled/pytorch_model.bin", "not really");
                s.write("pickled/config.json", "{}");
                encode_model(s, &s.s("pickled"))
            },
            &["pytorch_model.bin", "not supported"],
        ),
        fails(
            "hub id without the hub feature",
            |s| encode_model(s, "someone/some-model"),
            &["someone/some-model", "hub"],
        ),
        fails(
            "weights truncated",
            |s| {
                let m = s.model(SMALL_STATIC, |d| {
                    let b = std::fs::read(d.join("model.safetensors")).unwrap();
                    write_in(d, "model.safetensors", &b[..b.len() / 3]);
                });
                encode_model(s, &m)
            },
            &["model.safetensors", "truncated"],
        ),
        fails(
            "weights with an absurd header length",
            |s| {
                let m = s.model(SMALL_STATIC, |d| {
                    let mut b = std::fs::read(d.join("model.safetensors")).unwrap();
                    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                    write_in(d, "model.safetensors", b);
                });
                encode_model(s, &m)
            },
            &["model.safetensors", "header length"],
        ),
        fails(
            // Without a model.safetensors file the folder is not model2vec's layout, so its
            // modules.json is read, whose 1_Normalize this copy lacks.
            "weights are a folder",
            |s| {
                let m = s.model(SMALL_STATIC, |d| {
                    std::fs::remove_file(d.join("model.safetensors")).unwrap();
                    std::fs::create_dir(d.join("model.safetensors")).unwrap();
                });
                encode_model(s, &m)
            },
            &["modules.json", "1_Normalize", "not a folder"],
        ),
        fails(
            "table missing",
            |s| {
                let m = s.model(SMALL_STATIC, |d| {
                    edit_static(d, |v| v.retain(|(n, _)| n != "embeddings"))
                });
                encode_model(s, &m)
            },
            &["embeddings", "not found", "mapping, weights"],
        ),
        fails(
            "table of i32",
            |s| {
                let m = s.model(SMALL_STATIC, |d| {
                    edit_static(d, |v| {
                        replace(v, "embeddings", zeros(&[2048, 128], DType::I32))
                    })
                });
                encode_model(s, &m)
            },
            &["embedding table", "i32"],
        ),
        fails(
            "table of rank 1",
            |s| {
                let m = s.model(SMALL_STATIC, |d| {
                    edit_static(d, |v| {
                        replace(v, "embeddings", zeros(&[2048 * 128], DType::I8))
                    })
                });
                encode_model(s, &m)
            },
            &["embedding table", "rank 2"],
        ),
        fails(
            "mapping past the table",
            |s| {
                let m = s.model(SMALL_STATIC, |d| {
                    edit_static(d, |v| {
                        let slot = v.iter_mut().find(|(n, _)| n == "mapping").unwrap();
                        let mut m: Vec<i32> = slot
                            .1
                            .to_i64_vec()
                            .unwrap()
                            .into_iter()
                            .map(|x| x as i32)
                            .collect();
                        m[100] = 5000;
                        slot.1 = Tensor::from_vec([m.len()], m).unwrap();
                    })
                });
                encode_model(s, &m)
            },
            &["mapping[100] = 5000", "2048 rows"],
        ),
        fails(
            "table shorter than the tokenizer's ids",
            |s| {
                let m = s.model(SMALL_STATIC, |d| {
                    let t = zeros(&[50, 4], DType::F32);
                    write_safetensors(d.join("model.safetensors"), &[("embeddings", &t)]).unwrap();
                });
                encode_model(s, &m)
            },
            &["token ids up to 29527", "50 rows"],
        ),
        fails(
            "f16 model's table shorter than its tokenizer's ids",
            |s| {
                let m = s.model("models/potion-base-8M-f16", |d| {
                    let t = Tensor::from_slice([10, 4], &[0.5f32; 40]).unwrap();
                    write_safetensors(d.join("model.safetensors"), &[("embeddings", &t)]).unwrap();
                });
                encode_model(s, &m)
            },
            &["token ids up to 29527", "10 rows"],
        ),
        fails(
            "config.json not JSON",
            |s| static_with_file(s, "config.json", "{ nope"),
            &["config.json", "not a valid model2vec config"],
        ),
        fails(
            "config.json with a string for a boolean",
            |s| static_with_file(s, "config.json", r#"{"normalize": "sometimes"}"#),
            &["config.json", "boolean"],
        ),
        fails(
            "tokenizer.json not JSON",
            |s| static_with_file(s, "tokenizer.json", "not json at all"),
            &["tokenizer.json", "JSON"],
        ),
        fails(
            "tokenizer.json without a model",
            |s| static_with_file(s, "tokenizer.json", r#"{"version": "1.0"}"#),
            &["tokenizer.json", "`model`"],
        ),
        fails(
            "tokenizer.json with an unknown model type",
            |s| static_with_file(s, "tokenizer.json", r#"{"model": {"type": "Imaginary"}}"#),
            &["tokenizer.json", "cannot load tokenizer"],
        ),
        fails(
            "modules.json not JSON",
            |s| static_with_modules(s, "[{"),
            &["modules.json", "expected a JSON list of modules"],
        ),
        fails(
            "modules.json an object",
            |s| static_with_modules(s, r#"{"type": "StaticEmbedding"}"#),
            &["modules.json", "expected a sequence"],
        ),
        fails(
            "modules.json empty",
            |s| static_with_modules(s, "[]"),
            &["modules.json", "no modules"],
        ),
        fails(
            "modules.json path a number",
            |s| static_with_modules(s, r#"[{"path": 3}]"#),
            &["modules.json", "integer `3`"],
        ),
        fails(
            "pipeline module type unknown",
            |s| {
                let m = s.model(WORDEMB, |d| {
                    edit(d, "modules.json", "pooling.Pooling", "pooling.Pooling2")
                });
                encode_model(s, &m)
            },
            &["Pooling2", "unsupported module type"],
        ),
        fails(
            "pipeline with a Transformer",
            |s| {
                let m = s.model(WORDEMB, |d| {
                    edit(
                        d,
                        "modules.json",
                        "sentence_transformer.modules.word_embeddings.WordEmbeddings",
                        "models.Transformer",
                    )
                });
                encode_model(s, &m)
            },
            &["models.Transformer", "WordEmbeddings"],
        ),
        fails(
            "pipeline pooling mode unknown",
            |s| {
                let m = s.model(WORDEMB, |d| {
                    edit(d, "1_Pooling/config.json", "\"mean\"", "\"median\"")
                });
                encode_model(s, &m)
            },
            &["median", "unknown pooling mode"],
        ),
        fails(
            "pipeline CNN width disagrees",
            |s| {
                let m = s.model(CNN, |d| {
                    edit(
                        d,
                        "1_CNN/cnn_config.json",
                        "\"in_embedding_dimension\": 64",
                        "\"in_embedding_dimension\": 63",
                    )
                });
                encode_model(s, &m)
            },
            &["1_CNN", "[24, 63, 1]", "[24, 64, 1]"],
        ),
        fails(
            "pipeline CNN weights pickled",
            |s| {
                let m = s.model(CNN, |d| {
                    std::fs::rename(
                        d.join("1_CNN/model.safetensors"),
                        d.join("1_CNN/pytorch_model.bin"),
                    )
                    .unwrap()
                });
                encode_model(s, &m)
            },
            &["1_CNN/pytorch_model.bin", "model.safetensors"],
        ),
        fails(
            "pipeline LSTM layers more than the weights",
            |s| {
                let m = s.model(LSTM, |d| {
                    edit(
                        d,
                        "1_LSTM/lstm_config.json",
                        "\"num_layers\": 2",
                        "\"num_layers\": 4",
                    )
                });
                encode_model(s, &m)
            },
            &["1_LSTM", "encoder.weight_ih_l2"],
        ),
        fails(
            "pipeline LSTM config not JSON",
            |s| {
                let m = s.model(LSTM, |d| {
                    write_in(d, "1_LSTM/lstm_config.json", r#"{"hidden_dim": 32"#)
                });
                encode_model(s, &m)
            },
            &["lstm_config.json", "not a valid lstm_config.json"],
        ),
        fails(
            "pipeline LSTM hidden size disagrees with the weights",
            |s| {
                let m = s.model(LSTM, |d| {
                    write_in(
                        d,
                        "1_LSTM/lstm_config.json",
                        r#"{"embedding_dimension": 64, "hidden_dim": 16, "num_layers": 2, "bidirectional": true}"#,
                    )
                });
                encode_model(s, &m)
            },
            &["encoder.weight_ih_l0", "[64, 64]", "[128, 64]"],
        ),
        fails(
            "pipeline table shorter than the vocabulary",
            |s| {
                let m = s.model(WORDEMB, |d| {
                    let t = zeros(&[5, 64], DType::F32);
                    write_safetensors(d.join("model.safetensors"), &[("emb_layer.weight", &t)])
                        .unwrap();
                });
                encode_model(s, &m)
            },
            &["1019", "5 rows"],
        ),
        fails(
            "pipeline Pooling width disagrees",
            |s| {
                let m = s.model(WORDEMB, |d| {
                    edit(
                        d,
                        "1_Pooling/config.json",
                        "\"embedding_dimension\": 64",
                        "\"embedding_dimension\": 50",
                    )
                });
                encode_model(s, &m)
            },
            &["1_Pooling", "embedding_dimension is 50", "width 64"],
        ),
        fails(
            "pipeline module path outside the folder",
            |s| {
                let m = s.model(WORDEMB, |d| {
                    edit(d, "modules.json", "\"1_Pooling\"", "\"../1_Pooling\"")
                });
                encode_model(s, &m)
            },
            &["modules.json", "../1_Pooling", "leaves the model folder"],
        ),
    ];
    check_cli_table("encode model folders", &cases);
}

// ---------------------------------------------------------------------------------------------
// pool / normalize / layer-pool

/// `[1, n, d]` f32 token embeddings 0, 1, 2, ...
fn tokens(n: usize, d: usize) -> Tensor {
    Tensor::from_vec([1, n, d], (0..n * d).map(|i| i as f32).collect::<Vec<_>>()).unwrap()
}

/// `stk CMD --input INPUT --output out/p.safetensors EXTRA...`
fn module_cmd(s: &Scratch, cmd: &str, input: &str, extra: &[&str]) -> Vec<String> {
    let mut a = strings(&[cmd, "--input", input, "--output", &s.out("p.safetensors")]);
    a.extend(strings(extra));
    a
}

fn pool(s: &Scratch, input: &str) -> Vec<String> {
    module_cmd(s, "pool", input, &[])
}

/// `stk pool` of 6 tokens of width 2 cut by `cu_seq_lens_q = cu`.
fn pool_varlen(s: &Scratch, cu: &[i64]) -> Vec<String> {
    let cu = Tensor::from_vec([cu.len()], cu.to_vec()).unwrap();
    let input = s.tensors(
        "in.safetensors",
        &[("token_embeddings", tokens(6, 2)), ("cu_seq_lens_q", cu)],
    );
    pool(s, &input)
}

/// `stk pool` of a padded batch `[2, 3, 4]` (row 1 has 2 tokens, row 2 has 1), `extra` added.
fn pool_padded(s: &Scratch, extra: &[&str]) -> Vec<String> {
    let mask = Tensor::from_slice([2, 3], &[1i64, 1, 0, 1, 0, 0]).unwrap();
    let tokens = Tensor::from_slice([2, 3, 4], &[0.5f32; 24]).unwrap();
    let input = s.tensors(
        "padded.safetensors",
        &[("token_embeddings", tokens), ("attention_mask", mask)],
    );
    module_cmd(s, "pool", &input, extra)
}

/// `stk layer-pool` of 4 layers `[4, 1, 2, 3]` with 2 layer weights, from `start`.
fn layer_pool(s: &Scratch, start: &str) -> Vec<String> {
    let input = s.tensors(
        "layers.safetensors",
        &[
            ("all_layer_embeddings", zeros(&[4, 1, 2, 3], DType::F32)),
            (
                "layer_weights",
                Tensor::from_vec([2], vec![1f32, 1.0]).unwrap(),
            ),
        ],
    );
    module_cmd(s, "layer-pool", &input, &["--layer-start", start])
}

fn normalize_of(s: &Scratch, tensors: &[(&str, Tensor)]) -> Vec<String> {
    let input = s.tensors("in.safetensors", tensors);
    module_cmd(s, "normalize", &input, &[])
}

#[test]
fn module_commands() {
    let cases = [
        fails(
            "input missing",
            |s| pool(s, &s.s("missing.safetensors")),
            &["missing.safetensors", "No such file"],
        ),
        fails(
            "input is a folder",
            |s| pool(s, &s.s("out")),
            &["directory"],
        ),
        fails(
            "input truncated",
            |s| {
                let golden = repo_root().join("tests/golden/varlen_mean_f32/tensors.safetensors");
                pool(
                    s,
                    &s.write("trunc.safetensors", &std::fs::read(golden).unwrap()[..100]),
                )
            },
            &["trunc.safetensors", "not a valid safetensors file"],
        ),
        fails(
            "input with an absurd header length",
            |s| {
                let mut b = (1u64 << 62).to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                pool(s, &s.write("absurd.safetensors", b))
            },
            &["absurd.safetensors", "header length"],
        ),
        fails(
            "input not safetensors at all",
            |s| {
                pool(
                    s,
                    &s.write("garbage.safetensors", "definitely not safetensors"),
                )
            },
            &["garbage.safetensors", "not a valid safetensors file"],
        ),
        fails(
            "token_embeddings missing",
            |s| {
                pool(
                    s,
                    &s.tensors(
                        "in.safetensors",
                        &[("attention_mask", zeros(&[1, 3], DType::I64))],
                    ),
                )
            },
            &["token_embeddings", "not found", "attention_mask"],
        ),
        fails(
            "token_embeddings of i32",
            |s| {
                pool(
                    s,
                    &s.tensors(
                        "in.safetensors",
                        &[("token_embeddings", zeros(&[1, 3, 4], DType::I32))],
                    ),
                )
            },
            &["token_embeddings", "f32 or f16 or bf16", "got i32"],
        ),
        fails(
            "token_embeddings of i64",
            |s| {
                pool(
                    s,
                    &s.tensors(
                        "in.safetensors",
                        &[("token_embeddings", zeros(&[1, 2, 2], DType::I64))],
                    ),
                )
            },
            &["token_embeddings: expected dtype f32 or f16 or bf16, got i64"],
        ),
        fails(
            "token_embeddings of rank 2",
            |s| {
                pool(
                    s,
                    &s.tensors(
                        "in.safetensors",
                        &[("token_embeddings", zeros(&[3, 4], DType::F32))],
                    ),
                )
            },
            &["token_embeddings", "[3, 4]"],
        ),
        fails(
            // A different T is allowed (the reference then counts every position), not a
            // different batch size.
            "attention_mask of another batch size",
            |s| {
                let mask = Tensor::from_vec([2, 3], vec![1i64; 6]).unwrap();
                pool(
                    s,
                    &s.tensors(
                        "in.safetensors",
                        &[("token_embeddings", tokens(3, 4)), ("attention_mask", mask)],
                    ),
                )
            },
            &["attention_mask", "[2, 3]"],
        ),
        fails(
            "attention_mask value 7",
            |s| {
                let mask = Tensor::from_vec([1, 3], vec![1i64, 7, 0]).unwrap();
                pool(
                    s,
                    &s.tensors(
                        "in.safetensors",
                        &[("token_embeddings", tokens(3, 4)), ("attention_mask", mask)],
                    ),
                )
            },
            &["attention_mask", "7"],
        ),
        fails(
            "token_weights_sum of another batch size",
            |s| {
                let mask = Tensor::from_slice([1, 3], &[1i64, 1, 0]).unwrap();
                let tws = Tensor::from_slice([3], &[1.0f32, 2.0, 3.0]).unwrap();
                let t = [
                    ("token_embeddings", tokens(3, 4)),
                    ("attention_mask", mask),
                    ("token_weights_sum", tws),
                ];
                pool(s, &s.tensors("in.safetensors", &t))
            },
            &["token_weights_sum: expected shape [1]"],
        ),
        fails(
            "cu_seq_lens decreasing",
            |s| pool_varlen(s, &[0, 4, 2, 6]),
            &["cu_seq_lens", "decreases"],
        ),
        fails(
            "cu_seq_lens past the tokens",
            |s| pool_varlen(s, &[0, 3, 9]),
            &["cu_seq_lens", "ends at 9"],
        ),
        fails(
            "cu_seq_lens short of the tokens",
            |s| pool_varlen(s, &[0, 3, 5]),
            &["cu_seq_lens ends at 5 but token_embeddings has 6 tokens"],
        ),
        fails(
            "cu_seq_lens negative",
            |s| pool_varlen(s, &[0, -2, 6]),
            &["cu_seq_lens", "decreases"],
        ),
        fails(
            "cu_seq_lens not starting at 0",
            |s| pool_varlen(s, &[1, 6]),
            &["cu_seq_lens", "start at 0"],
        ),
        fails(
            "cu_seq_lens empty",
            |s| pool_varlen(s, &[]),
            &["cu_seq_lens", "empty"],
        ),
        fails(
            "cu_seq_lens of f32",
            |s| {
                let cu = Tensor::from_vec([2], vec![0f32, 6.0]).unwrap();
                pool(
                    s,
                    &s.tensors(
                        "in.safetensors",
                        &[("token_embeddings", tokens(6, 2)), ("cu_seq_lens_q", cu)],
                    ),
                )
            },
            &["cu_seq_lens_q", "f32"],
        ),
        fails(
            "cu_seq_lens and attention_mask both",
            |s| {
                let cu = Tensor::from_vec([2], vec![0i64, 6]).unwrap();
                let mask = Tensor::from_vec([1, 6], vec![1i64; 6]).unwrap();
                let t = [
                    ("token_embeddings", tokens(6, 2)),
                    ("cu_seq_lens_q", cu),
                    ("attention_mask", mask),
                ];
                pool(s, &s.tensors("in.safetensors", &t))
            },
            &["has attention_mask and cu_seq_lens_q", "keep one"],
        ),
        fails(
            "mode avg",
            |s| pool_padded(s, &["--mode", "avg"]),
            &["unknown pooling mode", "`avg`"],
        ),
        fails(
            "mode list with avg",
            |s| pool_padded(s, &["--mode", "mean,avg"]),
            &["unknown pooling mode `avg`"],
        ),
        fails(
            "mode list ending in a comma",
            |s| pool_padded(s, &["--mode", "mean,"]),
            &["pooling modes `mean,` has an empty entry"],
        ),
        fails(
            "mode empty",
            |s| pool_padded(s, &["--mode", ""]),
            &[
                "list of pooling modes is empty",
                "expected comma-separated modes",
            ],
        ),
        fails(
            "prompt length negative",
            |s| pool_padded(s, &["--prompt-length", "-1"]),
            &["--prompt-length must be 0 or more, got -1"],
        ),
        fails(
            "prompt length past every sequence",
            |s| pool_padded(s, &["--prompt-length", "4"]),
            &["prompt length 4 is longer than the longest sequence (3 tokens)"],
        ),
        fails(
            "prompt length overflowing",
            |s| pool_padded(s, &["--prompt-length", "99999999999999999999999"]),
            &["--prompt-length 99999999999999999999999 is too large"],
        ),
        fails(
            "prompt length a word",
            |s| pool_padded(s, &["--prompt-length", "two"]),
            &["--prompt-length must be a whole number", "two"],
        ),
        fails(
            "device gpu",
            |s| pool_padded(s, &["--device", "gpu"]),
            &["unknown device `gpu`"],
        ),
        fails(
            "output folder missing",
            |s| {
                let mut a = pool_padded(s, &[]);
                let out = a.iter().position(|x| x == "--output").unwrap() + 1;
                a[out] = s.out("missing/p.safetensors");
                a
            },
            &["the output folder does not exist"],
        ),
        fails(
            "normalize of i64",
            |s| normalize_of(s, &[("sentence_embedding", zeros(&[2, 3], DType::I64))]),
            &["sentence_embedding", "i64"],
        ),
        fails(
            "normalize without sentence_embedding",
            |s| normalize_of(s, &[("other", zeros(&[2, 3], DType::F32))]),
            &["tensor `sentence_embedding` not found", "other"],
        ),
        fails(
            "normalize on device npu",
            |s| {
                let mut a = normalize_of(s, &[("sentence_embedding", zeros(&[2, 3], DType::F32))]);
                a.extend(strings(&["--device", "npu"]));
                a
            },
            &["unknown device", "npu"],
        ),
        fails(
            // Without a driver, or without device 57: a clear error either way.
            "normalize on cuda:57",
            |s| {
                let mut a = normalize_of(s, &[("sentence_embedding", zeros(&[2, 3], DType::F32))]);
                a.extend(strings(&["--device", "cuda:57"]));
                a
            },
            &["CUDA"],
        ),
        fails(
            "layer weights fewer than the layers",
            |s| layer_pool(s, "0"),
            &["layer_weights", "[4]", "[2]"],
        ),
        fails(
            "layer start past the last layer",
            |s| layer_pool(s, "9"),
            &["layer_start 9", "no layer of the 4"],
        ),
        fails(
            "layer start negative",
            |s| layer_pool(s, "-1"),
            &["--layer-start must be 0 or more", "-1"],
        ),
    ];
    check_cli_table("module commands", &cases);
}
