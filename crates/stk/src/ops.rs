//! File-to-file module operations (what `stk pool`, `stk normalize` and `stk layer-pool` run):
//! read a safetensors file, validate, compute on the chosen device, write the result
//! atomically. Each op has one `match device` where the CUDA path plugs in.

use std::path::Path;
use stk_core::{
    write_safetensors, DType, Device, Error, PaddedBatch, PoolingSpec, Result, SafetensorsFile,
    SpanBatch, Tensor, VarlenBatch,
};
use stk_cpu::pooling::{self, PoolExtras};

/// A pooling input: token embeddings in one of the three layouts.
pub enum PoolInput {
    /// `[B, T, D]` tokens with a 0/1 mask.
    Padded(PaddedBatch),
    /// `[N, D]` tokens of B sequences delimited by `cu_seq_lens`.
    Varlen(VarlenBatch),
    /// Late chunking: `[N, D]` tokens and `[S, 2]` spans, one output row per span.
    Spans(SpanBatch),
}

/// The tensors of a pooling, by feature name, before they are checked against each other
/// ([`PoolInputs::from_tensors`]). At most one of `attention_mask`, `cu_seq_lens` and `spans`.
pub struct PoolTensors {
    /// `[B, T, D]` (padded) or `[N, D]` / `[1, N, D]` (varlen, spans) float tokens.
    pub token_embeddings: Tensor,
    /// Padded: `[B, T]` 0/1 values (absent: every token counts).
    pub attention_mask: Option<Tensor>,
    /// Varlen: `[B + 1]` i32 or i64 offsets (`cu_seq_lens_q` in a file).
    pub cu_seq_lens: Option<Tensor>,
    /// Late chunking: `[S, 2]` integer `[start, end)` rows.
    pub spans: Option<Tensor>,
    /// `[B]` divisors replacing the token counts of `mean` (WordWeights).
    pub token_weights_sum: Option<Tensor>,
    /// `[B, D]` rows that `cls` pools instead of the first token.
    pub cls_token_embeddings: Option<Tensor>,
}

/// Everything [`pool_tensors`] reads from a file, validated.
pub struct PoolInputs {
    /// The tokens in their layout.
    pub batch: PoolInput,
    /// `B` divisors replacing the token counts of `mean` (WordWeights), checked against `B`.
    pub token_weights_sum: Option<Vec<f32>>,
    /// `[B, D]` rows that `cls` pools instead of the first token.
    pub cls_token_embeddings: Option<Tensor>,
}

impl PoolInputs {
    /// Read `token_embeddings` and either `attention_mask` (padded, `[B, T, D]`),
    /// `cu_seq_lens_q` (varlen, `[1, N, D]`) or `spans` (int `[S, 2]` start and end rows of
    /// `[N, D]` or `[1, N, D]` tokens), plus `token_weights_sum` and `cls_token_embeddings`
    /// when present.
    pub fn read(file: &SafetensorsFile) -> Result<Self> {
        PoolInputs::from_tensors(
            &file.path().display().to_string(),
            PoolTensors {
                token_embeddings: file.get("token_embeddings")?,
                attention_mask: file.get_opt("attention_mask")?,
                cu_seq_lens: file.get_opt("cu_seq_lens_q")?,
                spans: file.get_opt("spans")?,
                token_weights_sum: file.get_opt("token_weights_sum")?,
                cls_token_embeddings: file.get_opt("cls_token_embeddings")?,
            },
        )
    }

    /// Check and assemble pooling inputs however they were obtained (a file, a C caller's
    /// buffers); `source` names them in messages.
    pub fn from_tensors(source: &str, t: PoolTensors) -> Result<Self> {
        let given: Vec<&str> = [
            ("attention_mask", t.attention_mask.is_some()),
            ("cu_seq_lens_q", t.cu_seq_lens.is_some()),
            ("spans", t.spans.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        if given.len() > 1 {
            return Err(Error::invalid(format!(
                "{source} has {}: each names a layout (padded, varlen, spans); keep one",
                given.join(" and ")
            )));
        }
        let tokens = t.token_embeddings;
        let batch = match (t.attention_mask, t.cu_seq_lens, t.spans) {
            (_, _, Some(spans)) => PoolInput::Spans(SpanBatch::from_tensor(tokens, &spans)?),
            (_, Some(cu), _) => {
                cu.expect_rank("cu_seq_lens_q [B + 1]", 1)?;
                let cu = cu
                    .to_i64_vec()
                    .map_err(|_| Error::dtype("cu_seq_lens_q", "i32 or i64", cu.dtype()))?;
                PoolInput::Varlen(VarlenBatch::new(tokens, &cu)?)
            }
            (mask, None, None) => PoolInput::Padded(PaddedBatch::new(tokens, mask.as_ref())?),
        };
        let token_weights_sum = match t.token_weights_sum {
            None => None,
            Some(t) => {
                t.expect_dtype("token_weights_sum", &[DType::F32, DType::F16, DType::BF16])?;
                t.expect_rank("token_weights_sum [B]", 1)?;
                Some(t.to_f32_vec()?)
            }
        };
        Ok(PoolInputs {
            batch,
            token_weights_sum,
            cls_token_embeddings: t.cls_token_embeddings,
        })
    }

    /// Rows of the output: sequences (padded, varlen) or spans.
    pub fn num_sequences(&self) -> usize {
        match &self.batch {
            PoolInput::Padded(b) => b.batch(),
            PoolInput::Varlen(v) => v.num_seqs(),
            PoolInput::Spans(s) => s.num_spans(),
        }
    }

    /// The longest sequence: `T` for a padded batch, the longest `cu_seq_lens` span for varlen.
    pub fn longest_sequence(&self) -> usize {
        match &self.batch {
            PoolInput::Padded(b) => b.seq_len(),
            PoolInput::Varlen(v) => (0..v.num_seqs()).map(|i| v.seq(i).len()).max().unwrap_or(0),
            PoolInput::Spans(s) => s.spans().iter().map(|r| r.len()).max().unwrap_or(0),
        }
    }
}

/// Pool already-read inputs on `device`.
pub fn pool_tensors(inputs: &PoolInputs, spec: &PoolingSpec, device: Device) -> Result<Tensor> {
    let extras = PoolExtras {
        token_weights_sum: inputs.token_weights_sum.as_deref(),
        cls_token_embeddings: inputs.cls_token_embeddings.as_ref(),
    };
    match device {
        Device::Cpu => match &inputs.batch {
            PoolInput::Padded(b) => pooling::pool_padded(b, spec, &extras),
            PoolInput::Varlen(v) => pooling::pool_varlen(v, spec, &extras),
            PoolInput::Spans(s) => pooling::pool_spans(s, spec, &extras),
        },
        Device::Cuda(n) => {
            let dev = stk_cuda::shared_device(n)?;
            match &inputs.batch {
                PoolInput::Padded(b) => dev.pool(b, spec, &extras, false),
                PoolInput::Varlen(v) => dev.pool(v, spec, &extras, false),
                PoolInput::Spans(s) => dev.pool(s, spec, &extras, false),
            }
        }
    }
}

/// `stk pool`: pool `input`'s token embeddings into `output`'s `sentence_embedding`.
///
/// A prompt length longer than every sequence is refused here (it would exclude every token,
/// which on the command line is a mistake rather than a request); the library accepts it.
pub fn pool_file(input: &Path, output: &Path, spec: &PoolingSpec, device: Device) -> Result<()> {
    let file = SafetensorsFile::open(input)?;
    let inputs = PoolInputs::read(&file)?;
    let longest = inputs.longest_sequence();
    if let Some(p) = spec.prompt_length {
        if p > longest && inputs.num_sequences() > 0 {
            return Err(Error::invalid(format!(
                "prompt length {p} is longer than the longest sequence ({longest} tokens) of {}",
                input.display()
            )));
        }
    }
    let pooled = pool_tensors(&inputs, spec, device)?;
    write_safetensors(output, &[("sentence_embedding", &pooled)])
}

/// Normalize `sentence_embedding` on `device`.
pub fn normalize_tensor(embeddings: &Tensor, device: Device) -> Result<Tensor> {
    match device {
        Device::Cpu => stk_cpu::normalize(embeddings),
        Device::Cuda(n) => stk_cuda::shared_device(n)?
            .normalize(embeddings, stk_cuda::NormRule::SENTENCE_TRANSFORMERS),
    }
}

/// `stk normalize`: L2-normalize `input`'s `sentence_embedding` into `output`.
pub fn normalize_file(input: &Path, output: &Path, device: Device) -> Result<()> {
    let file = SafetensorsFile::open(input)?;
    let embeddings = file.get("sentence_embedding")?;
    let normalized = normalize_tensor(&embeddings, device)?;
    write_safetensors(output, &[("sentence_embedding", &normalized)])
}

/// WeightedLayerPooling of `all_layer_embeddings [L+1, B, T, D]` on `device`.
pub fn layer_pool_tensors(
    all_layers: &Tensor,
    layer_start: usize,
    layer_weights: &Tensor,
    device: Device,
) -> Result<Tensor> {
    match device {
        Device::Cpu => stk_cpu::weighted_layer_pooling(all_layers, layer_start, layer_weights),
        Device::Cuda(n) => {
            stk_cuda::shared_device(n)?.weighted_layer_pool(all_layers, layer_start, layer_weights)
        }
    }
}

/// `stk layer-pool`: `input`'s `all_layer_embeddings` and `layer_weights` to `output`'s
/// `token_embeddings`.
pub fn layer_pool_file(
    input: &Path,
    output: &Path,
    layer_start: usize,
    device: Device,
) -> Result<()> {
    let file = SafetensorsFile::open(input)?;
    let all_layers = file.get("all_layer_embeddings")?;
    let weights = file.get("layer_weights")?;
    let pooled = layer_pool_tensors(&all_layers, layer_start, &weights, device)?;
    write_safetensors(output, &[("token_embeddings", &pooled)])
}
