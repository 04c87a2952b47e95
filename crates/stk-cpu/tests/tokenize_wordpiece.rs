//! The `bert-wordpiece` fast path gives exactly the `tokenizers` crate's ids: on the golden
//! texts, on the bench corpus (when `../shared` is there), on hand-picked Unicode corner
//! cases and on random Unicode strings, also with added tokens matched after normalization.

mod tokenize_util;

use std::sync::OnceLock;

use proptest::prelude::*;
use stk_cpu::Tokenizer;
use tokenize_util::*;

/// Loaded once per test binary (the crate takes seconds to load a large vocabulary in debug).
fn potion() -> &'static (Tokenizer, tokenizers::Tokenizer) {
    static PAIR: OnceLock<(Tokenizer, tokenizers::Tokenizer)> = OnceLock::new();
    PAIR.get_or_init(|| load_pair(&model_tokenizer("potion-base-8M-f16"), "bert-wordpiece"))
}

/// potion's tokenizer plus added tokens matched after normalization (`"normalized": true`):
/// the fast path then builds the normalized text and leaves a text that holds one to the crate.
fn potion_with_normalized_added_tokens() -> &'static (Tokenizer, tokenizers::Tokenizer) {
    static PAIR: OnceLock<(Tokenizer, tokenizers::Tokenizer)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let path = model_tokenizer("potion-base-8M-f16");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let added = json["added_tokens"].as_array_mut().unwrap();
        for (i, content) in NORMALIZED_ADDED.iter().enumerate() {
            added.push(serde_json::json!({
                "id": 40_000 + i, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": true, "special": false
            }));
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), serde_json::to_vec(&json).unwrap()).unwrap();
        load_pair(file.path(), "bert-wordpiece")
    })
}

/// Added tokens whose normalized forms cover the fast path's branches: an accent stripped, a
/// CJK ideograph (spaced), Hangul (split into jamo), a plain word.
const NORMALIZED_ADDED: [&str; 4] = ["naïve", "中", "한국", "stkword"];

#[test]
fn normalized_added_tokens_go_to_the_crate() {
    let (ours, reference) = potion_with_normalized_added_tokens();
    let cases = [
        ("plain text, no added token", true),
        ("NAIVE or Naïve people", false),
        ("我在中国", false),
        ("한국어 문장", false),
        ("see STKWORD here", false),
        ("日本語のテキスト、中ではない", false),
        ("日本語のテキスト", true),
        ("한글 텍스트", true),
    ];
    for (text, fast) in cases {
        assert_eq!(
            ours.encode(text).unwrap(),
            reference_ids(reference, text),
            "{text:?}"
        );
        assert_eq!(ours.encode_fast_only(text).is_some(), fast, "{text:?}");
    }
}

#[test]
fn golden_texts_match() {
    let (ours, reference) = potion();
    assert_golden_texts_identical(ours, reference);
}

#[test]
fn bench_corpus_matches() {
    let (ours, reference) = potion();
    assert_bench_corpus_identical(ours, reference);
}

#[test]
fn unicode_corner_cases() {
    let (ours, reference) = potion();
    let long_word = "a".repeat(100);
    let too_long_word = "a".repeat(101);
    let long_accented = "é".repeat(101);
    let cases: Vec<String> = [
        "",
        " ",
        "\t\n\r\u{0B}\u{0C}\u{85}\u{A0}\u{2000}\u{3000}",
        "Héllo Wörld! ÀÉÎÕÜ çãñ ß ẞ İstanbul ǅ ﬁnal ﬀ",
        "東京は日本の首都です。北京欢迎你！",
        "한국어 문장입니다. 다람쥐 헌 쳇바퀴에 타고파",
        "がぎぐげご パピプペポ ヴ",
        "a\u{0}b\u{fffd}c\u{1}d\u{7f}e\u{200b}f\u{200d}g\u{feff}h\u{e000}i",
        "a\u{0301}\u{0316}b \u{0345}x \u{094D}y",
        "Greek ; question\u{037E} ano\u{0387}teleia \u{1FEF}",
        "emoji 😀👍🏽 👨‍👩‍👧 flags 🇫🇷 astral 𝔾𝕠𝕠𝕕 𠀀𠀁 𝄞",
        "punct «quoted» “smart” ‘single’ — – … ¿¡ 、。・「」 ؟ ।",
        "[CLS] [SEP] [PAD] [MASK] [UNK] hello[MASK]world",
        "[cls] [ CLS ] [CLS",
        "ＦＵＬＬＷＩＤＴＨ ｈａｌｆ ①②③ ½ ² ㎏ ℃",
        "Ωmega ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ Привет МИР Ἀθῆναι",
        "\u{1D165}\u{1D16D} music \u{0F71}\u{0F72}",
        "tokenization unbelievably antidisestablishmentarianism",
        "x##y ##z 123,456.78 e-mail@example.com https://rust-lang.org/a_b?c=d&e",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([long_word, too_long_word, long_accented])
    .collect();
    assert_identical(ours, reference, &cases);
    // The fast path really ran on the Unicode-heavy cases (no silent fallback everywhere).
    assert!(ours.encode_fast_only(&cases[3]).is_some());
    assert!(ours.encode_fast_only(&cases[4]).is_some());
    assert!(ours.encode_fast_only(&cases[5]).is_some());
    assert!(ours.encode_fast_only(&cases[10]).is_some());
    // Added tokens in the text go to the crate.
    assert!(ours.encode_fast_only(&cases[12]).is_none());
}

#[test]
fn truncated_fast_path_equals_prefix() {
    let (ours, reference) = potion();
    for text in golden_texts().iter().take(40) {
        let full = reference_ids(reference, text);
        for max in [1usize, 2, 5, 17] {
            let got = ours.encode_truncated(text, max).unwrap();
            assert_eq!(got[..], full[..max.min(full.len())], "{max} {text:?}");
        }
    }
}

/// Characters that exercise every branch of the normalizer and pre-tokenizer.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('A', 'Z'),
        1 => proptest::char::range('0', '9'),
        2 => Just(' '),
        1 => prop::sample::select(vec![
            '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{0}', '\u{1}', '\u{7f}', '\u{85}', '\u{A0}',
            '\u{2000}', '\u{200B}', '\u{3000}', '\u{FEFF}', '\u{FFFD}', '\u{E000}', '\u{AD}',
        ]),
        2 => prop::sample::select(vec![
            '.', ',', '!', '?', '#', '\'', '"', '(', ')', '[', ']', '-', '_', '/', '\\', '@',
            '«', '»', '“', '”', '—', '…', '。', '、', '¿', '\u{037E}', '\u{0387}',
        ]),
        2 => proptest::char::range('\u{C0}', '\u{24F}'),
        2 => prop::sample::select(vec!['\u{0300}', '\u{0301}', '\u{0308}', '\u{0316}', '\u{0345}', '\u{094D}', '\u{0F71}', '\u{1D165}', '\u{093E}']),
        1 => proptest::char::range('\u{370}', '\u{3FF}'),
        1 => proptest::char::range('\u{400}', '\u{4FF}'),
        2 => proptest::char::range('\u{3040}', '\u{30FF}'),
        2 => proptest::char::range('\u{4E00}', '\u{4F00}'),
        1 => proptest::char::range('\u{F900}', '\u{FAFF}'),
        2 => proptest::char::range('\u{AC00}', '\u{D7A3}'),
        1 => proptest::char::range('\u{FF00}', '\u{FFEF}'),
        1 => proptest::char::range('\u{1F300}', '\u{1F6FF}'),
        1 => proptest::char::range('\u{20000}', '\u{20100}'),
        1 => any::<char>(),
    ]
}

fn interesting_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::collection::vec(interesting_char(), 0..60).prop_map(|v| v.into_iter().collect()),
        // Long words around the 100-char limit.
        1 => (proptest::collection::vec(interesting_char(), 0..8), 95usize..110, proptest::char::range('a', 'e'))
            .prop_map(|(v, n, c)| {
                let mut s: String = v.into_iter().collect();
                s.extend(std::iter::repeat_n(c, n));
                s
            }),
        1 => any::<String>(),
        // Sentences of ASCII words (the runs the fast path tokenizes in place or copies):
        // lowercase, capitalized, with a dropped control char or a non-ASCII letter inside.
        4 => proptest::collection::vec(
            (
                prop_oneof![
                    "[a-z]{1,14}",
                    "[A-Z][a-z]{0,9}",
                    "[a-z]{1,4}[\u{0}\u{1}\u{7f}\u{ad}][a-z]{1,4}",
                    "[a-z]{0,3}[\u{e9}\u{df}\u{130}][a-z]{0,3}",
                    "[0-9]{1,6}",
                ],
                prop_oneof![" ", "  ", ", ", ".", "\t", "-", "'", "\u{a0}", "\u{3000}", ""],
            ),
            0..14,
        )
        .prop_map(|words| words.into_iter().map(|(w, sep)| w + &sep).collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn random_unicode_matches_the_crate(text in interesting_text(), max in 1usize..30) {
        let (ours, reference) = potion();
        let expected = reference_ids(reference, &text);
        prop_assert_eq!(ours.encode(&text).unwrap(), expected.clone());
        // Stopping early keeps exactly the prefix.
        let truncated = ours.encode_truncated(&text, max).unwrap();
        prop_assert_eq!(&truncated[..], &expected[..max.min(expected.len())]);
        if let Some(ids) = ours.encode_fast_only(&text) {
            prop_assert_eq!(ids, expected);
        }
    }

    #[test]
    fn random_unicode_with_normalized_added_tokens(
        text in interesting_text(),
        token in prop::sample::select(NORMALIZED_ADDED.to_vec()),
        at in any::<prop::sample::Index>(),
        insert in any::<bool>(),
    ) {
        let (ours, reference) = potion_with_normalized_added_tokens();
        let mut text = text;
        if insert {
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.insert_str(cut, &token.to_uppercase());
        }
        prop_assert_eq!(ours.encode(&text).unwrap(), reference_ids(reference, &text));
    }
}
