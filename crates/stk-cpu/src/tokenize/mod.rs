//! Text to token ids, exactly as the `tokenizers` crate computes them for a `tokenizer.json`.
//!
//! The crate is always loaded: it is the reference and the fallback for every pipeline that
//! has no fast path here. Fast paths (added pipeline by pipeline) must give the same ids as
//! the crate's `encode(text, false)` with truncation and padding disabled.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use stk_core::{Error, Result};

/// A loaded `tokenizer.json`.
pub struct Tokenizer {
    /// The crate's tokenizer, truncation and padding disabled: reference and fallback.
    reference: tokenizers::Tokenizer,
    unk_id: Option<u32>,
    path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("backend", &self.backend())
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// Load a `tokenizer.json`. Anything that is not a tokenizer the crate can load is a
    /// clear error naming the file.
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Load a tokenizer from the bytes of a `tokenizer.json`; `path` is only used in messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Tokenizer> {
        let json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::config(path, format!("not a valid JSON tokenizer file: {e}")))?;
        if !json.is_object() || json.get("model").is_none() {
            return Err(Error::config(
                path,
                "not a tokenizer.json: expected a JSON object with a `model` key",
            ));
        }
        let mut reference = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| {
            Error::Tokenizer(format!("{}: cannot load tokenizer: {e}", path.display()))
        })?;
        reference
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        reference.with_padding(None);
        let unk_id = unk_id_of(&json, &reference);
        Ok(Tokenizer {
            reference,
            unk_id,
            path: path.to_path_buf(),
        })
    }

    /// Which implementation encodes: `"tokenizers"` (the crate) or the name of a fast path.
    pub fn backend(&self) -> &'static str {
        "tokenizers"
    }

    /// The file this tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ids of `text` without special tokens, truncation or padding: the crate's
    /// `encode(text, false)` ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        self.encode_into(text, usize::MAX, &mut ids)?;
        Ok(ids)
    }

    /// The first `max_tokens` ids of [`Tokenizer::encode`] (truncation on the right, no special
    /// tokens), as the crate gives with truncation to `max_tokens`.
    pub fn encode_truncated(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        self.encode_into(text, max_tokens, &mut ids)?;
        Ok(ids)
    }

    /// Append the first `max_tokens` ids of `text` to `out` (reusing its allocation).
    pub fn encode_into(&self, text: &str, max_tokens: usize, out: &mut Vec<u32>) -> Result<()> {
        let encoding = self
            .reference
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", self.path.display())))?;
        let ids = encoding.get_ids();
        out.extend_from_slice(&ids[..ids.len().min(max_tokens)]);
        Ok(())
    }

    /// [`Tokenizer::encode`] for many texts, in parallel across texts.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts.par_iter().map(|t| self.encode(t)).collect()
    }

    /// [`Tokenizer::encode_truncated`] for many texts, in parallel across texts.
    pub fn encode_batch_truncated(
        &self,
        texts: &[&str],
        max_tokens: usize,
    ) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map(|t| self.encode_truncated(t, max_tokens))
            .collect()
    }

    /// The model's unknown-token id (WordPiece/WordLevel/BPE `unk_token`, Unigram `unk_id`).
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.reference.get_vocab_size(true)
    }

    /// Token string -> id, added tokens included.
    pub fn vocab(&self) -> HashMap<String, u32> {
        self.reference.get_vocab(true)
    }

    /// The token string of `id`, if any.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.reference.id_to_token(id)
    }

    /// The id of a token string, if it is in the vocabulary (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.reference.token_to_id(token)
    }

    /// The `tokenizers` crate's tokenizer (truncation and padding disabled).
    pub fn reference(&self) -> &tokenizers::Tokenizer {
        &self.reference
    }
}

/// The unknown token of the model, read from the JSON (the crate does not expose it).
fn unk_id_of(json: &serde_json::Value, reference: &tokenizers::Tokenizer) -> Option<u32> {
    let model = json.get("model")?;
    if let Some(id) = model.get("unk_id").and_then(|v| v.as_u64()) {
        return u32::try_from(id).ok();
    }
    let token = model.get("unk_token").and_then(|v| v.as_str())?;
    reference.token_to_id(token)
}
