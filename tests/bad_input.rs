//! Bad input through the library: every malformed file, config, tensor or argument is a
//! specific `stk_core::Error` (variant and the words that name what is wrong), never a panic.
//!
//! Malformed model folders are made by copying a small committed model into a temporary
//! folder and breaking one thing in it. Binary-level counterparts (exit code, stderr, no output
//! file left) are in `crates/stk-cli/tests/cli_bad_input.rs`.

use std::path::{Path, PathBuf};

use stk::{LoadOptions, Model};
use stk_core::{
    write_file_atomic, write_safetensors, Device, Error, PaddedBatch, PoolingMode, SafetensorsFile,
    Tensor, TokenBags, VarlenBatch,
};
use stk_cpu::{StaticEmbedding, Tokenizer};
use stk_tests::repo_root;
use tempfile::TempDir;

/// The smallest committed static model: int8 table `[2048, 128]`, a `mapping` and `weights`.
const SMALL_STATIC: &str = "models/potion-base-8M-int8-vq2048-d128";

/// Copy of a committed folder (files and sub-folders) into a fresh temporary folder.
fn copy_of(rel: &str) -> TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join(rel), tmp.path());
    tmp
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

/// The error of `r`, failing the test (with the value's description) if it is `Ok`.
#[track_caller]
fn err<T: std::fmt::Debug>(r: stk_core::Result<T>) -> Error {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => {
            // Shown with `--nocapture`, to review the wording of every message.
            println!("{e}");
            e
        }
    }
}

/// Assert the message of `e` contains every one of `words`.
#[track_caller]
fn says(e: &Error, words: &[&str]) {
    let msg = e.to_string();
    for w in words {
        assert!(msg.contains(w), "message {msg:?} lacks {w:?}");
    }
}

fn load(dir: &Path) -> stk_core::Result<Model> {
    Model::load(dir)
}

/// Write a safetensors file holding `tensors`.
fn write_st(path: &Path, tensors: &[(&str, Tensor)]) {
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    write_safetensors(path, &refs).unwrap();
}

/// The tensors of the small static model, as owned copies, with `edit` applied.
fn small_static_tensors(
    edit: impl FnOnce(&mut Vec<(&'static str, Tensor)>),
) -> Vec<(&'static str, Tensor)> {
    let file =
        SafetensorsFile::open(repo_root().join(SMALL_STATIC).join("model.safetensors")).unwrap();
    let mut v: Vec<(&'static str, Tensor)> = ["embeddings", "mapping", "weights"]
        .into_iter()
        .map(|n| {
            let t = file.get(n).unwrap();
            (
                n,
                Tensor::from_bytes(t.dims().to_vec(), t.dtype(), t.bytes()).unwrap(),
            )
        })
        .collect();
    edit(&mut v);
    v
}

fn replace(v: &mut [(&'static str, Tensor)], name: &str, t: Tensor) {
    let slot = v.iter_mut().find(|(n, _)| *n == name).unwrap();
    slot.1 = t;
}

/// A copy of the small static model whose `model.safetensors` holds `tensors`.
fn static_with_tensors(tensors: &[(&str, Tensor)]) -> TempDir {
    let dir = copy_of(SMALL_STATIC);
    write_st(&dir.path().join("model.safetensors"), tensors);
    dir
}

fn safetensors_header(json: &str) -> Vec<u8> {
    let mut b = (json.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(json.as_bytes());
    b
}

fn open_bytes(bytes: &[u8]) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.safetensors");
    std::fs::write(&p, bytes).unwrap();
    err(SafetensorsFile::open(&p).map(|f| f.names().map(String::from).collect::<Vec<_>>()))
}

// ---------------------------------------------------------------------------------------------
// safetensors files

#[test]
fn safetensors_missing_file_is_io_error_naming_it() {
    let e = err(SafetensorsFile::open("/nonexistent/stk/model.safetensors").map(|_| ()));
    assert!(matches!(e, Error::Io { .. }), "{e}");
    says(&e, &["/nonexistent/stk/model.safetensors"]);
}

#[test]
fn safetensors_directory_given_as_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = err(SafetensorsFile::open(dir.path()).map(|_| ()));
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
    says(&e, &[&dir.path().display().to_string(), "directory"]);
}

#[test]
fn safetensors_empty_and_truncated_length_prefix() {
    for bytes in [&b""[..], &b"\x10\x00\x00"[..]] {
        let e = open_bytes(bytes);
        assert!(matches!(e, Error::Safetensors { .. }), "{e}");
        says(&e, &["fewer than the 8-byte header length"]);
    }
}

#[test]
fn safetensors_absurd_header_length() {
    // 2^63 - 1 bytes of header: must not try to allocate or read it.
    let mut bytes = u64::MAX.wrapping_shr(1).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let e = open_bytes(&bytes);
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
    says(&e, &["header length", "absurdly large"]);
}

#[test]
fn safetensors_header_longer_than_file() {
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"a\":");
    let e = open_bytes(&bytes);
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
    says(&e, &["past the end of the file (13 bytes)"]);
}

#[test]
fn safetensors_header_not_json() {
    let e = open_bytes(&safetensors_header("this is not json"));
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
    says(&e, &["header"]);
}

#[test]
fn safetensors_truncated_data() {
    // The header promises 16 bytes of data; the file has 8.
    let mut bytes =
        safetensors_header(r#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#);
    bytes.extend_from_slice(&[0u8; 8]);
    let e = open_bytes(&bytes);
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
    says(&e, &["truncated"]);
}

#[test]
fn safetensors_real_file_cut_in_half() {
    let src = std::fs::read(repo_root().join(SMALL_STATIC).join("model.safetensors")).unwrap();
    let e = open_bytes(&src[..src.len() / 2]);
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
    says(&e, &["truncated"]);
}

#[test]
fn safetensors_shape_disagrees_with_offsets() {
    let mut bytes = safetensors_header(
        r#"{"t":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,16]}}"#,
    );
    bytes.extend_from_slice(&[0u8; 16]);
    let e = open_bytes(&bytes);
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
    says(&e, &["shape and dtype do not match"]);
}

#[test]
fn safetensors_unsupported_dtype_names_the_tensor() {
    // F64 is read (as f32); U16 is a dtype no module uses.
    let mut bytes = safetensors_header(r#"{"t":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}}"#);
    bytes.extend_from_slice(&[0u8; 4]);
    let e = open_bytes(&bytes);
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
    says(&e, &["`t`", "U16"]);
}

#[test]
fn safetensors_missing_tensor_lists_the_available_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    write_st(
        &p,
        &[("present", Tensor::from_slice([2], &[1f32, 2.0]).unwrap())],
    );
    let f = SafetensorsFile::open(&p).unwrap();
    let e = err(f.get("absent"));
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == "absent"),
        "{e}"
    );
    says(&e, &["present"]);
}

// ---------------------------------------------------------------------------------------------
// model folders

#[test]
fn model_folder_missing() {
    let dir = tempfile::tempdir().unwrap();
    let e = err(load(&dir.path().join("no_such_model")));
    assert!(matches!(e, Error::Io { .. }), "{e}");
    says(&e, &["no_such_model", "not found"]);
}

#[test]
fn model_folder_is_a_file() {
    let dir = copy_of(SMALL_STATIC);
    let e = err(load(&dir.path().join("config.json")));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["config.json", "not a model folder"]);
}

#[test]
fn model_folder_empty() {
    let dir = tempfile::tempdir().unwrap();
    let e = err(load(dir.path()));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["is not a model folder"]);
}

#[test]
fn model_weights_missing() {
    let dir = copy_of(SMALL_STATIC);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = err(StaticEmbedding::from_dir(dir.path()));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["has no model.safetensors"]);
}

#[test]
fn model_weights_is_a_directory() {
    let dir = copy_of(SMALL_STATIC);
    let w = dir.path().join("model.safetensors");
    std::fs::remove_file(&w).unwrap();
    std::fs::create_dir(&w).unwrap();
    let e = err(StaticEmbedding::from_dir(dir.path()));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["model.safetensors"]);
}

#[test]
fn model_weights_truncated() {
    let dir = copy_of(SMALL_STATIC);
    let w = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() - 1000]).unwrap();
    let e = err(load(dir.path()));
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
    says(&e, &["model.safetensors"]);
}

#[test]
fn model_weights_absurd_header_length() {
    let dir = copy_of(SMALL_STATIC);
    let w = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    bytes[..8].copy_from_slice(&(u64::MAX - 7).to_le_bytes());
    std::fs::write(&w, &bytes).unwrap();
    let e = err(load(dir.path()));
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
}

#[test]
fn model_table_missing() {
    let tensors = small_static_tensors(|v| v.retain(|(n, _)| *n != "embeddings"));
    let dir = static_with_tensors(&tensors);
    let e = err(load(dir.path()));
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    says(&e, &["embedding.weight", "embeddings", "mapping, weights"]);
}

#[test]
fn model_table_wrong_dtype() {
    let tensors = small_static_tensors(|v| {
        replace(
            v,
            "embeddings",
            Tensor::zeros([2048, 128], stk_core::DType::I32).unwrap(),
        )
    });
    let dir = static_with_tensors(&tensors);
    let e = err(load(dir.path()));
    says(&e, &["embedding table", "i32"]);
}

#[test]
fn model_table_wrong_rank() {
    let tensors = small_static_tensors(|v| {
        replace(
            v,
            "embeddings",
            Tensor::zeros([2048 * 128], stk_core::DType::I8).unwrap(),
        )
    });
    let dir = static_with_tensors(&tensors);
    let e = err(load(dir.path()));
    says(&e, &["embedding table", "262144"]);
}

#[test]
fn model_table_zero_width() {
    let tensors = small_static_tensors(|v| {
        replace(
            v,
            "embeddings",
            Tensor::zeros([2048, 0], stk_core::DType::I8).unwrap(),
        )
    });
    let dir = static_with_tensors(&tensors);
    let e = err(load(dir.path()));
    says(&e, &["embedding table", "0 < dim", "[2048, 0]"]);
}

#[test]
fn model_mapping_points_past_the_table() {
    let tensors = small_static_tensors(|v| {
        let file = SafetensorsFile::open(repo_root().join(SMALL_STATIC).join("model.safetensors"))
            .unwrap();
        let mut m = file.get("mapping").unwrap().to_i64_vec().unwrap();
        m[7] = 2048; // the table has rows 0..2048
        let m: Vec<i32> = m.into_iter().map(|x| x as i32).collect();
        replace(v, "mapping", Tensor::from_vec([m.len()], m).unwrap());
    });
    let dir = static_with_tensors(&tensors);
    let e = err(load(dir.path()));
    says(&e, &["mapping[7] = 2048", "2048 rows"]);
}

#[test]
fn model_mapping_negative() {
    let tensors = small_static_tensors(|v| {
        let n = 29528;
        let mut m = vec![0i32; n];
        m[3] = -1;
        replace(v, "mapping", Tensor::from_vec([n], m).unwrap());
    });
    let dir = static_with_tensors(&tensors);
    let e = err(load(dir.path()));
    says(&e, &["mapping[3] = -1"]);
}

#[test]
fn model_mapping_wrong_dtype() {
    let tensors = small_static_tensors(|v| {
        replace(
            v,
            "mapping",
            Tensor::zeros([29528], stk_core::DType::F32).unwrap(),
        )
    });
    let dir = static_with_tensors(&tensors);
    let e = err(load(dir.path()));
    says(&e, &["mapping", "f32"]);
}

#[test]
fn model_weights_length_disagrees_with_mapping() {
    let tensors = small_static_tensors(|v| {
        replace(
            v,
            "weights",
            Tensor::zeros([100], stk_core::DType::F32).unwrap(),
        )
    });
    let dir = static_with_tensors(&tensors);
    let e = err(load(dir.path()));
    says(&e, &["weights", "29528"]);
}

#[test]
fn model_tokenizer_ids_past_the_table() {
    // No mapping and a table of 100 rows: the tokenizer's ids go up to 29527.
    let dir = static_with_tensors(&[(
        "embeddings",
        Tensor::zeros([100, 8], stk_core::DType::F32).unwrap(),
    )]);
    let e = err(load(dir.path()));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["token ids up to 29527", "100 rows"]);
}

#[test]
fn model_tokenizer_ids_past_the_mapping() {
    let tensors = small_static_tensors(|v| {
        replace(
            v,
            "mapping",
            Tensor::zeros([1000], stk_core::DType::I32).unwrap(),
        );
        replace(
            v,
            "weights",
            Tensor::zeros([1000], stk_core::DType::F32).unwrap(),
        );
    });
    let dir = static_with_tensors(&tensors);
    let e = err(load(dir.path()));
    says(&e, &["token ids up to 29527", "mapping has 1000 entries"]);
}

#[test]
fn model_config_json_not_json() {
    let dir = copy_of(SMALL_STATIC);
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let e = err(load(dir.path()));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["config.json"]);
}

#[test]
fn model_config_json_wrong_shape() {
    let dir = copy_of(SMALL_STATIC);
    std::fs::write(dir.path().join("config.json"), r#"{"normalize": "yes"}"#).unwrap();
    let e = err(load(dir.path()));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["config.json", "expected a boolean"]);
    std::fs::write(dir.path().join("config.json"), "[1, 2, 3]").unwrap();
    let e = err(load(dir.path()));
    assert!(matches!(e, Error::Config { .. }), "{e}");
}

#[test]
fn model_tokenizer_json_not_json() {
    let dir = copy_of(SMALL_STATIC);
    std::fs::write(dir.path().join("tokenizer.json"), b"\xff\xfe garbage").unwrap();
    let e = err(load(dir.path()));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["tokenizer.json", "not a valid JSON tokenizer file"]);
}

#[test]
fn model_tokenizer_json_wrong_shape() {
    let dir = copy_of(SMALL_STATIC);
    let tok = dir.path().join("tokenizer.json");
    std::fs::write(&tok, r#"{"version": "1.0"}"#).unwrap();
    let e = err(load(dir.path()));
    says(&e, &["tokenizer.json", "`model` key"]);
    std::fs::write(&tok, r#"{"model": {"type": "NoSuchModel"}}"#).unwrap();
    let e = err(load(dir.path()));
    assert!(
        matches!(e, Error::Tokenizer(_) | Error::Config { .. }),
        "{e}"
    );
    says(&e, &["tokenizer.json"]);
}

#[test]
fn tokenizer_file_missing() {
    let e = err(Tokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).map(|_| ()));
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn model_modules_json_not_json() {
    let dir = copy_of(SMALL_STATIC);
    std::fs::write(dir.path().join("modules.json"), "[{").unwrap();
    let opts = LoadOptions {
        semantics: Some(stk::Semantics::SentenceTransformers),
        ..LoadOptions::default()
    };
    let e = err(Model::load_with(dir.path(), &opts));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["modules.json"]);
}

#[test]
fn model_modules_json_wrong_shape() {
    let dir = copy_of(SMALL_STATIC);
    std::fs::write(
        dir.path().join("modules.json"),
        r#"{"type": "StaticEmbedding"}"#,
    )
    .unwrap();
    let opts = LoadOptions {
        semantics: Some(stk::Semantics::SentenceTransformers),
        ..LoadOptions::default()
    };
    let e = err(Model::load_with(dir.path(), &opts));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["modules.json"]);
}

// ---------------------------------------------------------------------------------------------
// sentence-transformers pipeline folders (modules.json)

const WORDEMB: &str = "tests/golden/wordemb_mean/model";

fn pipeline(dir: &Path) -> stk_core::Result<stk::Pipeline> {
    stk::Pipeline::load(dir)
}

/// Replace `from` by `to` in `file` (which must contain it).
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

#[test]
fn pipeline_unknown_module_type() {
    let dir = copy_of(WORDEMB);
    edit(
        &dir.path().join("modules.json"),
        "pooling.Pooling",
        "pooling.NoSuchPooling",
    );
    let e = err(pipeline(dir.path()));
    assert!(
        matches!(&e, Error::UnsupportedModule { module, .. } if module.ends_with("NoSuchPooling")),
        "{e}"
    );
    says(&e, &["Pooling", "WordEmbeddings"]);
}

#[test]
fn pipeline_unknown_pooling_mode() {
    let dir = copy_of(WORDEMB);
    edit(
        &dir.path().join("1_Pooling/config.json"),
        "\"mean\"",
        "\"avg\"",
    );
    let e = err(pipeline(dir.path()));
    assert!(
        matches!(&e, Error::UnknownPoolingMode(m) if m == "avg") || e.to_string().contains("`avg`"),
        "{e}"
    );
}

#[test]
fn pipeline_inconsistent_widths() {
    // (Pooling's own `embedding_dimension` is informative: the reference pools whatever width
    // it receives, and so does stk.)
    let dir = copy_of("tests/golden/cnn_max/model");
    edit(
        &dir.path().join("1_CNN/cnn_config.json"),
        "\"in_embedding_dimension\": 64",
        "\"in_embedding_dimension\": 32",
    );
    let e = err(pipeline(dir.path()));
    says(&e, &["32"]);

    let dir = copy_of("tests/golden/lstm_mean/model");
    edit(
        &dir.path().join("1_LSTM/lstm_config.json"),
        "\"embedding_dimension\": 64",
        "\"embedding_dimension\": 48",
    );
    let e = err(pipeline(dir.path()));
    says(&e, &["48"]);
}

#[test]
fn pipeline_layer_count_disagrees_with_weights() {
    // LSTM: the config says 3 layers, the weights hold 2.
    let dir = copy_of("tests/golden/lstm_mean/model");
    edit(
        &dir.path().join("1_LSTM/lstm_config.json"),
        "\"num_layers\": 2",
        "\"num_layers\": 3",
    );
    let e = err(pipeline(dir.path()));
    assert!(
        matches!(
            e,
            Error::MissingTensor { .. } | Error::Config { .. } | Error::Shape { .. }
        ),
        "{e}"
    );
    says(&e, &["l2"]);
}

#[test]
fn pipeline_module_weights_wrong_shape() {
    let dir = copy_of("tests/golden/cnn_max/model");
    let w = dir.path().join("1_CNN/model.safetensors");
    let file = SafetensorsFile::open(&w).unwrap();
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
    for (name, t) in &mut tensors {
        if name == "convs.1.weight" {
            *t = Tensor::zeros([24, 64, 4], stk_core::DType::F32).unwrap();
        }
    }
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&w, &refs).unwrap();
    let e = err(pipeline(dir.path()));
    assert!(
        matches!(e, Error::Shape { .. } | Error::Config { .. }),
        "{e}"
    );
    says(&e, &["convs.1.weight"]);
}

#[test]
fn pipeline_word_embeddings_table_missing_or_wrong_dtype() {
    let dir = copy_of(WORDEMB);
    let w = dir.path().join("model.safetensors");
    write_st(
        &w,
        &[(
            "other",
            Tensor::zeros([4, 4], stk_core::DType::F32).unwrap(),
        )],
    );
    let e = err(pipeline(dir.path()));
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    says(&e, &["emb_layer.weight", "other"]);
    write_st(
        &w,
        &[(
            "emb_layer.weight",
            Tensor::zeros([1019, 64], stk_core::DType::I64).unwrap(),
        )],
    );
    let e = err(pipeline(dir.path()));
    says(&e, &["i64"]);
}

#[test]
fn pipeline_vocabulary_longer_than_the_table() {
    // The tokenizer has 1019 words; a table of 10 rows cannot embed them.
    let dir = copy_of(WORDEMB);
    write_st(
        &dir.path().join("model.safetensors"),
        &[(
            "emb_layer.weight",
            Tensor::zeros([10, 64], stk_core::DType::F32).unwrap(),
        )],
    );
    let e = err(pipeline(dir.path()));
    says(&e, &["10"]);
}

#[test]
fn pipeline_module_folder_missing() {
    let dir = copy_of(WORDEMB);
    std::fs::remove_dir_all(dir.path().join("1_Pooling")).unwrap();
    let e = err(pipeline(dir.path()));
    assert!(matches!(e, Error::Config { .. }), "{e}");
    says(&e, &["1_Pooling", "not a folder"]);
}

#[test]
fn pipeline_empty_module_list() {
    let dir = copy_of(WORDEMB);
    std::fs::write(dir.path().join("modules.json"), "[]").unwrap();
    let e = err(pipeline(dir.path()));
    says(&e, &["modules.json", "no modules"]);
}

#[test]
fn pipeline_module_configs_not_json_or_wrong_shape() {
    for (file, content, words) in [
        (
            "wordembedding_config.json",
            "{{{",
            &["wordembedding_config.json"][..],
        ),
        (
            "whitespacetokenizer_config.json",
            r#"{"vocab": 5}"#,
            &["whitespacetokenizer_config.json"][..],
        ),
        ("1_Pooling/config.json", "null", &["config.json"][..]),
        (
            "1_Pooling/config.json",
            r#"{"pooling_mode": "mean"}"#,
            &["embedding_dimension"][..],
        ),
        (
            "config_sentence_transformers.json",
            "[1]",
            &["config_sentence_transformers.json"][..],
        ),
    ] {
        let dir = copy_of(WORDEMB);
        std::fs::write(dir.path().join(file), content).unwrap();
        let e = err(pipeline(dir.path()));
        says(&e, words);
    }
}

#[test]
fn pipeline_empty_input_is_zero_rows() {
    let p = pipeline(&repo_root().join(WORDEMB)).unwrap();
    let out = p.encode(&[]).unwrap();
    assert_eq!(out.dims(), [0, p.dim()]);
}

#[test]
fn weighted_layer_pooling_config_inconsistent_with_weights() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    write_st(
        &dir.path().join("model.safetensors"),
        &[(
            "layer_weights",
            Tensor::from_vec([5], vec![1f32; 5]).unwrap(),
        )],
    );
    // 12 hidden layers from layer 4: 9 weights expected, the file has 5.
    std::fs::write(
        &cfg,
        r#"{"embedding_dimension": 8, "num_hidden_layers": 12, "layer_start": 4}"#,
    )
    .unwrap();
    let e = err(stk_cpu::WeightedLayerPooling::from_dir(dir.path()).map(|_| ()));
    says(&e, &["layer_weights", "9", "5"]);
    // layer_start past the last layer.
    std::fs::write(
        &cfg,
        r#"{"embedding_dimension": 8, "num_hidden_layers": 3, "layer_start": 7}"#,
    )
    .unwrap();
    let e = err(stk_cpu::WeightedLayerPooling::from_dir(dir.path()).map(|_| ()));
    says(&e, &["layer_start"]);
    // A negative layer count.
    std::fs::write(
        &cfg,
        r#"{"embedding_dimension": 8, "num_hidden_layers": -1, "layer_start": 0}"#,
    )
    .unwrap();
    let e = err(stk_cpu::WeightedLayerPooling::from_dir(dir.path()).map(|_| ()));
    says(&e, &["num_hidden_layers", "-1"]);
}

#[test]
fn model_pytorch_bin_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"PK\x03\x04").unwrap();
    let e = err(load(dir.path()));
    says(&e, &["pytorch_model.bin", "safetensors"]);
}

#[test]
fn model_unknown_device() {
    let e = err("gpu".parse::<Device>());
    assert!(matches!(&e, Error::UnknownDevice(d) if d == "gpu"), "{e}");
    for bad in ["cuda:", "cuda:x", "cuda:-1", "CPU0", ""] {
        assert!(
            matches!(bad.parse::<Device>(), Err(Error::UnknownDevice(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn model_empty_input_is_zero_rows() {
    let model = load(&repo_root().join(SMALL_STATIC)).unwrap();
    let out = model.encode(&[]).unwrap();
    assert_eq!((out.rows(), out.dim()), (0, model.dim()));
    // And an empty text is a zero row (model2vec: no token left), not an error.
    let out = model.encode(&[""]).unwrap();
    assert_eq!(out.rows(), 1);
    assert!(out.row(0).iter().all(|&x| x == 0.0));
}

// ---------------------------------------------------------------------------------------------
// batch layouts and ids

#[test]
fn token_ids_past_the_table() {
    let e = err(TokenBags::new(vec![0, 1, 10], vec![0, 3], 10));
    assert!(
        matches!(
            e,
            Error::IdOutOfRange {
                id: 10,
                position: 2,
                vocab: 10
            }
        ),
        "{e}"
    );
    let e = err(TokenBags::from_bags(&[vec![1u32], vec![u32::MAX]], 5));
    assert!(matches!(e, Error::IdOutOfRange { .. }), "{e}");
}

#[test]
fn token_bag_offsets_inconsistent() {
    for (offsets, words) in [
        (vec![1, 2], "start at 0"),
        (vec![0, 2, 1], "must not decrease"),
        (vec![0, 5], ""),
    ] {
        let e = err(TokenBags::new(vec![0, 1], offsets.clone(), 10));
        assert!(matches!(e, Error::Layout(_)), "{offsets:?}: {e}");
        says(&e, &[words]);
    }
}

#[test]
fn cu_seq_lens_decreasing_or_overlong() {
    let tokens = || Tensor::zeros([6, 4], stk_core::DType::F32).unwrap();
    for bad in [
        &[][..],
        &[1, 6][..],
        &[0, 4, 2, 6][..],
        &[0, 3, 7][..],
        &[0, 3, 5][..],
        &[0, -1, 6][..],
        &[0, 3, i64::MAX][..],
    ] {
        let e = err(VarlenBatch::new(tokens(), bad).map(|_| ()));
        assert!(matches!(e, Error::Layout(_)), "{bad:?}: {e}");
    }
    let e = err(VarlenBatch::new(
        Tensor::zeros([2, 3, 4, 5], stk_core::DType::F32).unwrap(),
        &[0, 1],
    )
    .map(|_| ()));
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn attention_mask_wrong_shape_or_values() {
    let tokens = || Tensor::zeros([2, 3, 4], stk_core::DType::F32).unwrap();
    let mask = Tensor::from_slice([3, 3], &[1i64; 9]).unwrap();
    let e = err(PaddedBatch::new(tokens(), Some(&mask)).map(|_| ()));
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    says(&e, &["attention_mask"]);
    let mask = Tensor::from_slice([2, 3], &[1i64, 2, 0, 1, 1, 0]).unwrap();
    let e = err(PaddedBatch::new(tokens(), Some(&mask)).map(|_| ()));
    assert!(matches!(e, Error::Layout(_)), "{e}");
    let ints = Tensor::zeros([2, 3, 4], stk_core::DType::I32).unwrap();
    let e = err(PaddedBatch::new(ints, None).map(|_| ()));
    assert!(matches!(e, Error::DType { .. }), "{e}");
}

#[test]
fn unknown_pooling_mode() {
    let e = err("avg".parse::<PoolingMode>());
    assert!(
        matches!(&e, Error::UnknownPoolingMode(m) if m == "avg"),
        "{e}"
    );
    let e = err(PoolingMode::parse_list("mean,,max"));
    assert!(matches!(e, Error::UnknownPoolingMode(_)), "{e}");
}

#[test]
fn tensor_bytes_disagree_with_shape() {
    let e = err(Tensor::from_bytes([2, 2], stk_core::DType::F32, &[0u8; 15]));
    assert!(
        matches!(e, Error::Shape { .. } | Error::InvalidArgument(_)),
        "{e}"
    );
    let e = err(Tensor::from_slice([usize::MAX, 2], &[0f32; 4]));
    assert!(
        matches!(e, Error::Shape { .. } | Error::InvalidArgument(_)),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// outputs

#[test]
fn output_in_a_missing_folder_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("missing").join("out.safetensors");
    let t = Tensor::from_slice([1], &[1f32]).unwrap();
    let e = err(write_safetensors(&out, &[("t", &t)]));
    assert!(matches!(e, Error::Io { .. }), "{e}");
    says(&e, &["output folder does not exist"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn output_write_error_midway_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bin");
    let e = err(write_file_atomic(&out, |w| {
        use std::io::Write;
        w.write_all(&[0u8; 100_000]).unwrap();
        Err(Error::invalid("the input ended badly"))
    }));
    says(&e, &["the input ended badly"]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temporary file left behind"
    );
}

#[test]
fn output_path_is_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("already_a_dir");
    std::fs::create_dir(&target).unwrap();
    let t = Tensor::from_slice([1], &[1f32]).unwrap();
    let e = err(write_safetensors(&target, &[("t", &t)]));
    assert!(matches!(e, Error::Io { .. }), "{e}");
    let names: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names, [target], "a temporary file was left behind");
}

// ---------------------------------------------------------------------------------------------
// NaN and infinity: propagated as the reference (torch) propagates them, never replaced.
// torch semantics used below: `max` (torch.max) propagates NaN; sums propagate NaN and give
// NaN for inf + (-inf); `Normalize` divides by `clamp_min(‖x‖, 1e-12)`, which keeps a NaN norm.

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;

/// `[1, T, D]` f32 tokens (`rows` are the T token vectors) with an optional 0/1 mask.
fn padded(rows: &[&[f32]], mask: Option<&[i64]>) -> PaddedBatch {
    let d = rows[0].len();
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    let tokens = Tensor::from_vec([1, rows.len(), d], flat).unwrap();
    let mask = mask.map(|m| Tensor::from_slice([1, m.len()], m).unwrap());
    PaddedBatch::new(tokens, mask.as_ref()).unwrap()
}

fn pool(batch: &PaddedBatch, mode: PoolingMode) -> Vec<f32> {
    let spec = stk_core::PoolingSpec::new(vec![mode]).unwrap();
    stk_cpu::pool_padded(batch, &spec, &stk_cpu::PoolExtras::default())
        .unwrap()
        .to_f32_vec()
        .unwrap()
}

/// Elementwise equality where NaN equals NaN and infinities must match in sign.
#[track_caller]
fn same(got: &[f32], want: &[f32]) {
    let ok = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (g.is_nan() && w.is_nan()) || g == w);
    assert!(ok, "got {got:?}, want {want:?}");
}

#[test]
fn nan_pool_max_propagates_nan_of_a_real_token() {
    let b = padded(&[&[1.0, NAN], &[3.0, 2.0], &[-1.0, 5.0]], None);
    same(&pool(&b, PoolingMode::Max), &[3.0, NAN]);
    // The NaN first or last in the sequence: still NaN (it must not be overwritten).
    let b = padded(&[&[NAN, 0.0], &[1.0, 0.0]], None);
    same(&pool(&b, PoolingMode::Max), &[NAN, 0.0]);
    let b = padded(&[&[1.0, 0.0], &[NAN, 0.0]], None);
    same(&pool(&b, PoolingMode::Max), &[NAN, 0.0]);
}

#[test]
fn nan_pool_max_ignores_padding_like_masked_fill() {
    // torch: masked_fill(mask == 0, -inf) replaces the padding, NaN included, before the max.
    let b = padded(&[&[1.0, 2.0], &[NAN, INF]], Some(&[1, 0]));
    same(&pool(&b, PoolingMode::Max), &[1.0, 2.0]);
    let b = padded(&[&[INF, -INF], &[2.0, 2.0]], None);
    same(&pool(&b, PoolingMode::Max), &[INF, 2.0]);
}

#[test]
fn nan_pool_max_propagates_nan_in_half_precision_and_varlen() {
    let rows: Vec<stk_core::f16> = [1.0, NAN, 3.0, 2.0]
        .iter()
        .map(|&x| stk_core::f16::from_f32(x))
        .collect();
    let b = PaddedBatch::new(Tensor::from_vec([1, 2, 2], rows).unwrap(), None).unwrap();
    let spec = stk_core::PoolingSpec::new(vec![PoolingMode::Max]).unwrap();
    let out = stk_cpu::pool_padded(&b, &spec, &stk_cpu::PoolExtras::default()).unwrap();
    assert_eq!(out.dtype(), stk_core::DType::F16);
    same(&out.to_f32_vec().unwrap(), &[3.0, NAN]);

    // torch scatter_reduce(amax) propagates NaN too.
    let tokens = Tensor::from_vec([4, 1], vec![1.0f32, NAN, 5.0, 4.0]).unwrap();
    let v = VarlenBatch::new(tokens, &[0, 2, 4]).unwrap();
    let out = stk_cpu::pool_varlen(&v, &spec, &stk_cpu::PoolExtras::default()).unwrap();
    same(&out.to_f32_vec().unwrap(), &[NAN, 5.0]);
}

#[test]
fn nan_pool_mean_with_infinities() {
    let b = padded(&[&[INF, 1.0, INF], &[1.0, -INF, -INF]], None);
    same(&pool(&b, PoolingMode::Mean), &[INF, -INF, NAN]);
    same(&pool(&b, PoolingMode::MeanSqrtLenTokens), &[INF, -INF, NAN]);
    same(&pool(&b, PoolingMode::WeightedMean), &[INF, -INF, NAN]);
    // A finite sum that overflows f32 is inf, as in the reference's f32 sum.
    let b = padded(&[&[f32::MAX], &[f32::MAX]], None);
    same(&pool(&b, PoolingMode::Mean), &[INF]);
}

#[test]
fn nan_pool_mean_propagates_nan_of_a_real_token() {
    let b = padded(&[&[NAN, 1.0], &[2.0, 3.0], &[0.0, 0.0]], Some(&[1, 1, 0]));
    same(&pool(&b, PoolingMode::Mean), &[NAN, 2.0]);
    same(
        &pool(&b, PoolingMode::WeightedMean),
        &[NAN, (1.0 + 2.0 * 3.0) / 3.0],
    );
}

#[test]
fn nan_pool_cls_and_lasttoken_copy_nan() {
    let b = padded(&[&[NAN, 1.0], &[2.0, INF]], None);
    same(&pool(&b, PoolingMode::Cls), &[NAN, 1.0]);
    same(&pool(&b, PoolingMode::LastToken), &[2.0, INF]);
    // A row with no real token: lasttoken gathers position 0 of `x × mask`, and inf × 0 and
    // NaN × 0 are NaN; cls takes position 0 as it is.
    let b = padded(&[&[INF, NAN, -1.0], &[1.0, 1.0, 1.0]], Some(&[0, 0]));
    same(&pool(&b, PoolingMode::LastToken), &[NAN, NAN, -0.0]);
    same(&pool(&b, PoolingMode::Cls), &[INF, NAN, -1.0]);
}

#[test]
#[ignore = "known divergence, reported to the lead: the fast pooling path never reads padding, \
            while torch multiplies it by 0 and NaN/inf × 0 = NaN (see docs/robustness.md)"]
fn nan_pool_mean_non_finite_padding_gives_nan_like_torch() {
    // torch: (x * mask).sum(1): the padded NaN and inf become NaN, not 0.
    let b = padded(&[&[1.0, 2.0], &[NAN, INF]], Some(&[1, 0]));
    same(&pool(&b, PoolingMode::Mean), &[NAN, NAN]);
    same(&pool(&b, PoolingMode::WeightedMean), &[NAN, NAN]);
}

#[test]
fn nan_normalize_propagates() {
    let t = Tensor::from_vec(
        [4, 3],
        vec![
            NAN, 0.0, 0.0, // a NaN component: the norm is NaN, so every component is
            INF, 1.0, 0.0, // an inf component: inf/inf = NaN, 1/inf = 0
            0.0, 0.0, 0.0, // zero stays zero (max(‖x‖, 1e-12))
            3.0, 4.0, 0.0,
        ],
    )
    .unwrap();
    let out = stk_cpu::normalize(&t).unwrap().to_f32_vec().unwrap();
    same(
        &out,
        &[NAN, NAN, NAN, NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.8, 0.0],
    );
}

#[test]
fn nan_embedding_bag_propagates_only_to_texts_that_use_the_row() {
    let table = Tensor::from_vec([3, 2], vec![1.0f32, 2.0, NAN, 0.0, INF, -1.0]).unwrap();
    let bag = stk_cpu::EmbeddingBag::new(table, None, None).unwrap();
    let bags = TokenBags::from_bags(&[vec![0u32], vec![0, 1], vec![0, 2], vec![]], 3).unwrap();
    let out = bag.bag_mean(&bags).unwrap().to_f32_vec().unwrap();
    same(&out, &[1.0, 2.0, NAN, 1.0, INF, 0.5, 0.0, 0.0]);
}

#[test]
fn nan_weighted_layer_pooling_propagates_from_a_layer() {
    // [L+1 = 2, B = 1, T = 1, D = 2]: layer 1 has a NaN and an inf.
    let layers = Tensor::from_vec([2, 1, 1, 2], vec![1.0f32, 1.0, NAN, INF]).unwrap();
    let w = Tensor::from_vec([2], vec![1.0f32, 1.0]).unwrap();
    let out = stk_cpu::weighted_layer_pooling(&layers, 0, &w).unwrap();
    same(&out.to_f32_vec().unwrap(), &[NAN, INF]);
    // Weights that sum to a non-finite value or zero are refused (torch would divide by them).
    let w = Tensor::from_vec([2], vec![1.0f32, NAN]).unwrap();
    let e = err(stk_cpu::weighted_layer_pooling(&layers, 0, &w).map(|_| ()));
    says(&e, &["layer_weights", "NaN"]);
}

// ---------------------------------------------------------------------------------------------
// degenerate shapes: zero batch, zero length, zero width give empty or zero results, not panics

#[test]
fn degenerate_shapes_do_not_panic() {
    let all_modes = stk_core::PoolingSpec::new(
        PoolingMode::parse_list("cls,max,mean,mean_sqrt_len_tokens,weightedmean,lasttoken")
            .unwrap(),
    )
    .unwrap();
    let extras = stk_cpu::PoolExtras::default();
    for dims in [[0usize, 0, 0], [0, 3, 4], [2, 0, 4], [2, 3, 0], [1, 1, 1]] {
        let tokens = Tensor::zeros(dims, stk_core::DType::F32).unwrap();
        let b = PaddedBatch::new(tokens, None).unwrap();
        let out = stk_cpu::pool_padded(&b, &all_modes, &extras).unwrap();
        assert_eq!(out.dims(), [dims[0], 6 * dims[2]], "{dims:?}");
        for p in [Some(0), Some(1), Some(1000), Some(usize::MAX)] {
            let spec = all_modes.clone().with_prompt_length(p);
            let out = stk_cpu::pool_padded(&b, &spec, &extras).unwrap();
            assert_eq!(out.dims(), [dims[0], 6 * dims[2]], "{dims:?} prompt {p:?}");
        }
    }
    for (n, cu) in [
        (0usize, vec![0i64]),
        (0, vec![0, 0, 0]),
        (3, vec![0, 0, 3, 3]),
    ] {
        let tokens = Tensor::zeros([n, 4], stk_core::DType::F32).unwrap();
        let v = VarlenBatch::new(tokens, &cu).unwrap();
        for p in [None, Some(2), Some(usize::MAX)] {
            let spec = all_modes.clone().with_prompt_length(p);
            let out = stk_cpu::pool_varlen(&v, &spec, &extras).unwrap();
            assert_eq!(out.dims(), [cu.len() - 1, 24], "{cu:?} prompt {p:?}");
        }
    }
    for dims in [&[0usize, 4][..], &[2, 0][..], &[0][..]] {
        let t = Tensor::zeros(dims.to_vec(), stk_core::DType::F32).unwrap();
        let out = stk_cpu::normalize(&t).unwrap();
        assert_eq!(out.dims(), dims);
    }
    let e = err(stk_cpu::normalize(
        &Tensor::zeros(Vec::<usize>::new(), stk_core::DType::F32).unwrap(),
    )
    .map(|_| ()));
    says(&e, &["sentence_embedding"]);
    let layers = Tensor::zeros([3, 0, 0, 0], stk_core::DType::F32).unwrap();
    let w = Tensor::from_vec([2], vec![1f32, 1.0]).unwrap();
    let out = stk_cpu::weighted_layer_pooling(&layers, 1, &w).unwrap();
    assert_eq!(out.dims(), [0, 0, 0]);
    let bag = stk_cpu::EmbeddingBag::new(
        Tensor::zeros([0, 4], stk_core::DType::F32).unwrap(),
        None,
        None,
    )
    .unwrap();
    let e = err(TokenBags::from_bags(&[vec![0u32]], bag.vocab()));
    assert!(matches!(e, Error::IdOutOfRange { vocab: 0, .. }), "{e}");
    let empty_bags = TokenBags::from_bags(&[Vec::<u32>::new(), vec![]], bag.vocab()).unwrap();
    let out = bag.bag_mean(&empty_bags).unwrap();
    assert_eq!(out.to_f32_vec().unwrap(), [0.0; 8]);
}
