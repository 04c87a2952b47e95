//! Every golden case of kind `static` through the library: the sentence-transformers
//! `StaticEmbedding` (+ `Normalize`) and model2vec's `StaticModel.encode`, for every model the
//! cases name (f32, f16 and int8 tables, with and without a vocabulary mapping).

use stk::{LoadOptions, Model, Semantics};
use stk_core::SafetensorsFile;
use stk_tests::{
    compare, golden_cases, report_missing_model, resolve_model, static_cases_required, GoldenCase,
};

fn texts(case: &GoldenCase) -> Vec<String> {
    let raw = std::fs::read_to_string(case.dir.join("texts.json")).unwrap();
    serde_json::from_str(&raw).unwrap()
}

fn expected(case: &GoldenCase) -> (Vec<f32>, Vec<usize>) {
    let file = SafetensorsFile::open(case.dir.join("expected.safetensors")).unwrap();
    let t = file.get("expected").unwrap();
    (t.to_f32_vec().unwrap(), t.dims().to_vec())
}

/// The options a case asks for.
fn options(case: &GoldenCase) -> LoadOptions {
    let semantics: Semantics = case.case["semantics"].as_str().unwrap().parse().unwrap();
    let normalize = case.case["normalize"].as_bool().unwrap();
    match semantics {
        // The case says whether Normalize follows StaticEmbedding, whatever modules.json says.
        Semantics::SentenceTransformers => LoadOptions {
            semantics: Some(semantics),
            normalize: Some(normalize),
            ..LoadOptions::default()
        },
        // model2vec reads `normalize` from config.json: leave it to the folder (checked below).
        Semantics::Model2Vec => LoadOptions {
            semantics: Some(semantics),
            max_length: case.case["max_length"].as_u64().map(|m| m as usize).into(),
            ..LoadOptions::default()
        },
    }
}

#[test]
fn static_cases_match_the_reference() {
    let cases = golden_cases(&["static"]);
    let required = static_cases_required(&cases);
    let mut ran = 0;
    for case in cases {
        let rel = case.case["model"].as_str().unwrap();
        let Some(dir) = resolve_model(rel) else {
            report_missing_model(&case.name, rel);
            continue;
        };
        let opts = options(&case);
        let model = Model::load_with(&dir, &opts).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            model.normalizes(),
            case.case["normalize"].as_bool().unwrap(),
            "{}: normalization",
            case.name
        );
        let texts = texts(&case);
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let got = model
            .encode(&refs)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let (want, dims) = expected(&case);
        assert_eq!(
            [got.rows(), got.dim()],
            [dims[0], dims[1]],
            "{}: shape",
            case.name
        );
        let tol = case.case["tolerance"].as_f64().unwrap() as f32;
        if let Err(e) = compare(got.as_slice(), &want, tol) {
            let i = e
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.trim_end_matches(':').parse::<usize>().ok())
                .unwrap_or(0);
            panic!(
                "{}: {e} (text {}: {:?})",
                case.name,
                i / dims[1],
                texts[i / dims[1]]
            );
        }
        // Encoding in pieces gives the same rows as encoding all at once.
        let half = refs.len() / 2;
        let a = model.encode(&refs[..half]).unwrap();
        let b = model.encode(&refs[half..]).unwrap();
        assert_eq!(
            a.as_slice(),
            &got.as_slice()[..half * got.dim()],
            "{}",
            case.name
        );
        assert_eq!(
            b.as_slice(),
            &got.as_slice()[half * got.dim()..],
            "{}",
            case.name
        );
        println!("{}: {} texts ok (tol {tol})", case.name, refs.len());
        ran += 1;
    }
    assert!(
        ran >= required && ran > 0,
        "only {ran} static cases ran; {required} have their model in the repository"
    );
}

#[test]
fn folder_defaults() {
    // potion folders are model2vec folders with a modules.json: model2vec by default, and
    // sentence-transformers semantics take Normalize from modules.json.
    let dir = resolve_model("models/potion-base-8M-int8-vq2048-d128").unwrap();
    let m = Model::load(&dir).unwrap();
    assert_eq!(m.semantics(), Semantics::Model2Vec);
    assert!(m.normalizes());
    assert_eq!(m.dim(), 128);
    let st = LoadOptions {
        semantics: Some(Semantics::SentenceTransformers),
        ..LoadOptions::default()
    };
    let m = Model::load_with(&dir, &st).unwrap();
    assert!(m.normalizes());
    // No modules.json: the StaticEmbedding module alone.
    let dir = resolve_model("models/stk-unigram-8k-64d-int8").unwrap();
    assert!(!Model::load_with(&dir, &st).unwrap().normalizes());
    assert_eq!(Model::load(&dir).unwrap().semantics(), Semantics::Model2Vec);
    let empty = Model::load(&dir).unwrap().encode(&[]).unwrap();
    assert_eq!((empty.rows(), empty.dim()), (0, 64));
}

/// A sentence-transformers folder whose StaticEmbedding is saved in `0_StaticEmbedding/`:
/// a Pipeline by default, and model2vec reads the nested table too.
#[test]
fn nested_static_embedding_folder() {
    let src = resolve_model("models/potion-base-8M-int8-vq2048-d128").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let nested = tmp.path().join("0_StaticEmbedding");
    std::fs::create_dir(&nested).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), nested.join(f)).unwrap();
    }
    std::fs::write(
        tmp.path().join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "0_StaticEmbedding", "type": "sentence_transformers.models.StaticEmbedding"}]"#,
    )
    .unwrap();
    let golden = stk_tests::golden_dir();
    for (case, opts) in [
        (
            "static_potion-base-8M-int8-vq2048-d128",
            LoadOptions::default(),
        ),
        (
            "model2vec_potion-base-8M-int8-vq2048-d128",
            LoadOptions {
                semantics: Some(Semantics::Model2Vec),
                normalize: Some(true),
                ..LoadOptions::default()
            },
        ),
    ] {
        let case = GoldenCase {
            name: case.to_string(),
            dir: golden.join(case),
            case: serde_json::Value::Null,
        };
        let model = Model::load_with(tmp.path(), &opts).unwrap();
        let texts = texts(&case);
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let got = model.encode(&refs).unwrap();
        let (want, _) = expected(&case);
        compare(got.as_slice(), &want, 1e-4).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
}

/// A bf16 table (as sentence-transformers saves a `StaticEmbedding` cast to bfloat16): the
/// folder encodes to the same bits as the same folder with that table widened to f32 (bf16 ->
/// f32 is exact and both sum in f32), in both semantics, and the bf16 values are not all equal
/// to the f16 original's (the test would not notice a table read as the wrong type otherwise).
#[test]
fn bf16_tables_encode_as_their_f32_widening() {
    let source = stk_tests::repo_root().join("models/potion-base-8M-f16");
    let table = SafetensorsFile::open(source.join("model.safetensors"))
        .unwrap()
        .get("embeddings")
        .unwrap();
    let bf16 = table.to_dtype(stk_core::DType::BF16).unwrap();
    let widened = bf16.to_dtype(stk_core::DType::F32).unwrap();
    assert_ne!(widened.to_f32_vec().unwrap(), table.to_f32_vec().unwrap());
    let root = tempfile::tempdir().unwrap();
    let folder_with = |name: &str, t: &stk_core::Tensor| {
        let dir = root.path().join(name);
        stk_tests::copy_dir(&source, &dir);
        stk_core::write_safetensors(dir.join("model.safetensors"), &[("embeddings", t)]).unwrap();
        dir
    };
    let (bf16_dir, f32_dir) = (folder_with("bf16", &bf16), folder_with("f32", &widened));
    let texts = [
        "A bf16 table.",
        "",
        "héllo wörld 東京 [UNK] 12345",
        &"word ".repeat(600),
    ];
    for semantics in [Semantics::Model2Vec, Semantics::SentenceTransformers] {
        let opts = LoadOptions {
            semantics: Some(semantics),
            ..LoadOptions::default()
        };
        let encode = |dir| {
            let model = Model::load_with(dir, &opts).unwrap();
            let mut out = vec![0f32; texts.len() * model.dim()];
            model.encode_into(&texts, &mut out).unwrap();
            out
        };
        let got = encode(&bf16_dir);
        assert!(got.iter().any(|&v| v != 0.0));
        assert_eq!(got, encode(&f32_dir), "{semantics}");
    }
}
