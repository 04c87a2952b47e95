//! What flows between the modules of a pipeline: the reference's `features` dictionary,
//! as a struct with one optional field per feature name.

use stk_core::{Result, Tensor};

/// Features of one batch of texts. A module reads what it needs and fills in what it makes.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Token ids per text, as the first module's tokenizer produced them (no padding).
    pub input_ids: Vec<Vec<u32>>,
    /// `[B, T, D]` f32 token embeddings.
    pub token_embeddings: Option<Tensor>,
    /// `[B, T]` i64 0/1 mask. `T` stays the tokenizer's length even when a module (a strided
    /// CNN) changes the length of `token_embeddings`; Pooling then ignores it (SPEC mask rule).
    pub attention_mask: Option<Tensor>,
    /// Real (unpadded) length of each text, `B` entries.
    pub sentence_lengths: Vec<usize>,
    /// `B` values set by WordWeights: the sum of the weights of each text's real tokens.
    pub token_weights_sum: Option<Vec<f32>>,
    /// `[B, D]` embeddings that `cls` pooling prefers over the first token when present.
    pub cls_token_embeddings: Option<Tensor>,
    /// `[B, D]` f32 sentence embeddings: what a pipeline returns.
    pub sentence_embedding: Option<Tensor>,
}

/// One step of a pipeline (a module of a saved sentence-transformers model).
pub trait Module: Send + Sync {
    /// The reference's class name (`Pooling`, `CNN`, ...), for messages.
    fn kind(&self) -> &'static str;
    /// Transform the features of one batch.
    fn forward(&self, features: Features) -> Result<Features>;
    /// Width of what this module outputs, when it is fixed (`None`: same as its input).
    fn output_dim(&self) -> Option<usize> {
        None
    }
}

/// The first module of a pipeline: it owns the tokenizer.
pub trait TextModule: Module {
    /// Tokenize a batch of texts into `input_ids` (+ mask and lengths where the module pads).
    fn tokenize(&self, texts: &[&str]) -> Result<Features>;
}
