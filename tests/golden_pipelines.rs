//! Every golden case of kind `pipeline` (saved sentence-transformers folders of word-embedding
//! models: WordEmbeddings, WordWeights, BoW, CNN, LSTM, Pooling, Normalize, in both on-disk
//! spellings) through `stk::pipeline::Pipeline`, against `SentenceTransformer(model).encode`.

use stk::pipeline::Pipeline;
use stk_core::SafetensorsFile;
use stk_tests::{compare, golden_cases, tolerance_for, GoldenCase};

fn texts(case: &GoldenCase) -> Vec<String> {
    let raw = std::fs::read_to_string(case.dir.join("texts.json")).unwrap();
    serde_json::from_str(&raw).unwrap()
}

fn expected(case: &GoldenCase) -> (Vec<f32>, Vec<usize>) {
    let file = SafetensorsFile::open(case.dir.join("expected.safetensors")).unwrap();
    let t = file.get("expected").unwrap();
    (t.to_f32_vec().unwrap(), t.dims().to_vec())
}

#[test]
fn pipeline_cases_match_the_reference() {
    let cases = golden_cases(&["pipeline"]);
    let tol = tolerance_for("f32", true);
    let mut failures = Vec::new();
    for case in &cases {
        let pipeline =
            Pipeline::load(case.dir.join("model")).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let texts = texts(case);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let got = pipeline
            .encode(&refs)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let (want, dims) = expected(case);
        assert_eq!(got.dims(), dims.as_slice(), "{}: output shape", case.name);
        assert_eq!(pipeline.dim(), dims[1], "{}: dim()", case.name);
        let got = got.as_slice::<f32>().unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, e)| (g - e).abs() / e.abs().max(1.0))
            .fold(0f32, f32::max);
        if let Err(msg) = compare(got, &want, tol) {
            let row = msg
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.trim_end_matches(':').parse::<usize>().ok())
                .map(|i| i / dims[1]);
            failures.push(format!(
                "{} ({:?}): {msg}; text row {row:?}",
                case.name,
                pipeline.modules()
            ));
        } else {
            println!(
                "{}: {} texts × {} match, worst relative error {worst:.2e} ({:?})",
                case.name,
                dims[0],
                dims[1],
                pipeline.modules()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every pipeline case the brief names ran (none may be skipped).
    for name in [
        "bow_binary",
        "bow_tfidf",
        "cnn_max",
        "legacy_wordemb_weights_mean_norm",
        "lstm_mean",
        "lstm_uni_cls",
        "wordemb_mean",
        "wordemb_multi_pool",
        "wordemb_weights_mean_norm",
    ] {
        assert!(
            cases.iter().any(|c| c.name == name),
            "golden case {name} is missing"
        );
    }
}

/// Encoding is independent of how the caller groups texts: one call, one text at a time, and
/// no texts at all give the same rows.
#[test]
fn encoding_does_not_depend_on_the_call_grouping() {
    for name in ["lstm_mean", "bow_tfidf", "wordemb_weights_mean_norm"] {
        let case = golden_cases(&["pipeline"])
            .into_iter()
            .find(|c| c.name == name)
            .unwrap();
        let pipeline = Pipeline::load(case.dir.join("model")).unwrap();
        let texts = texts(&case);
        let refs: Vec<&str> = texts.iter().take(40).map(String::as_str).collect();
        let all = pipeline.encode(&refs).unwrap();
        let all = all.as_slice::<f32>().unwrap();
        let d = pipeline.dim();
        for (i, t) in refs.iter().enumerate() {
            let one = pipeline.encode(&[t]).unwrap();
            let one = one.as_slice::<f32>().unwrap();
            compare(one, &all[i * d..(i + 1) * d], 1e-6)
                .unwrap_or_else(|m| panic!("{name} text {i}: {m}"));
        }
        let none = pipeline.encode(&[]).unwrap();
        assert_eq!(none.dims(), &[0, d]);
    }
}
