//! The `stk` binary carries its default model: a copy of it, run from a temporary folder with
//! an empty environment and no `--model`, encodes the golden texts as the reference does, and
//! its bytes hold no path into the checkout's `models/` folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use stk_core::SafetensorsFile;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The binary copied into `dir` (as an installed one would be, away from the checkout).
fn installed_copy(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let copy = bin.join("stk");
    std::fs::copy(env!("CARGO_BIN_EXE_stk"), &copy).unwrap();
    copy
}

#[test]
fn an_installed_copy_encodes_golden_texts_with_the_embedded_model() {
    let tmp = tempfile::tempdir().unwrap();
    let stk = installed_copy(tmp.path());
    // (golden case, the flags that select its semantics; none: the model's own default)
    let cases: [(&str, &[&str]); 2] = [
        (
            "static_potion-base-8M-f16",
            &["--semantics", "sentence-transformers", "--no-normalize"],
        ),
        ("model2vec_potion-base-8M-f16", &[]),
    ];
    for (case, flags) in cases {
        let golden = repo_root().join("tests/golden").join(case);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(golden.join("case.json")).unwrap())
                .unwrap();
        std::fs::copy(golden.join("texts.json"), tmp.path().join("texts.json")).unwrap();
        let o = Command::new(&stk)
            .args([
                "encode",
                "--input",
                "texts.json",
                "--output",
                "out.safetensors",
            ])
            .args(flags)
            .arg("--quiet")
            .env_clear()
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let read = |path: &Path, name: &str| {
            let t = SafetensorsFile::open(path).unwrap().get(name).unwrap();
            (t.dims().to_vec(), t.to_f32_vec().unwrap())
        };
        let (dims, got) = read(&tmp.path().join("out.safetensors"), "embeddings");
        let (want_dims, want) = read(&golden.join("expected.safetensors"), "expected");
        assert_eq!(dims, want_dims, "{case}");
        let tol = json["tolerance"].as_f64().unwrap() as f32;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= tol * w.abs().max(1.0),
                "{case}: value {i}: got {g}, expected {w}"
            );
        }
    }
}

#[test]
fn the_binary_holds_no_path_into_the_checkout_models() {
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_stk")).unwrap();
    // The checkout, canonical and as cargo spells it; any absolute path into it starts so.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spellings = [
        repo_root().display().to_string(),
        manifest
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .display()
            .to_string(),
    ];
    for prefix in &spellings {
        let needle = prefix.as_bytes();
        let hits = bytes
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i);
        for at in hits {
            // The path that starts here: its run of path characters.
            let path: Vec<u8> = bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(b))
                .copied()
                .collect();
            let after = String::from_utf8_lossy(&path);
            assert!(
                !after.contains("models/"),
                "the binary names a model folder of the checkout: {after}"
            );
        }
    }
}
