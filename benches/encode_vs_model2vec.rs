//! End to end, model already loaded: stk (`stk::Model::encode_into`, model2vec semantics)
//! against model2vec-rs 0.4.0 on the bench corpus repeated 10 times, in one run, alternating,
//! best of REPS. Two comparisons, each side given the same threads:
//!
//! * one thread: both sides inside a one-thread rayon pool (what `RAYON_NUM_THREADS=1` gives);
//! * all threads (N = the machine's cores): stk on an N-thread pool against the better of
//!   model2vec-rs on an N-thread pool (its default: its tokenizer spreads each batch) and
//!   model2vec-rs on N threads each encoding a contiguous chunk of the corpus on its own.
//!
//! It also prints how closely the two outputs agree.
//!
//! `cargo bench -p stk-benches --bench encode_vs_model2vec [-- REPS] [MODEL_DIR]`
//! (default model: `../shared/models/potion-base-8M`, else the committed f16 one;
//! `STK_BENCH_CORPUS=FILE` measures another corpus of one sentence per line).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::ThreadPool;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

fn pool(threads: usize) -> ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
}

/// Sentences per second of one run of `f` over `n` sentences.
fn rate(n: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(5);
    let root = repo_root();
    let shared_model = root.join("../shared/models/potion-base-8M");
    let model_dir = if let Some(dir) = args
        .iter()
        .find(|a| a.parse::<usize>().is_err() && !a.starts_with('-'))
    {
        PathBuf::from(dir)
    } else if shared_model.join("model.safetensors").is_file() {
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
    // STK_BENCH_CORPUS: another corpus (for example one script's sentences), still x10.
    let corpus_path = std::env::var_os("STK_BENCH_CORPUS")
        .map_or_else(|| root.join("../shared/bench/sentences.txt"), PathBuf::from);
    let Ok(corpus) = std::fs::read_to_string(&corpus_path) else {
        println!(
            "NOTE: {} not found; nothing to measure",
            corpus_path.display()
        );
        return;
    };
    let lines: Vec<&str> = corpus.lines().collect();
    let texts: Vec<String> = std::iter::repeat_n(&lines, 10)
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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "model {} ({} semantics, tokenizer backend {tokenizer_backend}), {n} sentences, 1 and {threads} threads, best of {reps} alternating repetitions",
        model_dir.display(),
        stk_model.semantics(),
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

    let (one, all) = (pool(1), pool(threads));
    let chunk_pools: Vec<ThreadPool> = (0..threads).map(|_| pool(1)).collect();
    let chunk_len = n.div_ceil(threads);
    let mut out = vec![0f32; n * dim];
    // Best rates: stk 1, model2vec-rs 1, stk N, model2vec-rs N (its pool), model2vec-rs N chunks.
    let mut best = [0f64; 5];
    for _ in 0..reps {
        let rates = [
            rate(n, || {
                one.install(|| stk_model.encode_into(&refs, &mut out).expect("stk"))
            }),
            rate(n, || {
                drop(std::hint::black_box(one.install(|| m2v.encode(&texts))))
            }),
            rate(n, || {
                all.install(|| stk_model.encode_into(&refs, &mut out).expect("stk"))
            }),
            rate(n, || {
                drop(std::hint::black_box(all.install(|| m2v.encode(&texts))))
            }),
            rate(n, || {
                std::thread::scope(|s| {
                    for (chunk, p) in texts.chunks(chunk_len).zip(&chunk_pools) {
                        let m2v = &m2v;
                        s.spawn(move || {
                            drop(std::hint::black_box(p.install(|| m2v.encode(chunk))))
                        });
                    }
                })
            }),
        ];
        std::hint::black_box(&out);
        for (b, r) in best.iter_mut().zip(rates) {
            *b = b.max(r);
        }
    }
    let [stk1, m2v1, stk_n, m2v_pool, m2v_chunks] = best;
    let m2v_n = m2v_pool.max(m2v_chunks);
    println!("stk, 1 thread                       : {stk1:>10.0} sentences/s");
    println!("model2vec-rs, 1 thread              : {m2v1:>10.0} sentences/s");
    println!("stk, {threads} threads                      : {stk_n:>10.0} sentences/s");
    println!("model2vec-rs, {threads}-thread pool (default): {m2v_pool:>10.0} sentences/s");
    println!("model2vec-rs, {threads} threads x chunks     : {m2v_chunks:>10.0} sentences/s");
    println!("ratio stk / model2vec-rs, 1 thread : {:.2}x", stk1 / m2v1);
    println!(
        "ratio stk / model2vec-rs, {threads} threads: {:.2}x (against its better way)",
        stk_n / m2v_n
    );
}
