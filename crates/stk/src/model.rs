//! [`Model`]: a model folder that encodes text into one `[N, D]` f32 buffer.
//!
//! What a folder is, and how it is encoded by default:
//!
//! * **model2vec folder**: one of model2vec's three layouts (see [`crate::model2vec`]) whose
//!   config's `model_type` is `model2vec` or absent. Default semantics: [`Semantics::Model2Vec`]
//!   (model2vec's `StaticModel.encode`) when the layout is `config.json` + `model.safetensors` +
//!   `tokenizer.json` (the potion folders also carry a `modules.json`; they are still model2vec
//!   folders) or when there is no `modules.json` (only model2vec loads such a folder).
//! * **sentence-transformers folder**: a `modules.json`. Default semantics:
//!   [`Semantics::SentenceTransformers`] (`SentenceTransformer(folder).encode`). When the
//!   modules are a `StaticEmbedding` at the folder root, optionally followed by `Normalize`,
//!   and no `config_sentence_transformers.json` could add a prompt, the static table is used
//!   directly; any other module list is a [`Pipeline`].
//! * **bare StaticEmbedding folder**: `model.safetensors` + `tokenizer.json` and nothing else:
//!   the sentence-transformers `StaticEmbedding` module alone.
//!
//! [`Semantics::SentenceTransformers`] on a static folder means the `StaticEmbedding` module
//! (ids without special tokens, unknown tokens kept, mean of rows), followed by `Normalize`
//! when `modules.json` lists one or when [`LoadOptions::normalize`] asks for it.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use stk_core::{DType, Device, Error, Result, Tensor};
use stk_cpu::StaticEmbedding;

use rayon::prelude::*;

use crate::embedded::EmbeddedFiles;
use crate::gpu::GpuStatic;
use crate::model2vec::{MaxLength, Model2Vec, Model2VecConfig, Model2VecLayout, TokenEmbeddings};
use crate::pipeline::Pipeline;
use crate::quantize::{EncodeOptions, EncodedArray};

/// sentence-transformers' model configuration, which may set a default prompt.
const PROMPT_CONFIG: &str = "config_sentence_transformers.json";

/// Which reference a static model's output must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// sentence-transformers: `StaticEmbedding` (+ `Normalize`).
    SentenceTransformers,
    /// model2vec's `StaticModel.encode`.
    Model2Vec,
}

impl Semantics {
    /// The name `--semantics` and the Python package take (`sentence-transformers`, `model2vec`).
    pub fn as_str(self) -> &'static str {
        match self {
            Semantics::SentenceTransformers => "sentence-transformers",
            Semantics::Model2Vec => "model2vec",
        }
    }
}

impl FromStr for Semantics {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sentence-transformers" | "sentence_transformers" | "st" => {
                Ok(Semantics::SentenceTransformers)
            }
            "model2vec" => Ok(Semantics::Model2Vec),
            _ => Err(Error::invalid(format!(
                "unknown semantics `{s}` (expected sentence-transformers or model2vec)"
            ))),
        }
    }
}

impl std::fmt::Display for Semantics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to load and run a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `None`: the folder's default (see the module docs).
    pub semantics: Option<Semantics>,
    /// `Some(b)`: normalize the output (or not), whatever the folder says. `None`: as the
    /// folder says (model2vec `config.json` `normalize`; a `Normalize` module in `modules.json`).
    pub normalize: Option<bool>,
    /// model2vec token limit (and character cut). Default: the config's, else 512.
    pub max_length: MaxLength,
    /// Where encoding runs (`Device::Cpu`, or a CUDA device for the embedding bag).
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            semantics: None,
            normalize: None,
            max_length: MaxLength::FromConfig,
            device: Device::Cpu,
        }
    }
}

/// `[rows, dim]` f32 embeddings in one contiguous row-major buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    data: Vec<f32>,
    rows: usize,
    dim: usize,
}

impl Embeddings {
    /// Wrap `data` (`rows × dim` values).
    pub fn new(data: Vec<f32>, rows: usize, dim: usize) -> Result<Self> {
        if rows.checked_mul(dim) != Some(data.len()) {
            return Err(Error::shape(
                "embeddings",
                format!("[{rows}, {dim}]"),
                &[data.len()],
            ));
        }
        Ok(Embeddings { data, rows, dim })
    }
    /// Number of embeddings (one per text).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Width of each embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// All values, row-major (`rows × dim`).
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
    /// Row `i`; panics if `i >= rows` (like slice indexing).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    /// The row-major values, without a copy.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
    /// As a `[rows, dim]` f32 tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Tensor::from_slice([self.rows, self.dim], &self.data)
    }
    /// As a `[rows, dim]` tensor of `dtype`: f32, or f16 (rounded to nearest) for the size
    /// model2vec's `encode` answers in for an f16 table.
    pub fn to_tensor_as(&self, dtype: DType) -> Result<Tensor> {
        self.to_tensor()?
            .to_dtype(crate::text_io::check_output_dtype(dtype)?)
    }
}

enum Engine {
    Model2Vec(Model2Vec),
    /// sentence-transformers `StaticEmbedding`, then `Normalize` when `normalize`.
    Static {
        embedding: StaticEmbedding,
        normalize: bool,
    },
    /// A sentence-transformers module list, then `Normalize` when `normalize` (asked for and
    /// not already the last module).
    Pipeline {
        pipeline: Pipeline,
        normalize: bool,
    },
}

/// A loaded model that encodes text.
pub struct Model {
    engine: Engine,
    semantics: Semantics,
    dim: usize,
    dir: PathBuf,
    /// The static table on a GPU, when loaded with `device: cuda[:N]`.
    gpu: Option<GpuStatic>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("dir", &self.dir)
            .field("semantics", &self.semantics)
            .field("dim", &self.dim)
            .field("normalize", &self.normalizes())
            .finish()
    }
}

/// Files at a folder's root that decide what it is.
struct FolderKind {
    has_table: bool,
    has_tokenizer: bool,
    has_pytorch_bin: bool,
    has_modules: bool,
    /// The model2vec layout model2vec would load, with its (readable) config.
    model2vec: Option<(Model2VecLayout, Model2VecConfig)>,
}

impl FolderKind {
    fn inspect(dir: &Path) -> Result<Self> {
        let has_modules = dir.join("modules.json").is_file();
        let model2vec = match Model2VecLayout::find(dir) {
            None => None,
            // Beside a static table the config must be readable (a transformer's config.json
            // parses too: only its model_type differs).
            Some(layout) => {
                let config = layout.read_config()?;
                Some((layout, config))
            }
        };
        Ok(FolderKind {
            has_table: dir.join("model.safetensors").is_file(),
            has_tokenizer: dir.join("tokenizer.json").is_file(),
            has_pytorch_bin: dir.join("pytorch_model.bin").is_file(),
            has_modules,
            model2vec,
        })
    }

    /// The embedded default model: a model2vec folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`) with a `modules.json`, decided by the same rules as one on disk.
    fn embedded(dir: &Path, files: &EmbeddedFiles) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = Model2VecConfig::from_bytes(files.config, &config_path)?;
        let layout = Model2VecLayout {
            config: Some(config_path),
            table_dir: dir.to_path_buf(),
        };
        Ok(FolderKind {
            has_table: true,
            has_tokenizer: true,
            has_pytorch_bin: false,
            has_modules: true,
            model2vec: Some((layout, config)),
        })
    }

    fn is_static(&self) -> bool {
        self.has_table && self.has_tokenizer
    }

    /// model2vec's own folder: a model2vec layout whose config is model2vec's, either at the
    /// root (`config.json`, even beside a `modules.json`) or in a folder that
    /// sentence-transformers cannot load (no `modules.json`).
    fn is_model2vec(&self, dir: &Path) -> bool {
        self.model2vec.as_ref().is_some_and(|(layout, config)| {
            let own_config = layout.config.as_deref() == Some(&*dir.join("config.json"));
            config.is_model2vec() && (own_config || !self.has_modules)
        })
    }

    /// Pickled weights alone are refused with a message saying what to do.
    fn refuse_pickled_only(&self, dir: &Path) -> Result<()> {
        if !self.has_table && self.has_pytorch_bin && !self.has_modules {
            return Err(Error::config(
                dir,
                "has only pytorch_model.bin: pickled PyTorch weights are not supported \
                 (save the model as model.safetensors)",
            ));
        }
        Ok(())
    }

    /// The semantics a folder is encoded with when the caller does not choose.
    fn default_semantics(&self, dir: &Path) -> Result<Semantics> {
        if self.is_model2vec(dir) {
            Ok(Semantics::Model2Vec)
        } else if self.has_modules || self.is_static() {
            Ok(Semantics::SentenceTransformers)
        } else {
            Err(Error::config(
                dir,
                "is not a model folder: expected model.safetensors + tokenizer.json (a static \
                 model, with config.json or config_sentence_transformers.json for model2vec) or \
                 modules.json (a sentence-transformers model)",
            ))
        }
    }
}

/// Where a model's files are read from; everything after reading the bytes is shared.
#[derive(Clone, Copy)]
enum Origin {
    Folder,
    Embedded(&'static EmbeddedFiles),
}

impl Origin {
    /// The bytes of the file `name` at the root of `dir`.
    fn read(self, dir: &Path, name: &str) -> Result<Cow<'static, [u8]>> {
        let path = dir.join(name);
        match self {
            Origin::Folder => std::fs::read(&path)
                .map(Cow::Owned)
                .map_err(|e| Error::io(&path, e)),
            Origin::Embedded(files) => files.file(name).map(Cow::Borrowed).ok_or_else(|| {
                Error::io(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "not embedded"),
                )
            }),
        }
    }

    fn has_file(self, dir: &Path, name: &str) -> bool {
        match self {
            Origin::Folder => dir.join(name).exists(),
            Origin::Embedded(files) => files.file(name).is_some(),
        }
    }

    fn static_embedding(self, dir: &Path) -> Result<StaticEmbedding> {
        match self {
            Origin::Folder => StaticEmbedding::from_dir(dir),
            Origin::Embedded(files) => files.static_embedding(dir),
        }
    }
}

impl Engine {
    fn dim(&self) -> usize {
        match self {
            Engine::Model2Vec(m) => m.dim(),
            Engine::Static { embedding, .. } => embedding.dim(),
            Engine::Pipeline { pipeline, .. } => pipeline.dim(),
        }
    }

    /// model2vec semantics: the table and config of the folder's model2vec layout.
    fn model2vec(origin: Origin, dir: &Path, options: &LoadOptions) -> Result<Engine> {
        let (normalize, max_length) = (options.normalize, options.max_length);
        let model = match origin {
            Origin::Folder => Model2Vec::from_dir(dir, normalize, max_length)?,
            Origin::Embedded(files) => {
                let config = Model2VecConfig::from_bytes(files.config, &dir.join("config.json"))?;
                let embedding = files.static_embedding(dir)?;
                Model2Vec::configured(embedding, &config, normalize, max_length)
            }
        };
        Ok(Engine::Model2Vec(model))
    }

    /// sentence-transformers semantics. A StaticEmbedding at the root (+ Normalize) and no
    /// prompt configuration runs on the table directly (the same modules as the Pipeline,
    /// without its per-batch feature copies); anything else is a Pipeline.
    fn sentence_transformers(
        origin: Origin,
        dir: &Path,
        kind: &FolderKind,
        options: &LoadOptions,
    ) -> Result<Engine> {
        let static_normalize = if kind.has_modules {
            let modules = origin.read(dir, "modules.json")?;
            static_modules(&modules, &dir.join("modules.json"))?
                .filter(|_| kind.is_static() && !origin.has_file(dir, PROMPT_CONFIG))
        } else if kind.is_static() {
            Some(false)
        } else {
            None
        };
        match static_normalize {
            Some(folder_normalize) => Ok(Engine::Static {
                embedding: origin.static_embedding(dir)?,
                normalize: options.normalize.unwrap_or(folder_normalize),
            }),
            None if kind.has_modules => Self::pipeline(dir, options),
            None => Err(Error::config(
                dir,
                "sentence-transformers semantics need modules.json, or model.safetensors \
                 and tokenizer.json for a StaticEmbedding",
            )),
        }
    }

    /// A module list, normalized afterwards when asked and not already ending with Normalize.
    fn pipeline(dir: &Path, options: &LoadOptions) -> Result<Engine> {
        let pipeline = Pipeline::load(dir)?;
        let ends_normalized = pipeline.modules().last() == Some(&"Normalize");
        if options.normalize == Some(false) && ends_normalized {
            return Err(Error::invalid(format!(
                "{}: the pipeline ends with Normalize, which cannot be left out",
                dir.display()
            )));
        }
        Ok(Engine::Pipeline {
            normalize: options.normalize == Some(true) && !ends_normalized,
            pipeline,
        })
    }
}

/// The local folder `path` names: itself, or (with the `hub` feature) a downloaded hub model.
fn resolve_dir(path: &Path) -> Result<PathBuf> {
    let dir = if path.exists() {
        path.to_path_buf()
    } else if let Some(id) = hub::as_hub_id(path) {
        hub::fetch(id)?
    } else {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found"),
        ));
    };
    if !dir.is_dir() {
        return Err(Error::config(&dir, "is a file, not a model folder"));
    }
    crate::folder::check_links_stay_inside(&dir)?;
    Ok(dir)
}

impl Model {
    /// Load `path` with the default options.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Load the default model embedded in the program (potion-base-8M with an f16 table, the
    /// repository's `models/potion-base-8M-f16`), from memory, with the checks and rules a
    /// folder gets. Needs the `embedded-model` cargo feature; without it, an error says so.
    pub fn load_default(options: &LoadOptions) -> Result<Model> {
        let files = crate::embedded::files()?;
        let dir = EmbeddedFiles::dir();
        let kind = FolderKind::embedded(&dir, files)?;
        Self::build(Origin::Embedded(files), dir, &kind, options)
    }

    /// Load a model folder (or, with the `hub` feature, an `owner/name` Hugging Face id):
    /// find the folder, decide the semantics, build the engine, then its GPU side if asked.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let dir = resolve_dir(path.as_ref())?;
        let kind = FolderKind::inspect(&dir)?;
        kind.refuse_pickled_only(&dir)?;
        Self::build(Origin::Folder, dir, &kind, options)
    }

    /// Decide the semantics, build the engine, then its GPU side if asked.
    fn build(
        origin: Origin,
        dir: PathBuf,
        kind: &FolderKind,
        options: &LoadOptions,
    ) -> Result<Model> {
        let semantics = match options.semantics {
            Some(s) => s,
            None => kind.default_semantics(&dir)?,
        };
        let engine = match semantics {
            Semantics::Model2Vec => Engine::model2vec(origin, &dir, options)?,
            Semantics::SentenceTransformers => {
                Engine::sentence_transformers(origin, &dir, kind, options)?
            }
        };
        let gpu = match options.device {
            Device::Cpu => None,
            Device::Cuda(n) => Some(gpu_engine(&engine, n)?),
        };
        Ok(Model {
            dim: engine.dim(),
            engine,
            semantics,
            dir,
            gpu,
        })
    }

    /// A sentence-transformers `StaticEmbedding` (+ `Normalize` when `normalize`).
    pub fn from_static_embedding(embedding: StaticEmbedding, normalize: bool) -> Model {
        Model {
            dim: embedding.dim(),
            dir: embedding.dir().to_path_buf(),
            engine: Engine::Static {
                embedding,
                normalize,
            },
            semantics: Semantics::SentenceTransformers,
            gpu: None,
        }
    }

    /// A model2vec model.
    pub fn from_model2vec(model: Model2Vec) -> Model {
        Model {
            dim: model.dim(),
            dir: model.dir().to_path_buf(),
            engine: Engine::Model2Vec(model),
            semantics: Semantics::Model2Vec,
            gpu: None,
        }
    }

    /// Width of each embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Whose `encode` the model reproduces (from the folder, or as the load options forced).
    pub fn semantics(&self) -> Semantics {
        self.semantics
    }
    /// The folder the model was loaded from ([`crate::embedded::EMBEDDED_MODEL_NAME`] for the
    /// embedded default model).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Whether outputs are L2-normalized.
    pub fn normalizes(&self) -> bool {
        match &self.engine {
            Engine::Model2Vec(m) => m.normalize(),
            Engine::Static { normalize, .. } => *normalize,
            Engine::Pipeline {
                pipeline,
                normalize,
            } => *normalize || pipeline.modules().last() == Some(&"Normalize"),
        }
    }

    /// Encode `texts` into `[texts.len(), dim]` embeddings (`[0, dim]` for no text).
    ///
    /// ```
    /// # fn main() -> stk::Result<()> {
    /// # let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/potion-base-8M-int8-vq2048-d128");
    /// let model = stk::Model::load(folder)?; // a model2vec or sentence-transformers folder
    /// let embeddings = model.encode(&["Hello world", "Rust is fast"])?;
    /// assert_eq!((embeddings.rows(), embeddings.dim()), (2, model.dim()));
    /// // model2vec semantics with this folder's config: rows are unit length.
    /// let norm: f32 = embeddings.row(0).iter().map(|v| v * v).sum::<f32>().sqrt();
    /// assert!((norm - 1.0).abs() < 1e-5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn encode(&self, texts: &[&str]) -> Result<Embeddings> {
        let len = texts
            .len()
            .checked_mul(self.dim)
            .ok_or_else(|| Error::invalid("too many texts for one output buffer"))?;
        let mut data = stk_core::zeroed_f32s(len, "the embeddings")?;
        self.encode_into(texts, &mut data)?;
        Embeddings::new(data, texts.len(), self.dim)
    }

    /// Encode `texts`, then apply `options` as `SentenceTransformer.encode` does after the
    /// modules: truncation, normalization when asked, precision (int8/uint8 ranges from the
    /// options' calibration, else from these texts' embeddings). See [`crate::quantize`].
    pub fn encode_with(&self, texts: &[&str], options: &EncodeOptions) -> Result<EncodedArray> {
        options.truncated_dim(self.dim)?;
        let embeddings = self.encode(texts)?;
        options.apply(embeddings.as_slice(), self.dim)
    }

    /// model2vec's `encode_as_sequence(texts, max_length=...)`: each text's token rows, not
    /// averaged (see [`Model2Vec::encode_as_sequence`]). Only for model2vec semantics.
    pub fn encode_as_sequence(
        &self,
        texts: &[&str],
        max_length: Option<usize>,
    ) -> Result<TokenEmbeddings> {
        self.model2vec("encode_as_sequence")?
            .encode_as_sequence(texts, max_length)
    }

    /// [`Model::encode_as_sequence`] into `out`, which must hold exactly every text's rows
    /// (the last of [`Model::sequence_offsets`] × dim values); returns the row offsets.
    /// Model2vec only.
    pub fn encode_as_sequence_into(
        &self,
        texts: &[&str],
        max_length: Option<usize>,
        out: &mut [f32],
    ) -> Result<Vec<usize>> {
        self.model2vec("encode_as_sequence")?
            .encode_as_sequence_into(texts, max_length, out)
    }

    /// The row offsets [`Model::encode_as_sequence`] gives `texts` (`texts.len() + 1`, from
    /// 0): the size of the output before computing it (it only tokenizes). Model2vec only.
    pub fn sequence_offsets(
        &self,
        texts: &[&str],
        max_length: Option<usize>,
    ) -> Result<Vec<usize>> {
        self.model2vec("sequence_offsets")?
            .sequence_offsets(texts, max_length)
    }

    /// model2vec's `tokenize(texts)`: each text's ids, truncated to the model's `max_length`,
    /// the unknown id dropped (see [`Model2Vec::tokenize_into`]). Only for model2vec
    /// semantics. In parallel.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        self.model2vec("tokenize")?.tokenize(texts)
    }

    /// The model2vec engine, or an error saying that `what` needs one.
    fn model2vec(&self, what: &str) -> Result<&Model2Vec> {
        match &self.engine {
            Engine::Model2Vec(m) => Ok(m),
            _ => Err(Error::Unsupported(
                format!("{what} (model2vec's token-level call)"),
                format!(
                    "a model with {} semantics (load it with model2vec semantics)",
                    self.semantics.as_str()
                ),
            )),
        }
    }

    /// Encode `texts` into `out` (`texts.len() × dim` values, row-major), reusing the caller's
    /// buffer; texts are encoded in parallel.
    pub fn encode_into(&self, texts: &[&str], out: &mut [f32]) -> Result<()> {
        if let Some(gpu) = &self.gpu {
            return match &self.engine {
                Engine::Model2Vec(m) => {
                    gpu.encode_into(texts, out, |t, ids| m.token_ids_into(t, ids))
                }
                Engine::Static { embedding, .. } => {
                    gpu.encode_into(texts, out, |t, ids| embedding.token_ids_into(t, ids))
                }
                Engine::Pipeline { .. } => Err(Error::Unsupported(
                    "encoding a module pipeline".into(),
                    "cuda".into(),
                )),
            };
        }
        match &self.engine {
            Engine::Model2Vec(m) => m.encode_into(texts, out),
            Engine::Static {
                embedding,
                normalize,
            } => {
                let normalize = *normalize;
                embedding.embed_rows_with(
                    texts,
                    out,
                    |text, ids| embedding.token_ids_into(text, ids),
                    |row| {
                        if normalize {
                            stk_cpu::normalize::normalize_in_place(row)
                        }
                    },
                )
            }
            Engine::Pipeline {
                pipeline,
                normalize,
            } => {
                pipeline.encode_into(texts, out)?;
                if *normalize && self.dim > 0 {
                    out.par_chunks_mut(self.dim)
                        .for_each(stk_cpu::normalize::normalize_in_place);
                }
                Ok(())
            }
        }
    }
}

/// For a `modules.json` that is a `StaticEmbedding` at the folder root, optionally followed by
/// `Normalize`: `Some(whether Normalize follows)`. Any other module list: `None`.
fn static_modules(bytes: &[u8], path: &Path) -> Result<Option<bool>> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        path: String,
    }
    let entries: Vec<Entry> = serde_json::from_slice(bytes)
        .map_err(|e| Error::config(path, format!("expected a JSON list of modules: {e}")))?;
    let short = |e: &Entry| e.kind.rsplit('.').next().unwrap_or("").to_string();
    Ok(match entries.as_slice() {
        [first, rest @ ..]
            if short(first) == "StaticEmbedding" && matches!(first.path.as_str(), "" | ".") =>
        {
            match rest {
                [] => Some(false),
                [second] if short(second) == "Normalize" => Some(true),
                _ => None,
            }
        }
        _ => None,
    })
}

/// `owner/name` model ids. Fetching them needs network access and the `hub` cargo feature.
mod hub {
    use std::path::{Path, PathBuf};
    use stk_core::{Error, Result};

    /// `Some("owner/name")` when `path` (which does not exist locally) reads as a hub id.
    pub fn as_hub_id(path: &Path) -> Option<&str> {
        let s = path.to_str()?;
        let (owner, name) = s.split_once('/')?;
        let ok = |p: &str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        (ok(owner) && ok(name)).then_some(s)
    }

    #[cfg(not(feature = "hub"))]
    pub fn fetch(id: &str) -> Result<PathBuf> {
        Err(Error::invalid(format!(
            "`{id}` is not a local folder, and this stk was built without the `hub` feature, so it \
             cannot download models from the Hugging Face Hub: download the model folder and pass \
             its path (or build stk with `--features hub`)"
        )))
    }

    /// Download the files a model needs (JSON configs, safetensors weights, vocabularies) into
    /// the Hugging Face cache and return the snapshot folder.
    #[cfg(feature = "hub")]
    pub fn fetch(id: &str) -> Result<PathBuf> {
        let failed = |e: &dyn std::fmt::Display| {
            Error::invalid(format!(
                "fetching `{id}` from the Hugging Face Hub failed: {e} (hub ids need network \
                 access; pass a local folder otherwise)"
            ))
        };
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| failed(&e))?;
        let repo = api.model(id.to_string());
        let info = repo.info().map_err(|e| failed(&e))?;
        let wanted = |name: &str| {
            let skip_dir = ["onnx/", "openvino/", "coreml/"]
                .iter()
                .any(|d| name.starts_with(d));
            let ext_ok = [".json", ".safetensors", ".txt"]
                .iter()
                .any(|e| name.ends_with(e));
            ext_ok && !skip_dir
        };
        let mut root: Option<PathBuf> = None;
        for sibling in info.siblings.iter().filter(|s| wanted(&s.rfilename)) {
            let local = repo.get(&sibling.rfilename).map_err(|e| failed(&e))?;
            if root.is_none() {
                // The snapshot folder: strip the file's own path inside the repository.
                let depth = Path::new(&sibling.rfilename).components().count();
                root = local.ancestors().nth(depth).map(Path::to_path_buf);
            }
        }
        root.ok_or_else(|| failed(&"the repository has no model files (.json, .safetensors)"))
    }
}

/// The GPU side of a static model's engine (`--device cuda[:N]`): its table on the device,
/// normalized by the engine's rule. Module pipelines have no GPU path.
fn gpu_engine(engine: &Engine, ordinal: usize) -> Result<GpuStatic> {
    match engine {
        Engine::Model2Vec(m) => GpuStatic::new(
            ordinal,
            m.embedding().bag(),
            m.normalize().then_some(stk_cuda::NormRule::MODEL2VEC),
        ),
        Engine::Static {
            embedding,
            normalize,
        } => GpuStatic::new(
            ordinal,
            embedding.bag(),
            normalize.then_some(stk_cuda::NormRule::SENTENCE_TRANSFORMERS),
        ),
        Engine::Pipeline { .. } => Err(Error::Unsupported(
            "encoding a module pipeline".into(),
            format!("cuda:{ordinal} (only static models run on the GPU; use --device cpu)"),
        )),
    }
}
