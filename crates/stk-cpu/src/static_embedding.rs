//! `StaticEmbedding`: a tokenizer plus an embedding table; a text's vector is the mean of the
//! rows of its token ids (sentence-transformers semantics: no special tokens, unknown tokens
//! kept, no truncation beyond what `tokenizer.json` itself configures, an empty text gives zeros).
//!
//! The folder holds `tokenizer.json` and `model.safetensors` with the table under
//! `embedding.weight` (sentence-transformers) or `embeddings` (model2vec), optionally with a
//! model2vec vocabulary-quantization `mapping` and `weights` (see [`EmbeddingBag`]).
//! model2vec's own encoding rules (character cut, unknown-token removal, token limit, its
//! normalization) are built on top of this type in the `stk` facade.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;
use stk_core::{Error, Result, SafetensorsFile, Tensor, TokenBags};

use crate::embedding_bag::EmbeddingBag;
use crate::features::{Features, Module, TextModule};
use crate::tokenize::Tokenizer;

/// Table names, in the order they are looked up.
const TABLE_NAMES: [&str; 2] = ["embedding.weight", "embeddings"];

/// Texts handed to one rayon task: enough to amortize the task, few enough to balance threads.
const MAX_TEXTS_PER_TASK: usize = 256;

/// The truncation a `tokenizer.json` asks for. The `tokenizers` library applies it on every
/// encode, also without special tokens, so the reference's ids are cut this way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileTruncation {
    /// The number of ids kept.
    pub max_length: usize,
    /// True to keep the last `max_length` ids (`direction: Left`), false to keep the first.
    pub keep_last: bool,
    /// `only_second` cannot cut a single text: the reference fails on texts that are too long.
    pub only_second: bool,
}

impl FileTruncation {
    /// Read the `truncation` entry of a `tokenizer.json` (`None` when it is null or absent).
    pub fn from_tokenizer_json(path: &Path) -> Result<Option<FileTruncation>> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_tokenizer_bytes(&bytes, path)
    }

    /// [`FileTruncation::from_tokenizer_json`] on the file's bytes; `path` names it in messages.
    pub fn from_tokenizer_bytes(bytes: &[u8], path: &Path) -> Result<Option<FileTruncation>> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            truncation: Option<Truncation>,
        }
        #[derive(Deserialize)]
        struct Truncation {
            max_length: usize,
            #[serde(default)]
            direction: Option<String>,
            #[serde(default)]
            strategy: Option<String>,
        }
        let file: File = serde_json::from_slice(bytes)
            .map_err(|e| Error::config(path, format!("cannot read the `truncation` entry: {e}")))?;
        let Some(t) = file.truncation else {
            return Ok(None);
        };
        let keep_last = match t.direction.as_deref() {
            None | Some("Right") => false,
            Some("Left") => true,
            Some(other) => {
                return Err(Error::config(
                    path,
                    format!("unknown truncation direction `{other}`"),
                ))
            }
        };
        Ok(Some(FileTruncation {
            max_length: t.max_length,
            keep_last,
            only_second: t.strategy.as_deref() == Some("OnlySecond"),
        }))
    }

    /// Cut `ids` in place as the `tokenizers` library would.
    pub fn apply(&self, ids: &mut Vec<u32>) -> Result<()> {
        if ids.len() <= self.max_length {
            return Ok(());
        }
        if self.only_second {
            return Err(Error::Tokenizer(
                "tokenizer.json asks for `OnlySecond` truncation, which cannot cut a single text \
                 longer than its max_length"
                    .into(),
            ));
        }
        if self.keep_last {
            ids.drain(..ids.len() - self.max_length);
        } else {
            ids.truncate(self.max_length);
        }
        Ok(())
    }
}

/// Per-task buffers of [`StaticEmbedding::embed_rows_with`], reused across its tasks.
#[derive(Default)]
struct BagScratch {
    /// One text's ids.
    text_ids: Vec<u32>,
    /// The ids of all texts of a task, one after the other.
    ids: Vec<u32>,
    /// Where each text's ids end in `ids`.
    ends: Vec<usize>,
}

/// A tokenizer and an embedding bag (mean mode).
pub struct StaticEmbedding {
    tokenizer: Tokenizer,
    bag: EmbeddingBag,
    truncation: Option<FileTruncation>,
    dir: PathBuf,
}

impl std::fmt::Debug for StaticEmbedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticEmbedding")
            .field("dir", &self.dir)
            .field("table", self.bag.table())
            .field("vocab", &self.bag.vocab())
            .finish()
    }
}

impl StaticEmbedding {
    /// Load `dir/tokenizer.json` and `dir/model.safetensors` and check them against each other.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<StaticEmbedding> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found"),
            ));
        }
        let weights_path = dir.join("model.safetensors");
        if !weights_path.is_file() {
            let reason = if dir.join("pytorch_model.bin").is_file() {
                "has only pytorch_model.bin: pickled PyTorch weights are not supported \
                 (convert the model to model.safetensors)"
            } else {
                "has no model.safetensors"
            };
            return Err(Error::config(dir, reason));
        }
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(Error::config(dir, "has no tokenizer.json"));
        }
        let file = SafetensorsFile::open(&weights_path)?;
        let tokenizer_json =
            std::fs::read(&tokenizer_path).map_err(|e| Error::io(&tokenizer_path, e))?;
        Self::from_files(&file, &tokenizer_json, dir)
    }

    /// Build from the two files' contents, however they were obtained (a folder, or bytes
    /// compiled into the program): every check of the table and the tokenizer against each other
    /// happens here. `dir` names the folder in messages; `file.path()` and
    /// `dir/tokenizer.json` name the files.
    pub fn from_files(
        file: &SafetensorsFile,
        tokenizer_json: &[u8],
        dir: &Path,
    ) -> Result<StaticEmbedding> {
        let weights_path = file.path().to_path_buf();
        let tokenizer_path = dir.join("tokenizer.json");
        let name = TABLE_NAMES
            .iter()
            .find(|n| file.contains(n))
            .ok_or_else(|| Error::MissingTensor {
                name: TABLE_NAMES.join("` or `"),
                path: weights_path.clone(),
                available: {
                    let v: Vec<_> = file.names().collect();
                    if v.is_empty() {
                        "no tensors".into()
                    } else {
                        v.join(", ")
                    }
                },
            })?;
        let table = file.get(name)?;
        let mapping = file.get_opt("mapping")?;
        let weights = file.get_opt("weights")?;
        // The huge-page copy of a large table (page faults, zeroing, copying: 15-50 ms for
        // potion-base-8M) on another thread of rayon's pool while the tokenizer is built.
        let (table, tokenizer) = rayon::join(
            || place_table(table),
            || Tokenizer::from_bytes(tokenizer_json, &tokenizer_path),
        );
        // The table's shape is the truth: a model2vec config.json's `hidden_dim` is not updated
        // when a model is saved with fewer dimensions, so it is not compared.
        let bag = EmbeddingBag::new(table, mapping.as_ref(), weights.as_ref())
            .map_err(|e| Error::config(&weights_path, e.to_string()))?;
        let tokenizer = tokenizer?;
        let truncation = FileTruncation::from_tokenizer_bytes(tokenizer_json, &tokenizer_path)?;
        Self::new(tokenizer, bag, truncation, dir)
    }

    /// Assemble from parts; fails when the tokenizer can emit an id the bag has no row for.
    pub fn new(
        tokenizer: Tokenizer,
        bag: EmbeddingBag,
        truncation: Option<FileTruncation>,
        dir: &Path,
    ) -> Result<StaticEmbedding> {
        let id_space = tokenizer.id_space();
        if id_space > bag.vocab() {
            let what = if bag.mapping().is_some() {
                format!("the mapping has {} entries", bag.vocab())
            } else {
                format!("the embedding table has {} rows", bag.vocab())
            };
            return Err(Error::config(
                dir,
                format!(
                    "tokenizer.json can produce token ids up to {} but {what}",
                    id_space - 1
                ),
            ));
        }
        Ok(StaticEmbedding {
            tokenizer,
            bag,
            truncation,
            dir: dir.to_path_buf(),
        })
    }

    /// Output width.
    pub fn dim(&self) -> usize {
        self.bag.dim()
    }
    /// The table with its mapping and weights.
    pub fn bag(&self) -> &EmbeddingBag {
        &self.bag
    }
    /// The tokenizer of `tokenizer.json`.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    /// The truncation `tokenizer.json` configures, applied to every text.
    pub fn truncation(&self) -> Option<FileTruncation> {
        self.truncation
    }
    /// The folder this module was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Token ids of `text` as the reference's tokenizer gives them: no special tokens, the
    /// file's truncation applied. Replaces the content of `ids` (its allocation is reused).
    pub fn token_ids_into(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        ids.clear();
        match self.truncation {
            // Right truncation: the tokenizer can stop early.
            Some(t) if !t.keep_last && !t.only_second => {
                self.tokenizer.encode_into(text, t.max_length, ids)
            }
            Some(t) => {
                self.tokenizer.encode_into(text, usize::MAX, ids)?;
                t.apply(ids)
            }
            None => self.tokenizer.encode_into(text, usize::MAX, ids),
        }
    }

    /// Embed every text into its row of `out` (`texts.len() × dim` values), in parallel.
    /// `ids_of(text, ids)` fills `ids` with the ids to average (the caller chooses the
    /// semantics); `finish(row)` runs on each finished row. Ids are checked against the table.
    pub fn embed_rows_with<I, F>(
        &self,
        texts: &[&str],
        out: &mut [f32],
        ids_of: I,
        finish: F,
    ) -> Result<()>
    where
        I: Fn(&str, &mut Vec<u32>) -> Result<()> + Sync,
        F: Fn(&mut [f32]) + Sync,
    {
        let dim = self.dim();
        if out.len() != texts.len() * dim {
            return Err(Error::shape(
                "embedding output",
                format!("[{}, {dim}]", texts.len()),
                &[out.len()],
            ));
        }
        if texts.is_empty() {
            return Ok(());
        }
        let per_task = texts
            .len()
            .div_ceil(rayon::current_num_threads() * 4)
            .clamp(1, MAX_TEXTS_PER_TASK);
        out.par_chunks_mut(per_task * dim)
            .zip(texts.par_chunks(per_task))
            .try_for_each_init(BagScratch::default, |scratch, (rows, texts)| {
                // All ids of the task's texts first, then every mean: the gather knows the
                // next bag's rows while it sums the current one and prefetches them.
                let BagScratch {
                    text_ids,
                    ids,
                    ends,
                } = scratch;
                ids.clear();
                ends.clear();
                for text in texts {
                    ids_of(text, text_ids)?;
                    ids.extend_from_slice(text_ids);
                    ends.push(ids.len());
                }
                self.bag.mean_bags_into_then(ids, ends, rows, &finish)
            })
    }

    /// Sentence-transformers semantics: `[texts.len(), dim]` f32 means of the token rows.
    pub fn embed(&self, texts: &[&str]) -> Result<Tensor> {
        let mut out = vec![0f32; texts.len() * self.dim()];
        self.embed_into(texts, &mut out)?;
        Tensor::from_vec([texts.len(), self.dim()], out)
    }

    /// [`StaticEmbedding::embed`] into a caller's buffer of `texts.len() × dim` values.
    pub fn embed_into(&self, texts: &[&str], out: &mut [f32]) -> Result<()> {
        self.embed_rows_with(texts, out, |t, ids| self.token_ids_into(t, ids), |_| {})
    }
}

/// Tables of at least this many bytes are read from a huge-page copy (see [`place_table`]).
const HUGE_PAGE_TABLE_BYTES: usize = 4 << 20;

/// Where a static table is read from: a large table is copied once into memory backed by
/// 2 MiB pages ([`Tensor::copy_to_huge_pages`]), since encoding reads its rows at random and
/// in 4 KiB pages of a file map many of those reads also miss the TLB (one thread, f32
/// potion-base-8M: about 6% less CPU time per encode, the copy included; 30 MB copy at load).
/// When the copy cannot be made the table stays where it is.
fn place_table(table: Tensor) -> Tensor {
    if !cfg!(target_os = "linux") || table.bytes().len() < HUGE_PAGE_TABLE_BYTES {
        return table;
    }
    // Each 2 MiB page is faulted in (zeroed by the kernel: most of the copy's time, ~1.7 ms
    // per MB on the virtual machines measured) by whichever pool thread copies into it, so
    // the copy ends with the tokenizer's building instead of after it.
    let copied = table.copy_to_huge_pages_with(|to, from| {
        to.par_chunks_mut(HUGE_PAGE_BYTES)
            .zip(from.par_chunks(HUGE_PAGE_BYTES))
            .for_each(|(to, from)| to.copy_from_slice(from));
    });
    copied.unwrap_or(table)
}

/// The size of a transparent huge page on x86-64 and of most aarch64 kernels' PMD pages.
const HUGE_PAGE_BYTES: usize = 2 << 20;

impl Module for StaticEmbedding {
    fn kind(&self) -> &'static str {
        "StaticEmbedding"
    }

    /// `input_ids` (one list per text) → `sentence_embedding [B, dim]`.
    fn forward(&self, mut features: Features) -> Result<Features> {
        let bags = TokenBags::from_bags(&features.input_ids, self.bag.vocab())?;
        features.sentence_embedding = Some(self.bag.bag_mean(&bags)?);
        Ok(features)
    }

    fn output_dim(&self) -> Option<usize> {
        Some(self.dim())
    }
}

impl TextModule for StaticEmbedding {
    fn tokenize(&self, texts: &[&str]) -> Result<Features> {
        let input_ids = texts
            .par_iter()
            .map(|t| {
                let mut ids = Vec::new();
                self.token_ids_into(t, &mut ids)?;
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        let sentence_lengths = input_ids.iter().map(|ids| ids.len()).collect();
        Ok(Features {
            input_ids,
            sentence_lengths,
            ..Features::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::testing::expect_err;

    #[test]
    fn file_truncation_cuts_like_the_tokenizer() {
        let right = FileTruncation {
            max_length: 2,
            keep_last: false,
            only_second: false,
        };
        let mut ids = vec![1, 2, 3];
        right.apply(&mut ids).unwrap();
        assert_eq!(ids, [1, 2]);
        let left = FileTruncation {
            keep_last: true,
            ..right
        };
        let mut ids = vec![1, 2, 3];
        left.apply(&mut ids).unwrap();
        assert_eq!(ids, [2, 3]);
        let second = FileTruncation {
            only_second: true,
            ..right
        };
        let mut short = vec![1, 2];
        second.apply(&mut short).unwrap();
        expect_err(
            second.apply(&mut vec![1, 2, 3]),
            |e| matches!(e, Error::Tokenizer(_)),
            &["tokenizer.json", "`OnlySecond` truncation", "single text"],
        );
    }

    fn committed(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models")
            .join(name)
    }

    /// A copy of the model folder `src` whose tokenizer.json says `"truncation": null`.
    fn without_truncation(src: &Path) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        let text = std::fs::read_to_string(src.join("tokenizer.json")).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            !json["truncation"].is_null(),
            "{}: already untruncated",
            src.display()
        );
        json["truncation"] = serde_json::Value::Null;
        std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
        dir
    }

    /// The f16 potion folder's tokenizer.json asks for truncation to 512 tokens, which the
    /// reference's tokenizer applies: a longer text averages its first 512 ids only.
    #[test]
    fn tokenizer_json_truncation_applies() {
        let e = StaticEmbedding::from_dir(committed("potion-base-8M-f16")).unwrap();
        assert_eq!(
            e.truncation(),
            Some(FileTruncation {
                max_length: 512,
                keep_last: false,
                only_second: false
            })
        );
        let long: String = (0..700).map(|i| format!("w{i} ")).collect();
        let all = e.tokenizer().encode(&long).unwrap();
        assert!(all.len() > 512);
        let mut ids = Vec::new();
        e.token_ids_into(&long, &mut ids).unwrap();
        assert_eq!(ids, all[..512]);
        let got = e.embed(&[long.as_str()]).unwrap();
        let mut want = vec![0f32; e.dim()];
        e.bag().mean_into(&all[..512], &mut want).unwrap();
        assert_eq!(got.as_slice::<f32>().unwrap(), &want[..]);

        // A folder whose tokenizer.json has no truncation: nothing is cut.
        let untruncated = without_truncation(&committed("stk-unigram-8k-64d-int8"));
        let t = StaticEmbedding::from_dir(untruncated.path()).unwrap();
        assert_eq!(t.truncation(), None);
        t.token_ids_into(&long, &mut ids).unwrap();
        assert_eq!(ids, t.tokenizer().encode(&long).unwrap());
    }

    #[test]
    fn large_tables_are_read_from_a_huge_page_copy() {
        // potion f16: 29,528 x 256 x 2 bytes, above the threshold; the vq model's 2048 x 128
        // int8 table is below it and stays borrowed from the file.
        let large = StaticEmbedding::from_dir(committed("potion-base-8M-f16")).unwrap();
        let small =
            StaticEmbedding::from_dir(committed("potion-base-8M-int8-vq2048-d128")).unwrap();
        assert_eq!(
            large.bag().table().is_huge_page_copy(),
            cfg!(target_os = "linux")
        );
        assert!(!small.bag().table().is_huge_page_copy() && small.bag().table().is_mapped());
        let file = SafetensorsFile::open(committed("potion-base-8M-f16").join("model.safetensors"))
            .unwrap();
        let stored = file.get("embeddings").unwrap();
        assert_eq!(large.bag().table().bytes(), stored.bytes());
    }

    #[test]
    fn module_contract() {
        let e = StaticEmbedding::from_dir(committed("potion-base-8M-int8-vq2048-d128")).unwrap();
        assert_eq!(e.kind(), "StaticEmbedding");
        assert_eq!(e.output_dim(), Some(128));
        let texts = ["hello world", "", "static embeddings"];
        let features = e.tokenize(&texts).unwrap();
        assert_eq!(
            features.sentence_lengths,
            [features.input_ids[0].len(), 0, features.input_ids[2].len()]
        );
        let out = e.forward(features).unwrap().sentence_embedding.unwrap();
        assert_eq!(
            out.as_slice::<f32>().unwrap(),
            e.embed(&texts).unwrap().as_slice::<f32>().unwrap()
        );
        assert!(out.as_slice::<f32>().unwrap()[128..256]
            .iter()
            .all(|&v| v == 0.0));
        // Ids beyond the table are refused, not read.
        let bad = Features {
            input_ids: vec![vec![0, 29528]],
            ..Features::default()
        };
        assert!(matches!(e.forward(bad), Err(Error::IdOutOfRange { .. })));
    }

    #[test]
    fn bad_folders_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("stk-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = StaticEmbedding::from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("no model.safetensors"), "{e}");
        std::fs::write(dir.join("pytorch_model.bin"), b"x").unwrap();
        let e = StaticEmbedding::from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("pytorch_model.bin"), "{e}");
        let t = Tensor::from_slice([2, 2], &[0f32; 4]).unwrap();
        stk_core::write_safetensors(dir.join("model.safetensors"), &[("other", &t)]).unwrap();
        std::fs::copy(
            committed("potion-base-8M-f16").join("tokenizer.json"),
            dir.join("tokenizer.json"),
        )
        .unwrap();
        let e = StaticEmbedding::from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("embedding.weight") && e.contains("other"), "{e}");
        let bad_map = Tensor::from_slice([3], &[0i32, 5, 1]).unwrap();
        stk_core::write_safetensors(
            dir.join("model.safetensors"),
            &[("embeddings", &t), ("mapping", &bad_map)],
        )
        .unwrap();
        let e = StaticEmbedding::from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("mapping[1] = 5"), "{e}");
        stk_core::write_safetensors(dir.join("model.safetensors"), &[("embedding.weight", &t)])
            .unwrap();
        let e = StaticEmbedding::from_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains("token ids up to 29527") && e.contains("2 rows"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let folder = dir.display().to_string();
        expect_err(
            StaticEmbedding::from_dir(&dir),
            |e| matches!(e, Error::Io { .. }),
            &[&folder, "model folder not found"],
        );
    }
}
