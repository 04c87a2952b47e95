//! `stk encode`: texts in, embeddings out, streamed in batches (see `stk::text_io`).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stk::model2vec::MaxLength;
use stk::text_io::{check_output_dtype, encode_stream, OutputFormat, StreamOptions, TextSource};
use stk::{DType, Device, LoadOptions, Model, Result, Semantics};

/// Options shared by the commands that load a model (`encode`, `bench encode`).
#[derive(ClapArgs, Debug, Clone)]
pub struct ModelArgs {
    /// Model folder (model2vec or sentence-transformers); default: the embedded potion-base-8M-f16.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output semantics: sentence-transformers or model2vec (default: the folder's own).
    #[arg(long)]
    pub semantics: Option<Semantics>,
    /// L2-normalize the embeddings, whatever the model folder says.
    #[arg(long, conflicts_with = "no_normalize")]
    pub normalize: bool,
    /// Do not normalize the embeddings, whatever the model folder says.
    #[arg(long)]
    pub no_normalize: bool,
    /// model2vec semantics: token limit per text (and character cut); 0 = no limit.
    /// Default: the model config's `max_length`, else 512.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Model> {
        let options = LoadOptions {
            semantics: self.semantics,
            normalize: match (self.normalize, self.no_normalize) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            max_length: match self.max_length {
                None => MaxLength::FromConfig,
                Some(0) => MaxLength::Unlimited,
                Some(n) => MaxLength::Limit(n),
            },
            device: self.device,
        };
        match &self.model {
            Some(dir) => Model::load_with(dir, &options),
            None => Model::load_default(&options),
        }
    }
}

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Texts: a .txt file (one per line), a .json file (array of strings) or - for stdin lines.
    #[arg(long)]
    pub input: PathBuf,
    /// Embeddings: .safetensors (tensor `embeddings`), .npy or .jsonl.
    #[arg(long)]
    pub output: PathBuf,
    /// Element type of the output: f32 (what stk computes) or f16 (the size model2vec's encode
    /// answers in for an f16 table; values rounded to f16).
    #[arg(long, default_value = "f32", value_parser = parse_output_dtype)]
    pub output_dtype: DType,
    /// Texts read and encoded at a time (bounds memory).
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    // Fail on the output name before loading anything.
    OutputFormat::from_path(&args.output)?;
    let source = TextSource::from_arg(&args.input);
    let model = args.model.load()?;

    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        progress_bar(source.len_bytes())
    };
    let mut progress = |texts: u64, bytes: u64| {
        bar.set_message(format!("{texts} texts"));
        if bytes > 0 {
            bar.set_position(bytes);
        } else {
            bar.tick();
        }
    };
    let rows = encode_stream(
        &model,
        &source,
        &args.output,
        StreamOptions {
            batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
            progress: Some(&mut progress),
            output_dtype: args.output_dtype,
        },
    );
    bar.finish_and_clear();
    let rows = rows?;
    if !args.quiet {
        eprintln!(
            "stk: wrote {rows} x {} embeddings ({}) to {}",
            model.dim(),
            model.semantics(),
            args.output.display()
        );
    }
    Ok(())
}

fn parse_output_dtype(s: &str) -> Result<DType> {
    check_output_dtype(DType::parse(s)?)
}

fn progress_bar(total_bytes: Option<u64>) -> ProgressBar {
    let bar = match total_bytes {
        Some(n) => {
            let b = ProgressBar::new(n);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, eta {eta})",
            ) {
                b.set_style(style);
            }
            b
        }
        None => {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                b.set_style(style);
            }
            b
        }
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar
}
