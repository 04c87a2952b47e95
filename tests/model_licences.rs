//! Every model the repository ships is under an open licence: each folder under `models/`
//! carries a `NOTICE*` or `LICENSE*` file that names one, and `models/PROVENANCE.txt` says where
//! the folder came from. (A model from a package that states no licence must not be committed.)

use std::path::Path;

use stk_tests::repo_root;

/// SPDX identifiers of licences that allow redistributing model weights.
const OPEN_LICENCES: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "CC0-1.0",
    "CC-BY-4.0",
    "CC-BY-SA-4.0",
    "Unlicense",
];

/// The licence identifiers `text` names, as whole words.
fn named_licences(text: &str) -> Vec<&'static str> {
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .map(|w| w.trim_end_matches('.'))
        .collect();
    OPEN_LICENCES
        .iter()
        .copied()
        .filter(|l| words.contains(l))
        .collect()
}

/// The text of the folder's `NOTICE*` / `LICENSE*` files, or `None` when it has none.
fn notice_text(dir: &Path) -> Option<String> {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_uppercase();
        if path.is_file() && (name.starts_with("NOTICE") || name.starts_with("LICENSE")) {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    (!text.is_empty()).then_some(text)
}

#[test]
fn every_model_folder_names_an_open_licence() {
    let models = repo_root().join("models");
    let provenance = std::fs::read_to_string(models.join("PROVENANCE.txt"))
        .expect("models/PROVENANCE.txt says where each model came from");
    let mut folders = 0;
    for entry in std::fs::read_dir(&models).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        folders += 1;
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let notice = notice_text(&dir)
            .unwrap_or_else(|| panic!("models/{name} has no NOTICE or LICENSE file"));
        assert!(
            !named_licences(&notice).is_empty(),
            "models/{name}: its NOTICE/LICENSE names none of {OPEN_LICENCES:?}:\n{notice}"
        );
        assert!(
            provenance.contains(&format!("{name}/")),
            "models/PROVENANCE.txt does not say where models/{name} came from"
        );
    }
    assert!(folders > 0, "no model folders under {}", models.display());
}

#[test]
fn licence_names_are_matched_as_words() {
    let cases: &[(&str, &[&str])] = &[
        ("licensed MIT, copyright (c) MinishLab.", &["MIT"]),
        ("stk-unigram: MIT OR Apache-2.0.", &["MIT", "Apache-2.0"]),
        ("no license stated", &[]),
        ("SUBMITTED under Apache-2.0-only-ish", &[]),
        ("Apache 2", &[]),
    ];
    for (text, want) in cases {
        assert_eq!(named_licences(text), *want, "{text:?}");
    }
}
