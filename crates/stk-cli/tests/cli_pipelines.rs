//! Pipeline folders that stk cannot run, through the command line: `stk encode` exits with a
//! message naming what is wrong (the module type, the file) and leaves no output file.
//! (The pipeline golden cases themselves run through `stk encode` in `cli_encode.rs`.)

#[path = "../../../tests/lib.rs"]
#[allow(dead_code)]
mod golden;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of a golden pipeline model folder that a test may break.
fn golden_model_copy(case: &str, into: &Path) -> PathBuf {
    fn copy_dir(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            let to = dst.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &to);
            } else {
                std::fs::copy(entry.path(), &to).unwrap();
            }
        }
    }
    let dst = into.join("model");
    copy_dir(&golden::golden_dir().join(case).join("model"), &dst);
    dst
}

/// Run `stk encode` on `model`; it must fail with every one of `needles` in its message and
/// write nothing.
fn encode_fails(model: &Path, needles: &[&str]) {
    let dir = model.parent().unwrap();
    let input = dir.join("texts.json");
    std::fs::write(&input, r#"["a list of words", ""]"#).unwrap();
    let out = dir.join("out.safetensors");
    let run = Command::new(env!("CARGO_BIN_EXE_stk"))
        .args(["encode", "--quiet", "--model"])
        .arg(model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success(),
        "stk encode succeeded on a broken folder"
    );
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "message lacks `{n}`: {err}");
    }
    assert!(!out.exists(), "an output file was written");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("out.safetensors"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn unsupported_module_type_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let model = golden_model_copy("wordemb_mean", tmp.path());
    std::fs::write(
        model.join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    encode_fails(
        &model,
        &["sentence_transformers.models.Transformer", "WordEmbeddings"],
    );
}

#[test]
fn pickled_weights_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = golden_model_copy("cnn_max", tmp.path());
    std::fs::rename(
        model.join("1_CNN/model.safetensors"),
        model.join("1_CNN/pytorch_model.bin"),
    )
    .unwrap();
    encode_fails(&model, &["pytorch_model.bin", "model.safetensors"]);
}

#[test]
fn malformed_files_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = golden_model_copy("lstm_mean", tmp.path());
    std::fs::write(model.join("modules.json"), r#"{"not": "a list"}"#).unwrap();
    encode_fails(&model, &["modules.json"]);

    let tmp = tempfile::tempdir().unwrap();
    let model = golden_model_copy("lstm_mean", tmp.path());
    std::fs::write(
        model.join("1_LSTM/lstm_config.json"),
        r#"{"hidden_dim": 32"#,
    )
    .unwrap();
    encode_fails(&model, &["lstm_config.json"]);

    // Tensor shapes that disagree with the config name the tensor.
    let tmp = tempfile::tempdir().unwrap();
    let model = golden_model_copy("lstm_mean", tmp.path());
    std::fs::write(
        model.join("1_LSTM/lstm_config.json"),
        r#"{"embedding_dimension": 64, "hidden_dim": 16, "num_layers": 2, "bidirectional": true}"#,
    )
    .unwrap();
    encode_fails(&model, &["encoder.weight_ih_l0"]);
}
