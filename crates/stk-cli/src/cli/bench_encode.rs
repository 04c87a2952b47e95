//! `stk bench encode`: sentences per second of `Model::encode` on the lines of a file.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args as ClapArgs;
use stk::text_io::TextSource;
use stk::{Error, Result};

use super::encode::ModelArgs;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Texts to encode: one per line (.txt), or a .json array of strings.
    #[arg(long)]
    pub input: PathBuf,
    /// How many times the whole input is encoded in the timed run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeat: u64,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let source = TextSource::from_arg(&args.input);
    let texts = source.read_all()?;
    if texts.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no text to encode",
            args.input.display()
        )));
    }
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let load_start = Instant::now();
    let model = args.model.load()?;
    let load_seconds = load_start.elapsed().as_secs_f64();
    let mut out = vec![0f32; refs.len() * model.dim()];

    // Warm-up: page in the table, start the thread pool, fill the tokenizer's caches.
    model.encode_into(&refs, &mut out)?;

    let start = Instant::now();
    for _ in 0..args.repeat {
        model.encode_into(&refs, &mut out)?;
        std::hint::black_box(&out);
    }
    let seconds = start.elapsed().as_secs_f64();
    let sentences = refs.len() as u64 * args.repeat;
    let rate = sentences as f64 / seconds;
    let input_bytes: usize = refs.iter().map(|t| t.len()).sum();
    let threads = rayon::current_num_threads();
    if args.json {
        let line = serde_json::json!({
            "model": model.dir().display().to_string(),
            "semantics": model.semantics().as_str(),
            "dim": model.dim(),
            "sentences": sentences,
            "repeat": args.repeat,
            "seconds": seconds,
            "sentences_per_s": rate,
            "mb_per_s": (input_bytes as f64 * args.repeat as f64) / seconds / 1e6,
            "threads": threads,
            "load_seconds": load_seconds,
        });
        println!("{line}");
    } else {
        println!(
            "{sentences} sentences in {seconds:.3} s: {rate:.0} sentences/s ({} semantics, dim {}, {threads} threads, load {load_seconds:.3} s)",
            model.semantics(),
            model.dim()
        );
    }
    Ok(())
}
