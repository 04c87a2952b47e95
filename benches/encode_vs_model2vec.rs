//! End to end, model already loaded: stk (`stk::Model::encode`, model2vec semantics) against
//! model2vec-rs 0.4.0 on the bench corpus repeated 4 times (the README anchor setup), in one
//! run, alternating repetitions. Prints sentences/s for both and the ratio, and how closely
//! the two outputs agree.
//!
//! `cargo bench -p stk-benches --bench encode_vs_model2vec [-- REPS]`

use std::path::{Path, PathBuf};
use std::time::Instant;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

fn main() {
    let reps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let root = repo_root();
    let shared_model = root.join("../shared/models/potion-base-8M");
    let model_dir = if shared_model.join("model.safetensors").is_file() {
        shared_model
    } else {
        let committed = root.join("models/potion-base-8M-f16");
        println!(
            "NOTE: {} not found; using the committed f16 model {}",
            shared_model.display(),
            committed.display()
        );
        committed
    };
    let corpus_path = root.join("../shared/bench/sentences.txt");
    let Ok(corpus) = std::fs::read_to_string(&corpus_path) else {
        println!(
            "NOTE: {} not found; nothing to measure",
            corpus_path.display()
        );
        return;
    };
    let lines: Vec<&str> = corpus.lines().collect();
    let texts: Vec<String> = std::iter::repeat_n(&lines, 4)
        .flatten()
        .map(|s| s.to_string())
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let n = texts.len();

    let stk_model = stk::Model::load(&model_dir).expect("stk loads the model");
    let m2v = model2vec_rs::model::StaticModel::from_pretrained(&model_dir, None, None, None)
        .expect("model2vec-rs loads the model");
    let tokenizer_backend = stk_cpu::Tokenizer::from_file(&model_dir.join("tokenizer.json"))
        .expect("tokenizer")
        .backend();
    println!(
        "model {} ({} semantics, tokenizer backend {tokenizer_backend}), {n} sentences, {} rayon threads, {reps} alternating repetitions",
        model_dir.display(),
        stk_model.semantics(),
        rayon::current_num_threads()
    );

    // Warm-up (page-in of the tables, thread pools, per-thread buffers) and agreement.
    let ours = stk_model.encode(&refs).expect("stk encodes");
    let theirs = m2v.encode_flat(&texts);
    assert_eq!(ours.as_slice().len(), theirs.len(), "same output size");
    let dim = stk_model.dim();
    let (mut max_diff, mut rows_off) = (0f32, 0usize);
    for (a, b) in ours.as_slice().chunks(dim).zip(theirs.chunks(dim)) {
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        max_diff = max_diff.max(d);
        rows_off += usize::from(d > 1e-4);
    }
    println!(
        "agreement: max |stk - model2vec-rs| = {max_diff:.2e}; rows differing by more than 1e-4: {rows_off} of {n}"
    );

    let mut stk_rates = Vec::new();
    let mut m2v_rates = Vec::new();
    let mut m2v_nested_rates = Vec::new();
    let mut out = vec![0f32; n * dim];
    for _ in 0..reps {
        let t = Instant::now();
        stk_model.encode_into(&refs, &mut out).expect("stk encodes");
        stk_rates.push(n as f64 / t.elapsed().as_secs_f64());
        std::hint::black_box(&out);

        let t = Instant::now();
        let flat = m2v.encode_flat(&texts);
        m2v_rates.push(n as f64 / t.elapsed().as_secs_f64());
        std::hint::black_box(&flat);

        let t = Instant::now();
        let nested = m2v.encode(&texts);
        m2v_nested_rates.push(n as f64 / t.elapsed().as_secs_f64());
        std::hint::black_box(&nested);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let best = |v: &[f64]| v.iter().copied().fold(0f64, f64::max);
    let (s_best, m_best, mn_best) = (best(&stk_rates), best(&m2v_rates), best(&m2v_nested_rates));
    let (s_med, m_med, mn_med) = (
        median(&mut stk_rates),
        median(&mut m2v_rates),
        median(&mut m2v_nested_rates),
    );
    println!(
        "stk Model::encode_into          : median {s_med:>10.0} sentences/s, best {s_best:>10.0}"
    );
    println!(
        "model2vec-rs encode_flat        : median {m_med:>10.0} sentences/s, best {m_best:>10.0}"
    );
    println!(
        "model2vec-rs encode (Vec<Vec>)  : median {mn_med:>10.0} sentences/s, best {mn_best:>10.0}"
    );
    println!(
        "ratio stk / model2vec-rs encode_flat: median {:.2}x, best {:.2}x",
        s_med / m_med,
        s_best / m_best
    );
    println!(
        "ratio stk / model2vec-rs encode     : median {:.2}x, best {:.2}x",
        s_med / mn_med,
        s_best / mn_best
    );
}
