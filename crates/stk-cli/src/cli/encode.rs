//! `stk encode`: texts in, embeddings out, streamed in batches (see `stk::text_io`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stk::model2vec::MaxLength;
use stk::text_io::{
    check_output_dtype, encode_stream, ranges_from_source, read_embeddings, OutputFormat,
    StreamOptions, TextSource,
};
use stk::{
    DType, Device, EncodeOptions, Error, LoadOptions, Model, Precision, Ranges, Result, Semantics,
};

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
    #[command(flatten)]
    pub options: EncodeArgs,
}

/// `SentenceTransformer.encode`'s options after the modules (see `stk::quantize`).
#[derive(ClapArgs, Debug, Clone)]
pub struct EncodeArgs {
    /// Keep the first K dimensions (Matryoshka), after the model's own modules (its Normalize
    /// included).
    #[arg(long, value_name = "K")]
    pub truncate_dim: Option<usize>,
    /// L2-normalize after truncation (unlike --normalize, which acts before it).
    #[arg(long)]
    pub normalize_embeddings: bool,
    /// float32, int8, uint8, binary or ubinary (sentence-transformers' quantize_embeddings).
    #[arg(long, default_value = "float32")]
    pub precision: Precision,
    /// int8/uint8 ranges: from embeddings (.npy or .safetensors, already truncated to K), or
    /// from texts (.txt, .json) encoded with the same options. Default: a first pass over
    /// the input.
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
}

impl EncodeArgs {
    /// The options, with int8/uint8 ranges resolved (said on stderr, as they decide the output).
    fn resolve(
        &self,
        model: &Model,
        input: &TextSource,
        batch_size: usize,
    ) -> Result<EncodeOptions> {
        let mut options = EncodeOptions {
            truncate_dim: self.truncate_dim,
            normalize_embeddings: self.normalize_embeddings,
            precision: self.precision,
            calibration: None,
        };
        options.truncated_dim(model.dim())?;
        let precision = self.precision;
        if !precision.needs_ranges() {
            return match &self.calibration {
                Some(_) => Err(Error::invalid(format!(
                    "--calibration gives int8/uint8 ranges; precision {precision} has none"
                ))),
                None => Ok(options),
            };
        }
        let (ranges, said) = match &self.calibration {
            Some(file) => calibration_ranges(model, file, &options, batch_size)?,
            None => {
                let (ranges, n) = ranges_from_source(model, input, &options, batch_size)?;
                // An empty input has no row to quantize: any ranges give the same empty file.
                let k = options.truncated_dim(model.dim())?;
                let ranges = match ranges {
                    Some(r) => r,
                    None => Ranges::new(vec![0.0; k], vec![0.0; k])?,
                };
                (ranges, format!("a first pass over {n} texts"))
            }
        };
        eprintln!("stk: {precision} ranges from {said}");
        options.calibration = Some(ranges);
        options.truncated_dim(model.dim())?;
        Ok(options)
    }
}

/// Ranges from a calibration file: embeddings (.npy, .safetensors) or texts to encode.
fn calibration_ranges(
    model: &Model,
    file: &Path,
    options: &EncodeOptions,
    batch_size: usize,
) -> Result<(Ranges, String)> {
    let is_embeddings = ["npy", "safetensors"]
        .iter()
        .any(|e| file.extension().is_some_and(|x| x.eq_ignore_ascii_case(e)));
    if is_embeddings {
        let (values, rows, dim) = read_embeddings(file)?;
        if rows == 0 {
            return Err(Error::config(file, "holds no calibration embeddings"));
        }
        let ranges = Ranges::from_rows(&values, dim)?;
        Ok((
            ranges,
            format!("{rows} calibration embeddings in {}", file.display()),
        ))
    } else {
        let source = TextSource::from_arg(file);
        let (ranges, n) = ranges_from_source(model, &source, options, batch_size)?;
        let ranges = ranges.ok_or_else(|| Error::config(file, "holds no calibration texts"))?;
        Ok((
            ranges,
            format!("{n} calibration texts in {}", file.display()),
        ))
    }
}

pub fn run(args: Args) -> Result<()> {
    // Fail on the output name before loading anything.
    OutputFormat::from_path(&args.output)?;
    let source = TextSource::from_arg(&args.input);
    let model = args.model.load()?;
    let batch_size = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    let encode = args.options.resolve(&model, &source, batch_size)?;
    let (element_type, cols) = encode.output_shape(model.dim())?;
    let semantics = model.semantics();

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
            batch_size,
            progress: Some(&mut progress),
            output_dtype: args.output_dtype,
            encode,
        },
    );
    bar.finish_and_clear();
    // The process ends right after: freeing the tokenizer's maps one entry at a time would
    // only add ~5-10 ms to every command's wall clock (the OS takes the memory back at once).
    std::mem::forget(model);
    let rows = rows?;
    if !args.quiet {
        eprintln!(
            "stk: wrote {rows} x {cols} {} embeddings ({}) to {}",
            match element_type {
                stk::ElementType::F32 => args.output_dtype.as_str(),
                _ => args.options.precision.as_str(),
            },
            semantics,
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
