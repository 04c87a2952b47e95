//! Helpers shared by the tokenizer tests: where the models and texts are, and the reference
//! (`tokenizers` crate) encoding to compare with.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Repository root (the ancestor holding `tests/golden`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("tests").join("golden").is_dir())
        .expect("repository root with tests/golden not found")
        .to_path_buf()
}

/// `tokenizer.json` of a committed model.
pub fn model_tokenizer(model: &str) -> PathBuf {
    let p = repo_root()
        .join("models")
        .join(model)
        .join("tokenizer.json");
    assert!(p.is_file(), "missing committed tokenizer {}", p.display());
    p
}

/// All texts of every golden case (`tests/golden/*/texts.json`), in a stable order.
pub fn golden_texts() -> Vec<String> {
    let golden = repo_root().join("tests").join("golden");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("texts.json").is_file())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for d in dirs {
        let texts: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(d.join("texts.json")).unwrap()).unwrap();
        out.extend(texts);
    }
    assert!(out.len() > 50, "too few golden texts: {}", out.len());
    out
}

/// The bench corpus beside the checkout, when present (`None` with a printed note otherwise).
pub fn bench_sentences() -> Option<Vec<String>> {
    let p = repo_root()
        .parent()
        .map(|p| p.join("shared").join("bench").join("sentences.txt"));
    match p {
        Some(p) if p.is_file() => Some(
            std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect(),
        ),
        _ => {
            eprintln!(
                "NOTE: ../shared/bench/sentences.txt not found; the bench-corpus comparison did not run"
            );
            None
        }
    }
}

/// The crate's tokenizer for `path`, loaded independently of stk, truncation and padding off.
pub fn reference(path: &Path) -> tokenizers::Tokenizer {
    let mut t = tokenizers::Tokenizer::from_file(path).unwrap();
    t.with_truncation(None).unwrap();
    t.with_padding(None);
    t
}

/// The crate's ids for `text`, no special tokens.
pub fn reference_ids(t: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
    t.encode(text, false).unwrap().get_ids().to_vec()
}

/// Compare on `texts`; returns how many texts the fast path handled itself.
pub fn assert_identical(
    ours: &stk_cpu::Tokenizer,
    reference: &tokenizers::Tokenizer,
    texts: &[String],
) -> usize {
    let mut fast = 0;
    for text in texts {
        let expected = reference_ids(reference, text);
        assert_eq!(ours.encode(text).unwrap(), expected, "text {text:?}");
        if let Some(ids) = ours.encode_fast_only(text) {
            assert_eq!(ids, expected, "fast path, text {text:?}");
            fast += 1;
        }
    }
    fast
}

/// stk's tokenizer and the crate's for `path`, after checking that stk encodes with `backend`.
pub fn load_pair(path: &Path, backend: &str) -> (stk_cpu::Tokenizer, tokenizers::Tokenizer) {
    let ours = stk_cpu::Tokenizer::from_file(path).unwrap();
    assert_eq!(ours.backend(), backend, "{}", path.display());
    (ours, reference(path))
}

/// Every golden text gives the crate's ids, each on the fast path.
pub fn assert_golden_texts_identical(ours: &stk_cpu::Tokenizer, reference: &tokenizers::Tokenizer) {
    let texts = golden_texts();
    let fast = assert_identical(ours, reference, &texts);
    assert_eq!(
        fast,
        texts.len(),
        "every golden text should take the fast path"
    );
}

/// The bench corpus (when it is beside the checkout) gives the crate's ids, 99% or more of its
/// lines on the fast path.
pub fn assert_bench_corpus_identical(ours: &stk_cpu::Tokenizer, reference: &tokenizers::Tokenizer) {
    let Some(texts) = bench_sentences() else {
        return;
    };
    let fast = assert_identical(ours, reference, &texts);
    eprintln!(
        "bench corpus: {} lines, {fast} on the fast path",
        texts.len()
    );
    assert!(
        fast * 100 >= texts.len() * 99,
        "only {fast} of {} on the fast path",
        texts.len()
    );
}
