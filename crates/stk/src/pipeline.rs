//! [`Pipeline`]: a saved sentence-transformers model folder (`modules.json`) loaded as a chain of
//! stk-cpu modules, encoding text the way `SentenceTransformer(folder).encode(texts)` does.
//!
//! `modules.json` lists the modules in order (`idx`, `name`, `path`, `type`); each module's files
//! live in its `path`, the first module's often in the folder root (`path` empty). `type` names
//! the reference class in either spelling found in the wild: the current
//! `sentence_transformers.sentence_transformer.modules.pooling.Pooling` (or
//! `sentence_transformers.base.modules.normalize.Normalize`) and the older
//! `sentence_transformers.models.Pooling`; only the class name after the last dot decides.
//!
//! Loading checks that the modules fit together (each module's input width against the width
//! the modules before it produce, token-level modules before Pooling, a text module first), so
//! a folder that would fail halfway through encoding is refused up front, naming the module.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;
use stk_core::{Error, Result, Tensor};
use stk_cpu::bow::BoW;
use stk_cpu::cnn::Cnn;
use stk_cpu::dense::{Dense, DenseTarget};
use stk_cpu::dropout::Dropout;
use stk_cpu::layer_norm::LayerNorm;
use stk_cpu::lstm::Lstm;
use stk_cpu::normalize::Normalize;
use stk_cpu::pooling::Pooling;
use stk_cpu::static_embedding::StaticEmbedding;
use stk_cpu::word_embeddings::WordEmbeddings;
use stk_cpu::word_weights::WordWeights;
pub use stk_cpu::{Features, Module, TextModule};

/// Texts per batch, the reference's default `encode(batch_size=32)`. Batches matter only where
/// padding leaks into the result (a CNN whose output length differs from the mask), so stk
/// batches the same texts together as the reference does.
pub const PIPELINE_BATCH_SIZE: usize = 32;

/// The module classes a pipeline can hold, by the class name `modules.json` ends its `type`
/// with.
pub const SUPPORTED_MODULES: &[&str] = &[
    "WordEmbeddings",
    "BoW",
    "StaticEmbedding",
    "WordWeights",
    "CNN",
    "LSTM",
    "Pooling",
    "Normalize",
    "Dense",
    "LayerNorm",
    "Dropout",
];

/// One entry of `modules.json`.
#[derive(Debug, Clone, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    #[allow(dead_code)]
    idx: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    class: String,
}

/// The optional `config_sentence_transformers.json` keys that change what `encode` computes.
#[derive(Debug, Default, Deserialize)]
struct SentenceTransformerConfig {
    #[serde(default)]
    prompts: std::collections::HashMap<String, String>,
    #[serde(default)]
    default_prompt_name: Option<String>,
}

/// A loaded `modules.json` pipeline.
pub struct Pipeline {
    dir: PathBuf,
    first: Box<dyn TextModule>,
    rest: Vec<Box<dyn Module>>,
    /// Class names in order, for messages and `Debug`.
    kinds: Vec<&'static str>,
    dim: usize,
    /// `config_sentence_transformers.json`'s default prompt, prepended to every text.
    prompt: Option<String>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("dir", &self.dir)
            .field("modules", &self.kinds)
            .field("dim", &self.dim)
            .field("prompt", &self.prompt)
            .finish()
    }
}

/// The class name of a `modules.json` `type` (either spelling), parsed once at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModuleKind {
    WordEmbeddings,
    BoW,
    StaticEmbedding,
    WordWeights,
    Cnn,
    Lstm,
    Pooling,
    Normalize,
    Dense,
    LayerNorm,
    Dropout,
}

impl ModuleKind {
    /// In the order of [`SUPPORTED_MODULES`].
    const ALL: [ModuleKind; 11] = [
        ModuleKind::WordEmbeddings,
        ModuleKind::BoW,
        ModuleKind::StaticEmbedding,
        ModuleKind::WordWeights,
        ModuleKind::Cnn,
        ModuleKind::Lstm,
        ModuleKind::Pooling,
        ModuleKind::Normalize,
        ModuleKind::Dense,
        ModuleKind::LayerNorm,
        ModuleKind::Dropout,
    ];

    /// The reference's class name.
    fn name(self) -> &'static str {
        SUPPORTED_MODULES[self as usize]
    }

    /// The kind a `modules.json` `type` names; only the class name after the last dot of a
    /// `sentence_transformers.` path decides.
    fn parse(class: &str) -> Result<ModuleKind> {
        let short = class
            .strip_prefix("sentence_transformers.")
            .and_then(|c| c.rsplit('.').next());
        Self::ALL
            .into_iter()
            .find(|k| Some(k.name()) == short)
            .ok_or_else(|| unsupported(class))
    }
}

fn unsupported(class: &str) -> Error {
    Error::UnsupportedModule {
        module: class.to_string(),
        supported: format!(
            "{} (as sentence_transformers.models.X or sentence_transformers.sentence_transformer.modules.x.X)",
            SUPPORTED_MODULES.join(", ")
        ),
    }
}

/// What the modules loaded so far produce: the width of the token embeddings and of the
/// sentence embedding, when present.
#[derive(Debug, Clone, Copy, Default)]
struct Widths {
    tokens: Option<usize>,
    sentence: Option<usize>,
}

/// One `modules.json` entry with its kind parsed and its folder resolved; its errors name
/// the module and the `modules.json` file.
struct ModuleSpec<'a> {
    entry: &'a ModuleEntry,
    kind: ModuleKind,
    dir: PathBuf,
    list_path: &'a Path,
}

impl<'a> ModuleSpec<'a> {
    fn resolve(
        root: &Path,
        list_path: &'a Path,
        entry: &'a ModuleEntry,
        kind: ModuleKind,
    ) -> Result<Self> {
        let dir = crate::folder::module_path(root, &entry.path, list_path)?;
        if !dir.is_dir() {
            return Err(Error::config(
                list_path,
                format!(
                    "module {} ({}) has path `{}`, which is not a folder",
                    entry.name.as_deref().unwrap_or("?"),
                    entry.class,
                    entry.path
                ),
            ));
        }
        Ok(ModuleSpec {
            entry,
            kind,
            dir,
            list_path,
        })
    }

    fn refuse(&self, reason: &str) -> Error {
        Error::config(
            self.list_path,
            format!(
                "module `{}` ({}) {reason}",
                self.entry.path,
                self.kind.name()
            ),
        )
    }

    /// The width `width` of `what`, which a module before this one must have produced.
    fn need(&self, width: Option<usize>, what: &str) -> Result<usize> {
        width.ok_or_else(|| {
            self.refuse(&format!("needs {what}, which no module before it produces"))
        })
    }

    fn check_width(&self, have: usize, want: usize, what: &str) -> Result<()> {
        if have != want {
            return Err(self.refuse(&format!(
                "expects {what} of width {want}, but the modules before it produce width {have}"
            )));
        }
        Ok(())
    }
}

/// `modules.json`: a non-empty list of entries.
fn read_module_list(list_path: &Path) -> Result<Vec<ModuleEntry>> {
    let text = std::fs::read_to_string(list_path).map_err(|e| Error::io(list_path, e))?;
    let entries: Vec<ModuleEntry> = serde_json::from_str(&text).map_err(|e| {
        Error::config(
            list_path,
            format!("expected a JSON list of modules, each with `path` and `type`: {e}"),
        )
    })?;
    if entries.is_empty() {
        return Err(Error::config(list_path, "lists no modules"));
    }
    Ok(entries)
}

/// The first module, which reads text, and the widths it produces.
fn load_text_module(spec: &ModuleSpec) -> Result<(Box<dyn TextModule>, Widths)> {
    let mut widths = Widths::default();
    let module: Box<dyn TextModule> = match spec.kind {
        ModuleKind::WordEmbeddings => {
            let m = WordEmbeddings::from_dir(&spec.dir)?;
            widths.tokens = Some(m.dim());
            Box::new(m)
        }
        ModuleKind::BoW => {
            let m = BoW::from_dir(&spec.dir)?;
            widths.sentence = Some(m.dim());
            Box::new(m)
        }
        ModuleKind::StaticEmbedding => {
            let m = StaticEmbedding::from_dir(&spec.dir)?;
            widths.sentence = Some(m.dim());
            Box::new(m)
        }
        other => {
            return Err(Error::config(
                spec.list_path,
                format!(
                    "the first module is {}, which does not read text: a pipeline starts with \
                     WordEmbeddings, BoW or StaticEmbedding (a Transformer is not supported)",
                    other.name()
                ),
            ))
        }
    };
    Ok((module, widths))
}

/// With a prompt, the reference tells Pooling how many leading positions the prompt takes:
/// the length of the tokenized prompt minus one (it assumes a closing special token), as the
/// first module pads it. BoW gives no input ids, hence no length.
fn prompt_length(
    first: &dyn TextModule,
    kind: ModuleKind,
    prompt: Option<&str>,
) -> Result<Option<usize>> {
    let Some(p) = prompt else {
        return Ok(None);
    };
    let f = first.tokenize(&[p])?;
    let n = f.input_ids.first().map_or(0, Vec::len);
    Ok(match kind {
        ModuleKind::WordEmbeddings => n.max(1).checked_sub(1),
        ModuleKind::StaticEmbedding => n.checked_sub(1),
        _ => None,
    }
    .filter(|&n| n > 0))
}

/// A module after the first, checked against (and updating) what the modules before produce.
fn load_next_module(
    spec: &ModuleSpec,
    widths: &mut Widths,
    prompt_length: Option<usize>,
) -> Result<Box<dyn Module>> {
    let tokens = "token embeddings";
    let sentence = "a sentence embedding";
    Ok(match spec.kind {
        ModuleKind::WordWeights => {
            spec.need(widths.tokens, tokens)?;
            Box::new(WordWeights::from_dir(&spec.dir)?)
        }
        ModuleKind::Cnn => {
            let have = spec.need(widths.tokens, tokens)?;
            let m = Cnn::from_dir(&spec.dir)?;
            spec.check_width(have, m.in_dim(), tokens)?;
            widths.tokens = Some(m.dim());
            Box::new(m)
        }
        ModuleKind::Lstm => {
            let have = spec.need(widths.tokens, tokens)?;
            let m = Lstm::from_dir(&spec.dir)?;
            spec.check_width(have, m.in_dim(), tokens)?;
            widths.tokens = Some(m.dim());
            Box::new(m)
        }
        ModuleKind::Pooling => {
            let have = spec.need(widths.tokens, tokens)?;
            let m = load_pooling(spec, have, prompt_length)?;
            widths.sentence = Some(m.modes().len() * have);
            Box::new(m)
        }
        ModuleKind::Normalize => {
            spec.need(widths.sentence, sentence)?;
            Box::new(Normalize::from_dir(&spec.dir)?)
        }
        ModuleKind::Dense => Box::new(load_dense(spec, widths)?),
        ModuleKind::LayerNorm => {
            let have = spec.need(widths.sentence, sentence)?;
            let m = LayerNorm::from_dir(&spec.dir)?;
            spec.check_width(have, m.dim(), sentence)?;
            Box::new(m)
        }
        ModuleKind::Dropout => {
            spec.need(widths.sentence, sentence)?;
            Box::new(Dropout::from_dir(&spec.dir)?)
        }
        ModuleKind::WordEmbeddings | ModuleKind::BoW | ModuleKind::StaticEmbedding => {
            return Err(spec.refuse("reads text and can only be the first module"))
        }
    })
}

/// Pooling over token embeddings of width `have`, which its config must state.
fn load_pooling(spec: &ModuleSpec, have: usize, prompt_length: Option<usize>) -> Result<Pooling> {
    let config = spec.dir.join("config.json");
    let m = Pooling::from_dir(&spec.dir).map_err(|err| match err {
        // Errors without a file name (an unknown mode) get the module's.
        Error::UnknownPoolingMode(_) | Error::InvalidArgument(_) => {
            Error::config(&config, err.to_string())
        }
        other => other,
    })?;
    // The reference pools whatever width reaches it and reports the config's width; a config
    // that disagrees would silently give another width than it says, so it is refused.
    if m.embedding_dimension() != have {
        return Err(Error::config(
            &config,
            format!(
                "Pooling's embedding_dimension is {}, but the modules before it produce token \
                 embeddings of width {have}",
                m.embedding_dimension()
            ),
        ));
    }
    Ok(if m.include_prompt() {
        m
    } else {
        m.with_prompt_length(prompt_length)
    })
}

/// Dense on the sentence embedding or on the token embeddings, as its config says.
fn load_dense(spec: &ModuleSpec, widths: &mut Widths) -> Result<Dense> {
    let m = Dense::from_dir(&spec.dir)?;
    let (width, what) = match m.target() {
        DenseTarget::SentenceEmbedding => (&mut widths.sentence, "a sentence embedding"),
        DenseTarget::TokenEmbeddings => (&mut widths.tokens, "token embeddings"),
    };
    let have = spec.need(*width, what)?;
    spec.check_width(have, m.in_features(), what)?;
    *width = Some(m.out_features());
    Ok(m)
}

/// One module folder loaded on its own, outside a pipeline: what a binding needs to run a
/// single module of a model it holds (the Python package's `accelerate` saves a
/// sentence-transformers module to a folder and runs it here).
pub enum LoadedModule {
    /// A module that reads text (WordEmbeddings, BoW, StaticEmbedding).
    Text(Box<dyn TextModule>),
    /// Any other module: it transforms features.
    Step(Box<dyn Module>),
}

/// Load the module of class `class` (a `modules.json` `type`, either spelling, or the bare class
/// name) from `dir`, with the module's own checks. Width checks against neighbouring modules are
/// the caller's: a module alone has no neighbours (its `forward` still refuses inputs of the
/// wrong width). Pooling is loaded without a prompt length.
pub fn load_module(class: &str, dir: &Path) -> Result<LoadedModule> {
    let kind = if class.contains('.') {
        ModuleKind::parse(class)?
    } else {
        ModuleKind::parse(&format!("sentence_transformers.models.{class}"))?
    };
    crate::folder::check_links_stay_inside(dir)?;
    Ok(match kind {
        ModuleKind::WordEmbeddings => LoadedModule::Text(Box::new(WordEmbeddings::from_dir(dir)?)),
        ModuleKind::BoW => LoadedModule::Text(Box::new(BoW::from_dir(dir)?)),
        ModuleKind::StaticEmbedding => {
            LoadedModule::Text(Box::new(StaticEmbedding::from_dir(dir)?))
        }
        ModuleKind::WordWeights => LoadedModule::Step(Box::new(WordWeights::from_dir(dir)?)),
        ModuleKind::Cnn => LoadedModule::Step(Box::new(Cnn::from_dir(dir)?)),
        ModuleKind::Lstm => LoadedModule::Step(Box::new(Lstm::from_dir(dir)?)),
        ModuleKind::Pooling => LoadedModule::Step(Box::new(Pooling::from_dir(dir)?)),
        ModuleKind::Normalize => LoadedModule::Step(Box::new(Normalize::from_dir(dir)?)),
        ModuleKind::Dense => LoadedModule::Step(Box::new(Dense::from_dir(dir)?)),
        ModuleKind::LayerNorm => LoadedModule::Step(Box::new(LayerNorm::from_dir(dir)?)),
        ModuleKind::Dropout => LoadedModule::Step(Box::new(Dropout::from_dir(dir)?)),
    })
}

impl Pipeline {
    /// Load `dir/modules.json` and every module it lists.
    pub fn load(dir: impl AsRef<Path>) -> Result<Pipeline> {
        let dir = dir.as_ref().to_path_buf();
        let list_path = dir.join("modules.json");
        let entries = read_module_list(&list_path)?;
        // Parse every type first, so an unsupported module is reported before any loading.
        let kinds: Vec<ModuleKind> = entries
            .iter()
            .map(|e| ModuleKind::parse(&e.class))
            .collect::<Result<_>>()?;
        crate::folder::check_links_stay_inside(&dir)?;
        let specs: Vec<ModuleSpec> = entries
            .iter()
            .zip(kinds)
            .map(|(e, kind)| ModuleSpec::resolve(&dir, &list_path, e, kind))
            .collect::<Result<_>>()?;
        let prompt = default_prompt(&dir)?;

        let (first, mut widths) = load_text_module(&specs[0])?;
        let prompt_length = prompt_length(first.as_ref(), specs[0].kind, prompt.as_deref())?;
        let mut rest: Vec<Box<dyn Module>> = Vec::with_capacity(specs.len() - 1);
        for spec in &specs[1..] {
            rest.push(load_next_module(spec, &mut widths, prompt_length)?);
        }
        let dim = widths.sentence.ok_or_else(|| {
            Error::config(
                &list_path,
                "the modules produce token embeddings but no sentence embedding (a Pooling module is missing)",
            )
        })?;

        Ok(Pipeline {
            dir,
            first,
            rest,
            kinds: specs.iter().map(|s| s.kind.name()).collect(),
            dim,
            prompt,
        })
    }

    /// Width of each sentence embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The folder the pipeline was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The reference class names of the modules, in order.
    pub fn modules(&self) -> &[&'static str] {
        &self.kinds
    }

    /// The default prompt (from `config_sentence_transformers.json`) prepended to every text.
    pub fn prompt(&self) -> Option<&str> {
        self.prompt.as_deref()
    }

    /// Run one batch through tokenizer and modules: `[texts.len(), dim]` f32 values.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let prompted: Vec<String>;
        let texts: Vec<&str> = match &self.prompt {
            Some(p) => {
                prompted = texts.iter().map(|t| format!("{p}{t}")).collect();
                prompted.iter().map(String::as_str).collect()
            }
            None => texts.to_vec(),
        };
        let mut features: Features = self.first.tokenize(&texts)?;
        features = self.first.forward(features)?;
        for m in &self.rest {
            features = m.forward(features)?;
        }
        let out = features.sentence_embedding.ok_or_else(|| {
            Error::invalid(format!(
                "the pipeline {:?} produced no sentence embedding",
                self.kinds
            ))
        })?;
        if out.dims() != [texts.len(), self.dim] {
            return Err(Error::shape(
                "pipeline output",
                format!("[{}, {}]", texts.len(), self.dim),
                out.dims(),
            ));
        }
        out.to_f32_vec()
    }

    /// Encode `texts` into `out` (`texts.len() × dim` values, row-major, in the order of
    /// `texts`). Texts are batched as the reference batches them (longest first, by character
    /// count, [`PIPELINE_BATCH_SIZE`] at a time) and the batches run in parallel.
    pub fn encode_into(&self, texts: &[&str], out: &mut [f32]) -> Result<()> {
        let d = self.dim;
        if texts.len().checked_mul(d) != Some(out.len()) {
            return Err(Error::invalid(format!(
                "output buffer holds {} values, {} × {d} need {}",
                out.len(),
                stk_core::counted(texts.len(), "text"),
                texts.len().saturating_mul(d)
            )));
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count()));
        let batches: Vec<Vec<f32>> = order
            .par_chunks(PIPELINE_BATCH_SIZE)
            .map(|idx| {
                let batch: Vec<&str> = idx.iter().map(|&i| texts[i]).collect();
                self.encode_batch(&batch)
            })
            .collect::<Result<_>>()?;
        for (idx, rows) in order.chunks(PIPELINE_BATCH_SIZE).zip(batches) {
            for (&i, row) in idx.iter().zip(rows.chunks_exact(d.max(1))) {
                out[i * d..(i + 1) * d].copy_from_slice(&row[..d]);
            }
        }
        Ok(())
    }

    /// Encode `texts` into a `[texts.len(), dim]` f32 tensor (`[0, dim]` for no text).
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor> {
        let n = texts
            .len()
            .checked_mul(self.dim)
            .ok_or_else(|| Error::invalid("too many texts for one output buffer"))?;
        let mut out = vec![0f32; n];
        self.encode_into(texts, &mut out)?;
        Tensor::from_vec([texts.len(), self.dim], out)
    }
}

/// `config_sentence_transformers.json`'s `prompts[default_prompt_name]`, when both are set.
/// The file is optional; when present it must be valid JSON.
fn default_prompt(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("config_sentence_transformers.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let cfg: SentenceTransformerConfig = serde_json::from_str(&text).map_err(|e| {
        Error::config(
            &path,
            format!("not a valid config_sentence_transformers.json: {e}"),
        )
    })?;
    Ok(cfg
        .default_prompt_name
        .and_then(|name| cfg.prompts.get(&name).cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::testing::expect_err;

    /// A copy of a golden model folder that a test may break.
    fn golden_copy(case: &str) -> tempfile::TempDir {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/golden")
            .join(case)
            .join("model");
        let dst = tempfile::tempdir().unwrap();
        copy_dir(&src, dst.path());
        dst
    }

    fn copy_dir(src: &Path, dst: &Path) {
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            let to = dst.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&to).unwrap();
                copy_dir(&entry.path(), &to);
            } else {
                std::fs::copy(entry.path(), &to).unwrap();
            }
        }
    }

    fn write_modules(dir: &Path, entries: &[(&str, &str)]) {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (path, class))| serde_json::json!({"idx": i, "name": i.to_string(), "path": path, "type": class}))
            .collect();
        std::fs::write(
            dir.join("modules.json"),
            serde_json::Value::Array(list).to_string(),
        )
        .unwrap();
    }

    fn load_err(dir: &Path) -> Error {
        Pipeline::load(dir).expect_err("the folder should be refused")
    }

    #[test]
    fn both_type_spellings_load() {
        let d = golden_copy("lstm_mean");
        let p = Pipeline::load(d.path()).unwrap();
        assert_eq!(p.modules(), &["WordEmbeddings", "LSTM", "Pooling"]);
        assert_eq!(p.dim(), 64);
        assert!(p.prompt().is_none());
        write_modules(
            d.path(),
            &[
                ("", "sentence_transformers.models.WordEmbeddings"),
                ("1_LSTM", "sentence_transformers.models.LSTM"),
                ("2_Pooling", "sentence_transformers.models.Pooling"),
            ],
        );
        let q = Pipeline::load(d.path()).unwrap();
        let texts = ["a list of words", ""];
        assert_eq!(
            p.encode(&texts).unwrap().as_slice::<f32>().unwrap(),
            q.encode(&texts).unwrap().as_slice::<f32>().unwrap()
        );
    }

    #[test]
    fn unsupported_modules_are_named_with_the_supported_list() {
        let d = golden_copy("wordemb_mean");
        write_modules(
            d.path(),
            &[
                ("", "sentence_transformers.models.Transformer"),
                ("1_Pooling", "sentence_transformers.models.Pooling"),
            ],
        );
        match load_err(d.path()) {
            Error::UnsupportedModule { module, supported } => {
                assert_eq!(module, "sentence_transformers.models.Transformer");
                assert!(
                    supported.contains("WordEmbeddings") && supported.contains("LSTM"),
                    "{supported}"
                );
            }
            e => panic!("{e}"),
        }
        write_modules(d.path(), &[("", "my_package.WordEmbeddings")]);
        assert!(matches!(
            load_err(d.path()),
            Error::UnsupportedModule { .. }
        ));
    }

    #[test]
    fn malformed_module_lists_are_config_errors() {
        let d = golden_copy("wordemb_mean");
        for bad in [
            "not json",
            "{\"idx\": 0}",
            "[{\"idx\": 0, \"path\": \"\"}]",
            "[]",
        ] {
            std::fs::write(d.path().join("modules.json"), bad).unwrap();
            let e = load_err(d.path());
            assert!(
                matches!(e, Error::Config { .. }) && e.to_string().contains("modules.json"),
                "{bad}: {e}"
            );
        }
        std::fs::remove_file(d.path().join("modules.json")).unwrap();
        assert!(matches!(load_err(d.path()), Error::Io { .. }));
        // A module path that is not a folder.
        write_modules(
            d.path(),
            &[
                ("", "sentence_transformers.models.WordEmbeddings"),
                ("9_Pooling", "sentence_transformers.models.Pooling"),
            ],
        );
        let e = load_err(d.path()).to_string();
        assert!(e.contains("9_Pooling"), "{e}");
        // A module config that is not valid JSON names its file.
        let d = golden_copy("cnn_max");
        std::fs::write(
            d.path().join("1_CNN/cnn_config.json"),
            "{\"in_embedding_dimension\": ",
        )
        .unwrap();
        let e = load_err(d.path()).to_string();
        assert!(e.contains("cnn_config.json"), "{e}");
        let d = golden_copy("wordemb_mean");
        std::fs::write(d.path().join("config_sentence_transformers.json"), "[").unwrap();
        assert!(matches!(load_err(d.path()), Error::Config { .. }));
    }

    #[test]
    fn pickled_weights_are_refused_with_advice() {
        let d = golden_copy("lstm_mean");
        std::fs::rename(
            d.path().join("1_LSTM/model.safetensors"),
            d.path().join("1_LSTM/pytorch_model.bin"),
        )
        .unwrap();
        let e = load_err(d.path()).to_string();
        assert!(
            e.contains("pickled")
                && e.contains("model.safetensors")
                && e.contains("pytorch_model.bin"),
            "{e}"
        );
    }

    #[test]
    fn modules_that_do_not_fit_together_are_refused() {
        // LSTM expecting 32-wide input after 64-wide word embeddings.
        let d = golden_copy("lstm_mean");
        let cfg = r#"{"embedding_dimension": 32, "hidden_dim": 32, "num_layers": 2, "bidirectional": true}"#;
        std::fs::write(d.path().join("1_LSTM/lstm_config.json"), cfg).unwrap();
        let e = load_err(d.path()).to_string();
        assert!(e.contains("LSTM") || e.contains("weight_ih"), "{e}");
        // No pooling: token embeddings but no sentence embedding.
        let d = golden_copy("wordemb_mean");
        write_modules(
            d.path(),
            &[("", "sentence_transformers.models.WordEmbeddings")],
        );
        let e = load_err(d.path()).to_string();
        assert!(e.contains("Pooling"), "{e}");
        // Pooling first: it reads no text.
        write_modules(
            d.path(),
            &[("1_Pooling", "sentence_transformers.models.Pooling")],
        );
        let e = load_err(d.path()).to_string();
        assert!(e.contains("first module"), "{e}");
        // A text module in second place.
        write_modules(
            d.path(),
            &[
                ("", "sentence_transformers.models.WordEmbeddings"),
                ("", "sentence_transformers.models.WordEmbeddings"),
            ],
        );
        assert!(load_err(d.path()).to_string().contains("only be the first"));
        // Normalize before anything made a sentence embedding.
        let d = golden_copy("wordemb_weights_mean_norm");
        write_modules(
            d.path(),
            &[
                ("", "sentence_transformers.models.WordEmbeddings"),
                ("3_Normalize", "sentence_transformers.models.Normalize"),
            ],
        );
        assert!(load_err(d.path())
            .to_string()
            .contains("sentence embedding"));
    }

    #[test]
    fn module_kinds_parse_both_spellings_and_name_the_supported_list() {
        for (k, name) in ModuleKind::ALL.into_iter().zip(SUPPORTED_MODULES) {
            assert_eq!(k.name(), *name);
            for class in [
                format!("sentence_transformers.models.{name}"),
                format!("sentence_transformers.sentence_transformer.modules.x.{name}"),
            ] {
                assert_eq!(ModuleKind::parse(&class).unwrap(), k, "{class}");
            }
        }
        for bad in [
            "Pooling",
            "other.Pooling",
            "sentence_transformers.models.Transformer",
        ] {
            let e = ModuleKind::parse(bad).unwrap_err();
            assert!(
                matches!(&e, Error::UnsupportedModule { module, .. } if module == bad),
                "{e}"
            );
        }
    }

    #[test]
    fn pooling_width_must_match_the_token_width() {
        // The issue's case: a 64-wide table, a Pooling config that says 50 (both spellings).
        for (case, file, from) in [
            (
                "wordemb_mean",
                "1_Pooling/config.json",
                "\"embedding_dimension\": 64",
            ),
            (
                "legacy_wordemb_weights_mean_norm",
                "2_Pooling/config.json",
                "\"word_embedding_dimension\": 64",
            ),
        ] {
            let d = golden_copy(case);
            let path = d.path().join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(from), "{case}: {text}");
            std::fs::write(&path, text.replace(from, &from.replace("64", "50"))).unwrap();
            let e = load_err(d.path());
            let msg = e.to_string();
            assert!(
                matches!(e, Error::Config { .. })
                    && msg.contains("config.json")
                    && msg.contains("50")
                    && msg.contains("width 64"),
                "{case}: {msg}"
            );
        }
    }

    #[test]
    fn module_paths_leaving_the_folder_are_refused() {
        let outside = golden_copy("wordemb_mean");
        let d = golden_copy("wordemb_mean");
        let absolute = outside.path().join("1_Pooling");
        for path in [
            absolute.to_str().unwrap(),
            "../1_Pooling",
            "1_Pooling/../../x",
        ] {
            write_modules(
                d.path(),
                &[
                    ("", "sentence_transformers.models.WordEmbeddings"),
                    (path, "sentence_transformers.models.Pooling"),
                ],
            );
            let e = load_err(d.path());
            let msg = e.to_string();
            assert!(
                matches!(e, Error::Config { .. }) && msg.contains(path) && msg.contains("leaves"),
                "{msg}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn files_linking_outside_the_folder_are_refused() {
        let outside = golden_copy("wordemb_mean");
        let d = golden_copy("wordemb_mean");
        let config = d.path().join("1_Pooling/config.json");
        std::fs::remove_file(&config).unwrap();
        std::os::unix::fs::symlink(outside.path().join("1_Pooling/config.json"), &config).unwrap();
        let msg = load_err(d.path()).to_string();
        assert!(
            msg.contains("1_Pooling/config.json") && msg.contains("outside the model folder"),
            "{msg}"
        );
        // A link that stays inside is fine.
        std::fs::remove_file(&config).unwrap();
        std::fs::copy(
            outside.path().join("1_Pooling/config.json"),
            d.path().join("pool.json"),
        )
        .unwrap();
        std::os::unix::fs::symlink(d.path().join("pool.json"), &config).unwrap();
        assert_eq!(Pipeline::load(d.path()).unwrap().dim(), 64);
    }

    #[test]
    fn default_prompt_is_prepended() {
        let d = golden_copy("wordemb_mean");
        let cfg = r#"{"prompts": {"query": "list list "}, "default_prompt_name": "query"}"#;
        std::fs::write(d.path().join("config_sentence_transformers.json"), cfg).unwrap();
        let p = Pipeline::load(d.path()).unwrap();
        assert_eq!(p.prompt(), Some("list list "));
        std::fs::remove_file(d.path().join("config_sentence_transformers.json")).unwrap();
        let q = Pipeline::load(d.path()).unwrap();
        let a = p.encode(&["the value"]).unwrap();
        let b = q.encode(&["list list the value"]).unwrap();
        assert_eq!(a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    }

    #[test]
    fn output_buffer_size_is_checked() {
        let d = golden_copy("bow_tfidf");
        let p = Pipeline::load(d.path()).unwrap();
        let mut small = vec![0f32; 3];
        expect_err(
            p.encode_into(&["a"], &mut small),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["output buffer holds 3 values", "1 text ×", "need 1018"],
        );
    }
}
