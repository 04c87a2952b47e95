//! The tokenizer's API contract: same ids as the `tokenizers` crate, truncation semantics,
//! vocabulary access, and clear errors on files that are not tokenizers.

mod tokenize_util;

use std::io::Write;

use stk_core::Error;
use stk_cpu::Tokenizer;
use tokenize_util::*;

const MODELS: [&str; 3] = [
    "potion-base-8M-f16",
    "potion-base-8M-int8-vq2048-d128",
    "stk-unigram-8k-64d-int8",
];

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
}

#[test]
fn golden_texts_match_the_crate_for_every_committed_model() {
    let texts = golden_texts();
    for model in MODELS {
        let path = model_tokenizer(model);
        let ours = Tokenizer::from_file(&path).unwrap();
        let reference = reference(&path);
        for text in &texts {
            assert_eq!(
                ours.encode(text).unwrap(),
                reference_ids(&reference, text),
                "{model} ({}): {text:?}",
                ours.backend()
            );
        }
    }
}

#[test]
fn truncation_keeps_the_first_ids() {
    let path = model_tokenizer("potion-base-8M-f16");
    let ours = Tokenizer::from_file(&path).unwrap();
    let mut reference = tokenizers::Tokenizer::from_file(&path).unwrap();
    reference.with_padding(None);
    let text = "Lookups search the underlying mappings successively until a key is found, \
                unbelievably ﬁnely-grained Ünïcödé 東京 tokenization!";
    let full = ours.encode(text).unwrap();
    assert!(full.len() > 20);
    assert!(ours.encode_truncated(text, 0).unwrap().is_empty());
    assert_eq!(ours.encode_truncated(text, 1).unwrap(), full[..1]);
    // The crate panics (subtract overflow) on a truncation length below the number of special
    // tokens of its post-processor (2 here), so 0 and 1 are checked as prefixes only.
    for max in [2usize, 3, 7, 19, full.len(), full.len() + 5] {
        reference
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max,
                ..Default::default()
            }))
            .unwrap();
        let expected = reference.encode(text, false).unwrap().get_ids().to_vec();
        let got = ours.encode_truncated(text, max).unwrap();
        assert_eq!(got, expected, "max_tokens {max}");
        assert_eq!(got[..], full[..max.min(full.len())]);
    }
}

#[test]
fn the_tokenizer_json_truncation_setting_is_ignored() {
    // potion's tokenizer.json truncates to 512; `encode` must not.
    let ours = Tokenizer::from_file(&model_tokenizer("potion-base-8M-f16")).unwrap();
    let text = "word ".repeat(700);
    assert_eq!(ours.encode(&text).unwrap().len(), 700);
}

#[test]
fn batch_equals_one_by_one() {
    let ours = Tokenizer::from_file(&model_tokenizer("stk-unigram-8k-64d-int8")).unwrap();
    let texts = golden_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = ours.encode_batch(&refs).unwrap();
    assert_eq!(batch.len(), refs.len());
    for (t, ids) in refs.iter().zip(&batch) {
        assert_eq!(ids, &ours.encode(t).unwrap());
    }
    let truncated = ours.encode_batch_truncated(&refs, 3).unwrap();
    for (full, cut) in batch.iter().zip(&truncated) {
        assert_eq!(&full[..full.len().min(3)], &cut[..]);
    }
    assert!(ours.encode_batch(&[]).unwrap().is_empty());
    assert!(ours.encode("").unwrap().is_empty());
}

#[test]
fn unk_and_vocab() {
    let potion = Tokenizer::from_file(&model_tokenizer("potion-base-8M-f16")).unwrap();
    assert_eq!(potion.unk_id(), Some(1));
    assert_eq!(potion.id_to_token(1).as_deref(), Some("[UNK]"));
    assert_eq!(potion.vocab_size(), 29528);
    let vocab = potion.vocab();
    assert_eq!(vocab.len(), 29528);
    assert_eq!(vocab.get("[UNK]"), Some(&1));
    assert_eq!(potion.token_to_id("[UNK]"), Some(1));
    // A character outside the vocabulary becomes the unknown token.
    assert_eq!(potion.encode("\u{2603}").unwrap(), vec![1]);
    // The figures kept from load agree with the vocabulary.
    assert_eq!(potion.id_space(), 29528);
    let mut lengths: Vec<u32> = vocab.keys().map(|t| t.chars().count() as u32).collect();
    lengths.sort_unstable();
    let mut kept = potion.token_lengths_in_chars().to_vec();
    kept.sort_unstable();
    assert_eq!(kept, lengths);
    assert_eq!(lengths.first(), Some(&1));

    let unigram = Tokenizer::from_file(&model_tokenizer("stk-unigram-8k-64d-int8")).unwrap();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_tokenizer("stk-unigram-8k-64d-int8")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        unigram.unk_id().map(u64::from),
        json["model"]["unk_id"].as_u64()
    );
    assert_eq!(
        unigram.vocab_size(),
        json["model"]["vocab"].as_array().unwrap().len()
    );
}

fn write_temp(content: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content).unwrap();
    f
}

#[test]
fn bad_files_are_clear_errors() {
    let missing = std::path::Path::new("/nonexistent/dir/tokenizer.json");
    let e = Tokenizer::from_file(missing).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/dir/tokenizer.json"));

    let not_json = write_temp(b"\x00\x01 this is not json");
    let e = Tokenizer::from_file(not_json.path()).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert!(e
        .to_string()
        .contains(&not_json.path().display().to_string()));

    let not_tokenizer = write_temp(br#"{"hello": 1}"#);
    let e = Tokenizer::from_file(not_tokenizer.path()).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert!(e.to_string().contains("model"), "{e}");

    let broken_model = write_temp(br#"{"model": {"type": "WordPiece", "vocab": 3}}"#);
    let e = Tokenizer::from_file(broken_model.path()).unwrap_err();
    assert!(matches!(e, Error::Tokenizer(_)), "{e}");
    assert!(e
        .to_string()
        .contains(&broken_model.path().display().to_string()));

    let array = write_temp(b"[1, 2, 3]");
    assert!(matches!(
        Tokenizer::from_file(array.path()).unwrap_err(),
        Error::Config { .. }
    ));
}
