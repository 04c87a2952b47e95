//! The `metaspace-unigram` fast path gives exactly the `tokenizers` crate's ids: on the golden
//! texts, on the bench corpus (when `../shared` is there), on hand-picked corner cases of the
//! charsmap normalizer, the Metaspace splitting and the Viterbi search, and on random strings.

mod tokenize_util;

use std::sync::OnceLock;

use proptest::prelude::*;
use stk_cpu::Tokenizer;
use tokenize_util::*;

/// Loaded once per test binary (the crate takes seconds to load a large vocabulary in debug).
fn stk_unigram() -> &'static (Tokenizer, tokenizers::Tokenizer) {
    static PAIR: OnceLock<(Tokenizer, tokenizers::Tokenizer)> = OnceLock::new();
    PAIR.get_or_init(|| {
        load_pair(
            &model_tokenizer("stk-unigram-8k-64d-int8"),
            "metaspace-unigram",
        )
    })
}

#[test]
fn golden_texts_match() {
    let (ours, reference) = stk_unigram();
    assert_golden_texts_identical(ours, reference);
}

#[test]
fn bench_corpus_matches() {
    let (ours, reference) = stk_unigram();
    assert_bench_corpus_identical(ours, reference);
}

#[test]
fn corner_cases() {
    let (ours, reference) = stk_unigram();
    let cases: Vec<String> = [
        "",
        " ",
        "▁",
        "▁▁",
        "a▁▁b ▁c d▁",
        "  leading and trailing  ",
        "line\r\nbreaks\rand\nmore\u{85}\u{2028}x\u{3000}y",
        "\t tabs \u{0B}\u{0C}\u{0}\u{1}\u{7f} controls",
        "e\u{0301} é ñ n\u{0303} Å A\u{030A} \u{1100}\u{1161}\u{11A8} 각",
        "ＦＵＬＬＷＩＤＴＨ ｈａｌｆ ①②③ ½ ² ㎏ ℃ ﬁ ™ …",
        "東京は日本の首都です。北京欢迎你！한국어 문장입니다.",
        "がぎぐ か\u{3099} ｶﾞ ﾊﾟ",
        "emoji 😀👍🏽 👨‍👩‍👧 🇫🇷🇩🇪 𝔾𝕠𝕠𝕕 𠀀",
        "zero\u{200b}width\u{200d}joiner\u{feff}bom\u{ad}soft",
        "<unk> <pad> x<unk>y <PAD> < pad >",
        "qqqqzzzxxxjjj ÿÿÿ \u{e000}\u{e001} \u{10ffff}",
        "The quick brown fox jumps over the lazy dog; 1234567890!",
        "fullwidth \u{ff1c}\u{ff50}\u{ff41}\u{ff44}\u{ff1e} is <pad> once normalized",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["x".repeat(300), "▁".repeat(7), "é".repeat(50)])
    .collect();
    assert_identical(ours, reference, &cases);
    // The fast path really ran on the Unicode-heavy cases.
    for i in [4, 6, 8, 9, 10, 11, 12] {
        assert!(ours.encode_fast_only(&cases[i]).is_some(), "{:?}", cases[i]);
    }
    // Added tokens in the text go to the crate, also one that only normalization (NFKC) makes.
    assert!(ours.encode_fast_only(&cases[14]).is_none());
    assert!(
        ours.encode_fast_only(&cases[17]).is_none(),
        "{:?}",
        cases[17]
    );
}

#[test]
fn truncated_fast_path_equals_prefix() {
    let (ours, reference) = stk_unigram();
    for text in golden_texts().iter().take(40) {
        let full = reference_ids(reference, text);
        for max in [1usize, 2, 5, 17] {
            let got = ours.encode_truncated(text, max).unwrap();
            assert_eq!(got[..], full[..max.min(full.len())], "{max} {text:?}");
        }
    }
}

fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('A', 'Z'),
        1 => proptest::char::range('0', '9'),
        3 => Just(' '),
        1 => Just('▁'),
        1 => prop::sample::select(vec![
            '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{0}', '\u{1}', '\u{7f}', '\u{85}', '\u{A0}',
            '\u{2000}', '\u{200B}', '\u{200D}', '\u{3000}', '\u{FEFF}', '\u{FFFD}', '\u{E000}',
            '\u{AD}', '\u{2028}',
        ]),
        2 => prop::sample::select(vec![
            '.', ',', '!', '?', '#', '\'', '"', '(', ')', '<', '>', '-', '_', '/', '\\', '@',
            '«', '»', '“', '”', '—', '…', '。', '、', '¿', '™', '½', '①', '㎏', 'ﬁ',
        ]),
        2 => proptest::char::range('\u{C0}', '\u{24F}'),
        2 => prop::sample::select(vec![
            '\u{0300}', '\u{0301}', '\u{0303}', '\u{0308}', '\u{030A}', '\u{0316}', '\u{0345}',
            '\u{094D}', '\u{093E}', '\u{3099}', '\u{309A}', '\u{FE0F}', '\u{1F3FD}',
        ]),
        1 => proptest::char::range('\u{370}', '\u{3FF}'),
        1 => proptest::char::range('\u{400}', '\u{4FF}'),
        1 => proptest::char::range('\u{1100}', '\u{11FF}'),
        2 => proptest::char::range('\u{3040}', '\u{30FF}'),
        2 => proptest::char::range('\u{4E00}', '\u{4F00}'),
        1 => proptest::char::range('\u{F900}', '\u{FAFF}'),
        2 => proptest::char::range('\u{AC00}', '\u{D7A3}'),
        2 => proptest::char::range('\u{FF00}', '\u{FFEF}'),
        1 => proptest::char::range('\u{1F1E6}', '\u{1F1FF}'),
        1 => proptest::char::range('\u{1F300}', '\u{1F6FF}'),
        1 => proptest::char::range('\u{1D400}', '\u{1D7FF}'),
        1 => any::<char>(),
    ]
}

fn interesting_text() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => proptest::collection::vec(interesting_char(), 0..60)
            .prop_map(|v| v.into_iter().collect()),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn random_unicode_matches_the_crate(text in interesting_text()) {
        let (ours, reference) = stk_unigram();
        let expected = reference_ids(reference, &text);
        prop_assert_eq!(ours.encode(&text).unwrap(), expected.clone());
        if let Some(ids) = ours.encode_fast_only(&text) {
            prop_assert_eq!(ids, expected);
        }
    }
}
