//! `SentenceTransformer.encode`'s options after the modules (truncate_dim, normalize_embeddings,
//! precision) through the library, against the sentence-transformers 6.2 cases of
//! `tests/fixtures/encode_options`, and the bad options it must refuse.

#[path = "encode_option_cases.rs"]
mod option_cases;

use option_cases::{assert_same_ints, cases, texts, OptionCase};
use stk::text_io::{encode_stream, ranges_from_source, StreamOptions, TextSource};
use stk::{DType, Elements, EncodeOptions, LoadOptions, Model, Precision, Ranges, Semantics};
use stk_tests::compare;

/// f32 outputs: stk's mean of the same table rows in another order.
const F32_TOLERANCE: f32 = 1e-5;

fn load(case: &OptionCase) -> Model {
    Model::load_with(
        case.model_dir(),
        &LoadOptions {
            semantics: Some(Semantics::SentenceTransformers),
            ..Default::default()
        },
    )
    .unwrap()
}

/// The quantizer alone, fed sentence-transformers' own f32 embeddings: bit for bit.
#[test]
fn quantize_embeddings_matches_sentence_transformers_exactly() {
    for case in cases().iter().filter(|c| c.precision != Precision::Float32) {
        let (input, rows, k) = case.f32_tensor(&case.base());
        let got =
            stk::quantize::quantize_embeddings(&input, k, case.precision, case.ranges().as_ref())
                .unwrap();
        let (want, want_rows, want_cols) = case.expected();
        assert_eq!(
            (got.rows(), got.cols()),
            (want_rows, want_cols),
            "{}",
            case.name()
        );
        assert_eq!(rows, want_rows);
        assert_same_ints(got.elements(), &want, &case.name());
    }
}

/// Text in, options applied: `Model::encode_with` for every case.
#[test]
fn encode_with_matches_sentence_transformers() {
    let (texts, _) = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for case in cases() {
        let model = load(&case);
        let got = model.encode_with(&refs, &case.options()).unwrap();
        let (want, rows, cols) = case.expected();
        assert_eq!((got.rows(), got.cols()), (rows, cols), "{}", case.name());
        match (got.elements(), &want) {
            (Elements::F32(g), Elements::F32(w)) => {
                compare(g, w, F32_TOLERANCE).unwrap_or_else(|e| panic!("{}: {e}", case.name()))
            }
            (g, w) => assert_same_ints(g, w, &case.name()),
        }
    }
}

/// The stream gives what one call gives: truncation and packing per batch, int8/uint8 from
/// ranges of the whole input (a first pass), never from one batch.
#[test]
fn streamed_batches_match_one_call() {
    let (texts, _) = texts();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.json");
    std::fs::write(&input, serde_json::to_string(&texts).unwrap()).unwrap();
    let source = TextSource::from_arg(&input);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for case in cases().iter().filter(|c| !c.calibration) {
        let model = load(case);
        let mut options = case.options();
        if case.precision.needs_ranges() {
            let (ranges, n) = ranges_from_source(&model, &source, &options, 5).unwrap();
            assert_eq!(n, texts.len() as u64);
            options.calibration = ranges;
        }
        let output = dir.path().join("out.npy");
        let rows = encode_stream(
            &model,
            &source,
            &output,
            StreamOptions {
                batch_size: 5,
                progress: None,
                output_dtype: DType::F32,
                encode: options,
            },
        )
        .unwrap();
        assert_eq!(rows, texts.len() as u64);
        let whole = model.encode_with(&refs, &case.options()).unwrap();
        let bytes = std::fs::read(&output).unwrap();
        let (_, _, body) = stk_tests::npy_parts(&bytes);
        let want: Vec<u8> = match whole.elements() {
            Elements::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Elements::I8(v) => v.iter().map(|&b| b as u8).collect(),
            Elements::U8(v) => v.clone(),
            Elements::F16(_) => unreachable!(),
        };
        assert_eq!(body, &want[..], "{}", case.name());
    }
}

/// Bad options: each an error naming what is wrong, never a panic or a file.
#[test]
fn bad_options_are_refused() {
    let model = Model::load_with(
        option_cases::repo_root().join("models/potion-base-8M-int8-vq2048-d128"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(model.dim(), 128);
    let with = |f: fn(&mut EncodeOptions)| {
        let mut o = EncodeOptions::default();
        f(&mut o);
        o
    };
    let table: Vec<(&str, EncodeOptions, Vec<&str>, &str)> = vec![
        (
            "truncate_dim 0",
            with(|o| o.truncate_dim = Some(0)),
            vec!["a", "b"],
            "truncate_dim 0 is out of range",
        ),
        (
            "truncate_dim beyond the width",
            with(|o| o.truncate_dim = Some(129)),
            vec!["a", "b"],
            "expected 1..=128",
        ),
        (
            "calibration of another width",
            with(|o| {
                o.truncate_dim = Some(64);
                o.precision = Precision::Int8;
                o.calibration = Some(Ranges::from_rows(&[0.0; 32], 32).unwrap());
            }),
            vec!["a", "b"],
            "calibration width mismatch",
        ),
        (
            "int8 ranges from one embedding",
            with(|o| o.precision = Precision::Uint8),
            vec!["a"],
            "from a single embedding",
        ),
    ];
    for (what, options, texts, message) in table {
        let e = model.encode_with(&texts, &options).unwrap_err().to_string();
        assert!(e.contains(message), "{what}: {e}");
    }
    for bad in ["int4", "Float32", "", "fp16"] {
        let e = bad.parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("unknown precision"), "{bad}: {e}");
    }
    let e = Ranges::new(vec![0.0; 3], vec![1.0; 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("as many minima as maxima"), "{e}");

    // A stream refuses int8 without whole-input ranges, and f16 with an integer precision,
    // leaving no file.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nb\n").unwrap();
    let output = dir.path().join("out.npy");
    let stream = |encode: EncodeOptions, output_dtype: DType| {
        encode_stream(
            &model,
            &TextSource::from_arg(&input),
            &output,
            StreamOptions {
                batch_size: 1,
                progress: None,
                output_dtype,
                encode,
            },
        )
        .unwrap_err()
        .to_string()
    };
    let e = stream(with(|o| o.precision = Precision::Int8), DType::F32);
    assert!(e.contains("never taken from one batch"), "{e}");
    let e = stream(with(|o| o.precision = Precision::Binary), DType::F16);
    assert!(e.contains("applies to float32 precision only"), "{e}");
    assert!(!output.exists());
    let e = ranges_from_source(&model, &TextSource::Stdin, &EncodeOptions::default(), 8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("standard input"), "{e}");
}
