//! Arbitrary bytes as one file of a small model folder: loading the folder and encoding a few
//! texts with it must succeed or return an `Error`, never panic.
//!
//! Input layout: byte 0 chooses the folder (bits 2-3) and which of its four files to replace
//! (bits 0-1); the rest is that file's new content. Folders, copied once per process:
//! 0. static: `models/potion-base-8M-int8-vq2048-d128` (int8 table, mapping, weights) with its
//!    `tokenizer.json` cut to the first 1500 ids, so that a load takes milliseconds;
//! 1. `tests/golden/wordemb_mean/model` (WordEmbeddings + Pooling);
//! 2. `tests/golden/cnn_max/model` (WordEmbeddings + CNN + Pooling);
//! 3. `tests/golden/lstm_mean/model` (WordEmbeddings + LSTM + Pooling).
#![no_main]
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stk::Model;

/// The files each folder may have replaced, in selector order.
const FOLDERS: [(&str, [&str; 4]); 4] = [
    (
        "models/potion-base-8M-int8-vq2048-d128",
        [
            "modules.json",
            "config.json",
            "tokenizer.json",
            "model.safetensors",
        ],
    ),
    (
        "tests/golden/wordemb_mean/model",
        [
            "modules.json",
            "1_Pooling/config.json",
            "whitespacetokenizer_config.json",
            "model.safetensors",
        ],
    ),
    (
        "tests/golden/cnn_max/model",
        [
            "modules.json",
            "1_CNN/cnn_config.json",
            "wordembedding_config.json",
            "1_CNN/model.safetensors",
        ],
    ),
    (
        "tests/golden/lstm_mean/model",
        [
            "modules.json",
            "1_LSTM/lstm_config.json",
            "2_Pooling/config.json",
            "1_LSTM/model.safetensors",
        ],
    ),
];

/// Ids kept in the static folder's tokenizer: special tokens, single characters, common words.
const TOKENIZER_IDS: u64 = 1500;

struct Folders {
    _root: tempfile::TempDir,
    /// Per folder: its path, and the original bytes of each of its four files (`None` when the
    /// folder has no such file).
    folders: Vec<(PathBuf, Vec<Option<Vec<u8>>>)>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[path = "../../tests/copy_dir.rs"]
mod shared;
use shared::copy_dir;

/// Keep the vocabulary entries (and added tokens) whose id is below `TOKENIZER_IDS`.
fn cut_tokenizer(path: &Path) {
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let keep = |v: &serde_json::Value| v.as_u64().is_some_and(|id| id < TOKENIZER_IDS);
    json["model"]["vocab"]
        .as_object_mut()
        .unwrap()
        .retain(|_, id| keep(id));
    json["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| keep(&t["id"]));
    std::fs::write(path, serde_json::to_vec(&json).unwrap()).unwrap();
}

fn folders() -> &'static Folders {
    static F: OnceLock<Folders> = OnceLock::new();
    F.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let folders = FOLDERS
            .iter()
            .enumerate()
            .map(|(i, (rel, files))| {
                let dir = root.path().join(i.to_string());
                copy_dir(&repo().join(rel), &dir);
                if i == 0 {
                    cut_tokenizer(&dir.join("tokenizer.json"));
                }
                let originals = files
                    .iter()
                    .map(|f| std::fs::read(dir.join(f)).ok())
                    .collect();
                (dir, originals)
            })
            .collect();
        Folders {
            _root: root,
            folders,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    let folders = folders();
    let which = usize::from(selector >> 2) % FOLDERS.len();
    let file = usize::from(selector) % 4;
    let (dir, originals) = &folders.folders[which];
    let path = dir.join(FOLDERS[which].1[file]);
    std::fs::write(&path, content).unwrap();

    if let Ok(model) = Model::load(dir) {
        let texts = [
            "hello world",
            "",
            "ünïcödé and [UNK] tokens",
            "the the the the",
        ];
        if let Ok(out) = model.encode(&texts) {
            assert_eq!(out.rows(), texts.len());
            assert_eq!(out.dim(), model.dim());
        }
        let empty = model.encode(&[]).expect("empty input is zero rows");
        assert_eq!(empty.rows(), 0);
    }

    // Put the folder back as it was for the next input.
    match &originals[file] {
        Some(bytes) => std::fs::write(&path, bytes).unwrap(),
        None => std::fs::remove_file(&path).unwrap(),
    }
});
