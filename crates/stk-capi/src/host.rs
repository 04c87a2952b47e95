//! What the exported functions compute, on Rust slices: the sizes a `stk_pool_args` describes,
//! and the host operations, which hand the buffers to the library's own checks
//! (`stk::ops::PoolInputs::from_tensors`, the batch layouts) and operations.

use stk_core::{DType, Error, PoolingSpec, Result, Tensor};
use stk_facade::ops::{self, PoolInputs, PoolTensors};
use stk_facade::{Device, ElementType, Elements, EncodeOptions, Model, Ranges};

use crate::types::{self, stk_pool_args};

/// A buffer described by a `stk_pool_args`: its element type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub dtype: DType,
    pub dims: Vec<usize>,
}

impl Described {
    fn new(dtype: DType, dims: &[usize]) -> Self {
        Described {
            dtype,
            dims: dims.to_vec(),
        }
    }

    /// Elements of the buffer (an error when the product overflows).
    pub fn numel(&self, what: &str) -> Result<usize> {
        self.dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Error::too_large(what, &self.dims))
    }

    /// Bytes of the buffer.
    pub fn bytes(&self, what: &str) -> Result<usize> {
        self.numel(what)?
            .checked_mul(self.dtype.size_in_bytes())
            .ok_or_else(|| Error::too_large(what, &self.dims))
    }

    fn tensor(&self, bytes: &[u8]) -> Result<Tensor> {
        Tensor::from_bytes(self.dims.clone(), self.dtype, bytes)
    }
}

/// The buffers a `stk_pool_args` describes (read before any of them is touched).
#[derive(Debug)]
pub struct PoolShapes {
    pub tokens: Described,
    pub mask: Option<Described>,
    pub cu_seq_lens: Option<Described>,
    pub spec: PoolingSpec,
}

/// Read the sizes, element types and modes of `args` (the pointers are not read).
pub fn pool_shapes(args: &stk_pool_args, modes: &[i32]) -> Result<PoolShapes> {
    let dtype = types::dtype(args.dtype, "token_embeddings")?;
    let rank = args.tokens_rank;
    if !matches!(rank, 2 | 3) {
        return Err(Error::invalid(format!(
            "tokens_rank {rank}: expected 3 (padded [batch, seq_len, dim]) or 2 (varlen \
             [num_tokens, dim])"
        )));
    }
    let tokens = Described::new(dtype, &args.tokens_dims[..rank]);
    let mask = (!args.mask.is_null())
        .then(|| types::dtype(args.mask_dtype, "attention_mask"))
        .transpose()?
        .map(|d| Described::new(d, &args.mask_dims));
    let cu_seq_lens = (!args.cu_seq_lens.is_null())
        .then(|| types::dtype(args.cu_seq_lens_dtype, "cu_seq_lens"))
        .transpose()?
        .map(|d| Described::new(d, &[args.cu_seq_lens_len]));
    let modes = modes
        .iter()
        .map(|&m| types::pooling_mode(m))
        .collect::<Result<Vec<_>>>()?;
    let spec =
        PoolingSpec::new(modes)?.with_prompt_length(types::prompt_length(args.prompt_length)?);
    Ok(PoolShapes {
        tokens,
        mask,
        cu_seq_lens,
        spec,
    })
}

/// The host buffers of a pooling, as slices of the sizes [`pool_shapes`] gave.
pub struct PoolBuffers<'a> {
    pub tokens: &'a [u8],
    pub mask: Option<&'a [u8]>,
    pub cu_seq_lens: Option<&'a [u8]>,
    pub token_weights_sum: Option<&'a [f32]>,
}

/// `stk_pool`: pool on the CPU into `out` (`[batch, modes × dim]` f32).
pub fn pool(shapes: &PoolShapes, buffers: &PoolBuffers<'_>, out: &mut [f32]) -> Result<()> {
    let tensor = |d: &Option<Described>, b: Option<&[u8]>| match (d, b) {
        (Some(d), Some(b)) => d.tensor(b).map(Some),
        _ => Ok(None),
    };
    let inputs = PoolInputs::from_tensors(
        "stk_pool_args",
        PoolTensors {
            token_embeddings: shapes.tokens.tensor(buffers.tokens)?,
            attention_mask: tensor(&shapes.mask, buffers.mask)?,
            cu_seq_lens: tensor(&shapes.cu_seq_lens, buffers.cu_seq_lens)?,
            spans: None,
            token_weights_sum: buffers
                .token_weights_sum
                .map(|w| Tensor::from_slice([w.len()], w))
                .transpose()?,
            cls_token_embeddings: None,
        },
    )?;
    let dim = shapes.tokens.dims[shapes.tokens.dims.len() - 1];
    check_out_len(
        inputs.num_sequences(),
        shapes.spec.modes.len() * dim,
        out.len(),
    )?;
    let pooled = ops::pool_tensors(&inputs, &shapes.spec, Device::Cpu)?;
    out.copy_from_slice(&pooled.to_f32_vec()?);
    Ok(())
}

/// `out_len` must be `rows × width` (the output's elements).
pub fn check_out_len(rows: usize, width: usize, out_len: usize) -> Result<()> {
    match rows.checked_mul(width) {
        Some(n) if n == out_len => Ok(()),
        _ => Err(Error::shape(
            "out",
            format!("{rows} × {width} elements (out_len)"),
            &[out_len],
        )),
    }
}

/// `stk_normalize`: L2-normalize `rows × dim` values of `dtype` into `out` (f32), as
/// sentence-transformers' `Normalize` module does.
pub fn normalize(input: &Described, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let [rows, dim] = input.dims[..] else {
        return Err(Error::shape("embeddings", "[rows, dim]", &input.dims));
    };
    check_out_len(rows, dim, out.len())?;
    let normalized = ops::normalize_tensor(&input.tensor(bytes)?, Device::Cpu)?;
    out.copy_from_slice(&normalized.to_f32_vec()?);
    Ok(())
}

/// `stk_model_encode`: encode `texts` into `out` (`texts.len() × dim` values).
pub fn encode(model: &Model, texts: &[&str], out: &mut [f32]) -> Result<()> {
    model.encode_into(texts, out)
}

/// A C `max_length` (`SIZE_MAX`: no limit) as the library's.
fn max_length(max_length: usize) -> Option<usize> {
    (max_length != usize::MAX).then_some(max_length)
}

/// `stk_model_sequence_offsets`: `offsets[i]..offsets[i + 1]` are the rows of text `i`
/// (`offsets` holds `texts.len() + 1` entries).
pub fn sequence_offsets(
    model: &Model,
    texts: &[&str],
    max_length_or_max: usize,
    offsets: &mut [usize],
) -> Result<()> {
    offsets.copy_from_slice(&model.sequence_offsets(texts, max_length(max_length_or_max))?);
    Ok(())
}

/// `stk_model_encode_as_sequence`: every text's token rows, one after the other, written
/// straight into `out` (exactly `rows × dim` values).
pub fn encode_as_sequence(
    model: &Model,
    texts: &[&str],
    max_length_or_max: usize,
    out: &mut [f32],
) -> Result<()> {
    model.encode_as_sequence_into(texts, max_length(max_length_or_max), out)?;
    Ok(())
}

/// The library's options for a `stk_encode_options`, calibration aside ([`calibrate`]).
pub fn encode_options(options: &types::stk_encode_options) -> Result<EncodeOptions> {
    Ok(EncodeOptions {
        truncate_dim: (options.truncate_dim != 0).then_some(options.truncate_dim),
        normalize_embeddings: options.normalize_embeddings != 0,
        precision: types::precision(options.precision)?,
        calibration: None,
    })
}

/// Set `options`' int8/uint8 ranges from calibration `rows` of the truncated `width`; an
/// error for a precision that takes no ranges.
pub fn calibrate(options: &mut EncodeOptions, rows: &[f32], width: usize) -> Result<()> {
    if !options.precision.needs_ranges() {
        return Err(Error::invalid(format!(
            "calibration rows were given for precision {}, which takes no ranges (only int8 \
             and uint8 do)",
            options.precision.as_str()
        )));
    }
    options.calibration = Some(Ranges::from_rows(rows, width)?);
    Ok(())
}

/// The `STK_DTYPE_*` value and the number of elements per row of the output.
pub fn output_shape(model: &Model, options: &EncodeOptions) -> Result<(i32, usize)> {
    let (element, cols) = options.output_shape(model.dim())?;
    let dtype = match element {
        ElementType::F32 => types::STK_DTYPE_F32,
        ElementType::F16 => types::STK_DTYPE_F16,
        ElementType::I8 => types::STK_DTYPE_I8,
        ElementType::U8 => types::STK_DTYPE_U8,
    };
    Ok((dtype, cols))
}

/// Encode with options into `out`, whose length must be what the output takes in bytes.
pub fn encode_with_options(
    model: &Model,
    texts: &[&str],
    options: &EncodeOptions,
    out: &mut [u8],
) -> Result<()> {
    let (element, cols) = options.output_shape(model.dim())?;
    let want = texts
        .len()
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(element.size_in_bytes()))
        .ok_or_else(|| Error::invalid("n * cols overflows size_t"))?;
    if out.len() != want {
        return Err(Error::shape(
            "out",
            format!(
                "{want} bytes ({} × {cols} {element:?} elements)",
                stk_core::counted(texts.len(), "text")
            ),
            &[out.len()],
        ));
    }
    let encoded = model.encode_with(texts, options)?;
    let bytes: &[u8] = match encoded.elements() {
        Elements::F32(v) => bytemuck::cast_slice(v),
        Elements::F16(v) => bytemuck::cast_slice(v),
        Elements::I8(v) => bytemuck::cast_slice(v),
        Elements::U8(v) => v,
    };
    out.copy_from_slice(bytes);
    Ok(())
}
