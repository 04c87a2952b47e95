//! Every golden case of kind `pooling`, `normalize` and `weighted_layer_pooling`, run through
//! the library: the fast pooling path, the f64 reference, the `Pooling` module where the case
//! fits a pipeline, Normalize and WeightedLayerPooling. Outputs must match `expected` within
//! the golden tolerances and have the case's `expected_dtype`.

use serde_json::Value;
use stk_core::{
    DType, PaddedBatch, PoolingMode, PoolingSpec, SafetensorsFile, Tensor, VarlenBatch,
};
use stk_cpu::pooling::{self, reference, PoolExtras};
use stk_cpu::{Features, Module, Pooling};
use stk_tests::{compare, golden_cases, tolerance_for, GoldenCase};

/// `float32` / `float16` / `bfloat16` as in `expected_dtype`.
fn dtype_named(name: &str) -> DType {
    match name {
        "float32" | "f32" => DType::F32,
        "float16" | "f16" => DType::F16,
        "bfloat16" | "bf16" => DType::BF16,
        other => panic!("unknown dtype name {other}"),
    }
}

fn tensors(case: &GoldenCase) -> SafetensorsFile {
    SafetensorsFile::open(case.dir.join("tensors.safetensors")).unwrap()
}

fn spec_of(case: &GoldenCase) -> PoolingSpec {
    let modes = case.case["pooling_mode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().parse::<PoolingMode>().unwrap())
        .collect();
    let include_prompt = case.case["include_prompt"].as_bool().unwrap();
    let prompt = case.case["prompt_length"].as_u64().map(|p| p as usize);
    PoolingSpec::new(modes)
        .unwrap()
        .with_prompt_length(if include_prompt { None } else { prompt })
}

/// Check `got` against the case's `expected` with the tolerance of the input dtype.
fn check(case: &GoldenCase, what: &str, got: &Tensor, expected: &Tensor, input_dtype: DType) {
    assert_eq!(got.dims(), expected.dims(), "{}: {what}: shape", case.name);
    let tol = tolerance_for(input_dtype.as_str(), false);
    if let Err(e) = compare(
        &got.to_f32_vec().unwrap(),
        &expected.to_f32_vec().unwrap(),
        tol,
    ) {
        panic!("{}: {what}: {e}", case.name);
    }
}

#[test]
fn pooling_cases_match_golden() {
    let cases = golden_cases(&["pooling"]);
    assert!(
        cases.len() >= 200,
        "expected the full set of pooling cases, found {}",
        cases.len()
    );
    let mut module_checked = 0;
    for case in &cases {
        let st = tensors(case);
        let tokens = st.get("token_embeddings").unwrap();
        let input_dtype = dtype_named(case.case["dtype"].as_str().unwrap());
        assert_eq!(tokens.dtype(), input_dtype, "{}", case.name);
        let expected_dtype = dtype_named(case.case["expected_dtype"].as_str().unwrap());
        let expected = st.get("expected").unwrap();
        let tws = st
            .get_opt("token_weights_sum")
            .unwrap()
            .map(|t| t.to_f32_vec().unwrap());
        let extras = PoolExtras {
            token_weights_sum: tws.as_deref(),
            cls_token_embeddings: None,
        };
        let spec = spec_of(case);

        let (fast, slow) = match case.case["layout"].as_str().unwrap() {
            "padded" => {
                let batch = PaddedBatch::new(
                    tokens.clone(),
                    st.get_opt("attention_mask").unwrap().as_ref(),
                )
                .unwrap();
                (
                    pooling::pool_padded(&batch, &spec, &extras).unwrap(),
                    reference::pool_padded(&batch, &spec, &extras).unwrap(),
                )
            }
            "varlen" => {
                let cu = st.get("cu_seq_lens_q").unwrap().to_i64_vec().unwrap();
                let batch = VarlenBatch::new(tokens.clone(), &cu).unwrap();
                (
                    pooling::pool_varlen(&batch, &spec, &extras).unwrap(),
                    reference::pool_varlen(&batch, &spec, &extras).unwrap(),
                )
            }
            other => panic!("{}: unknown layout {other}", case.name),
        };
        for (what, got) in [("fast", &fast), ("reference", &slow)] {
            assert_eq!(
                got.dtype(),
                expected_dtype,
                "{}: {what}: output dtype",
                case.name
            );
            check(case, what, got, &expected, input_dtype);
        }

        // Through the pipeline module (f32 output), for the cases a Pooling config can express.
        if case.case["layout"] == "padded" {
            let modes: Vec<Value> = spec.modes.iter().map(|m| Value::from(m.as_str())).collect();
            let config = serde_json::json!({
                "embedding_dimension": tokens.dims()[2],
                "pooling_mode": modes,
                "include_prompt": case.case["include_prompt"],
            });
            let module = Pooling::from_config(&config, &case.dir)
                .unwrap()
                .with_prompt_length(spec.prompt_length);
            let features = Features {
                token_embeddings: Some(tokens.clone()),
                attention_mask: st.get_opt("attention_mask").unwrap(),
                token_weights_sum: tws.clone(),
                ..Features::default()
            };
            let out = module
                .forward(features)
                .unwrap()
                .sentence_embedding
                .unwrap();
            assert_eq!(out.dtype(), DType::F32, "{}", case.name);
            check(case, "Pooling module", &out, &expected, input_dtype);
            module_checked += 1;
        }
    }
    assert!(module_checked > 0);
}

#[test]
fn golden_pooling_configs_load() {
    // Every Pooling folder of the pipeline cases, in both config spellings.
    let mut seen = 0;
    for case in golden_cases(&["pipeline"]) {
        let modules: Value = serde_json::from_str(
            &std::fs::read_to_string(case.dir.join("model").join("modules.json")).unwrap(),
        )
        .unwrap();
        for m in modules.as_array().unwrap() {
            if m["type"].as_str().unwrap().ends_with("Pooling")
                && !m["type"].as_str().unwrap().ends_with("LayerPooling")
            {
                let dir = case.dir.join("model").join(m["path"].as_str().unwrap());
                let p = Pooling::from_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert!(!p.modes().is_empty());
                assert!(p.embedding_dimension() > 0);
                if case.name.starts_with("legacy_") {
                    assert_eq!(p.modes(), [PoolingMode::Mean], "{}", case.name);
                    assert_eq!(p.embedding_dimension(), 64);
                }
                seen += 1;
            }
        }
    }
    assert!(seen >= 5, "found only {seen} Pooling folders");
}

#[test]
fn normalize_cases_match_golden() {
    for case in golden_cases(&["normalize"]) {
        let st = tensors(&case);
        let input = st.get("sentence_embedding").unwrap();
        let expected = st.get("expected").unwrap();
        let got = stk_cpu::normalize(&input).unwrap();
        let expected_dtype = dtype_named(case.case["expected_dtype"].as_str().unwrap());
        assert_eq!(got.dtype(), expected_dtype, "{}", case.name);
        check(&case, "normalize", &got, &expected, input.dtype());

        let features = Features {
            sentence_embedding: Some(input.clone()),
            ..Features::default()
        };
        let out = stk_cpu::Normalize::new()
            .forward(features)
            .unwrap()
            .sentence_embedding
            .unwrap();
        check(&case, "Normalize module", &out, &expected, input.dtype());
    }
}

#[test]
fn weighted_layer_pooling_cases_match_golden() {
    for case in golden_cases(&["weighted_layer_pooling"]) {
        let st = tensors(&case);
        let layers = st.get("all_layer_embeddings").unwrap();
        let weights = st.get("layer_weights").unwrap();
        let expected = st.get("expected").unwrap();
        let layer_start = case.case["layer_start"].as_u64().unwrap() as usize;
        let num_hidden_layers = case.case["num_hidden_layers"].as_u64().unwrap() as usize;

        let got = stk_cpu::weighted_layer_pooling(&layers, layer_start, &weights).unwrap();
        assert_eq!(got.dtype(), expected.dtype(), "{}", case.name);
        check(
            &case,
            "weighted_layer_pooling",
            &got,
            &expected,
            layers.dtype(),
        );

        let module = stk_cpu::WeightedLayerPooling::new(
            layers.dims()[3],
            num_hidden_layers,
            layer_start,
            weights,
        )
        .unwrap();
        check(
            &case,
            "WeightedLayerPooling module",
            &module.forward(&layers).unwrap(),
            &expected,
            layers.dtype(),
        );
    }
}
