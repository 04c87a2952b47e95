//! stk's tokenizer against the `tokenizers` crate on the bench corpus
//! (`../shared/bench/sentences.txt`, falling back to the golden texts when it is absent),
//! for the committed WordPiece (potion) and Unigram (stk-unigram) tokenizers.
//! Throughput is in sentences per second (criterion's `elem/s`); compare within one run.
//!
//! `cargo bench -p stk-benches --bench tokenize`

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

fn corpus() -> Vec<String> {
    let shared = repo_root().join("../shared/bench/sentences.txt");
    if let Ok(text) = std::fs::read_to_string(&shared) {
        return text.lines().map(str::to_owned).collect();
    }
    eprintln!(
        "NOTE: {} not found; using the golden texts",
        shared.display()
    );
    let golden = repo_root().join("tests/golden");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(golden).expect("tests/golden") {
        let p = entry.expect("dir entry").path().join("texts.json");
        if let Ok(s) = std::fs::read_to_string(&p) {
            let texts: Vec<String> = serde_json::from_str(&s).expect("texts.json");
            out.extend(texts);
        }
    }
    out
}

fn bench_tokenizer(c: &mut Criterion, model: &str, texts: &[String]) {
    let path = repo_root()
        .join("models")
        .join(model)
        .join("tokenizer.json");
    let t = std::time::Instant::now();
    let ours = stk_cpu::Tokenizer::from_file(&path).expect("load tokenizer");
    let ours_load = t.elapsed();
    let t = std::time::Instant::now();
    let mut crate_tok = tokenizers::Tokenizer::from_file(&path).expect("load tokenizer");
    println!(
        "{model}: load time stk {:.0} ms (crate loaded beside the fast path), tokenizers {:.0} ms",
        ours_load.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
    crate_tok.with_truncation(None).expect("no truncation");
    crate_tok.with_padding(None);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let mut group = c.benchmark_group(format!("tokenize/{model}"));
    group.throughput(Throughput::Elements(refs.len() as u64));
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(3));
    let backend = ours.backend();
    group.bench_function(BenchmarkId::new("stk-1-thread", backend), |b| {
        let mut ids = Vec::new();
        b.iter(|| {
            let mut n = 0usize;
            for t in &refs {
                ids.clear();
                ours.encode_into(t, usize::MAX, &mut ids).expect("encode");
                n += ids.len();
            }
            n
        })
    });
    group.bench_function("tokenizers-1-thread", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for t in &refs {
                n += crate_tok.encode_fast(*t, false).expect("encode").len();
            }
            n
        })
    });
    group.bench_function(BenchmarkId::new("stk-rayon", backend), |b| {
        b.iter(|| ours.encode_batch(&refs).expect("encode").len())
    });
    group.bench_function("tokenizers-encode_batch_fast", |b| {
        b.iter(|| {
            crate_tok
                .encode_batch_fast(refs.clone(), false)
                .expect("encode")
                .len()
        })
    });
    group.finish();
    // Same ids, so the comparison is fair.
    let mismatches = refs
        .par_iter()
        .filter(|t| {
            ours.encode(t).expect("encode")
                != crate_tok.encode(**t, false).expect("encode").get_ids()
        })
        .count();
    assert_eq!(mismatches, 0, "{model}: ids differ from the crate's");
}

fn benches(c: &mut Criterion) {
    // Every 4th sentence: the corpus mixes languages by section, so a strided subset keeps
    // the mix while keeping the crate's side of the run short.
    let texts: Vec<String> = corpus().into_iter().step_by(4).collect();
    for model in ["potion-base-8M-f16", "stk-unigram-8k-64d-int8"] {
        bench_tokenizer(c, model, &texts);
    }
}

criterion_group!(tokenize, benches);
criterion_main!(tokenize);
