//! WeightedLayerPooling (`kernels/layer_pool.cu`): `Σ_l w_l·layer_l / Σ_l w_l` over the layers
//! `layer_start..` of a model's hidden states.

use crate::device::{CudaDevice, DeviceData, DeviceTensor};
use crate::ptx;
use cudarc::driver::LaunchConfig;
use stk_core::{bf16, f16, DType, Element, Error, Result, Shape, Tensor};

/// Threads per block (`LAYER_POOL_THREADS` in `kernels/layer_pool.cu`).
pub const LAYER_POOL_THREADS: u32 = 256;
/// Enough blocks to fill any current GPU several times over; the kernel loops over the rest.
const MAX_BLOCKS: usize = 1 << 16;
const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// The checked description of one weighted layer pooling.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPoolPlan {
    /// Shape of one layer (`[B, T, D]`), which is also the output's shape.
    pub layer_shape: Vec<usize>,
    /// Index of the first kept layer in the stacked input.
    pub layer_start: usize,
    /// Weights of the kept layers, in order.
    pub weights: Vec<f32>,
    /// `Σ w`, summed in f32 in layer order.
    pub weight_sum: f32,
    /// The layers' dtype when the weights have the same one, else f32 (torch's promotion).
    pub out_dtype: DType,
}

impl LayerPoolPlan {
    /// `all_layers`: the `num_hidden_layers + 1` hidden states stacked, `[L + 1, B, T, D]`;
    /// `layer_weights`: one weight per kept layer (`L + 1 − layer_start` of them), with a
    /// finite, non-zero sum.
    pub fn new(all_layers: &Tensor, layer_start: usize, layer_weights: &Tensor) -> Result<Self> {
        let layers_dtype = all_layers.expect_dtype("all_layer_embeddings", &FLOATS)?;
        let weights_dtype = layer_weights.expect_dtype("layer_weights", &FLOATS)?;
        let dims = all_layers.expect_rank("all_layer_embeddings [L+1, B, T, D]", 4)?;
        let total = dims[0];
        if layer_start >= total {
            return Err(Error::invalid(format!(
                "layer_start {layer_start} leaves no layer of the {total} in all_layer_embeddings"
            )));
        }
        let kept = total - layer_start;
        if layer_weights.dims() != [kept] {
            return Err(Error::shape(
                "layer_weights",
                format!(
                    "[{kept}] (one weight per layer from layer_start {layer_start} to {})",
                    total - 1
                ),
                layer_weights.dims(),
            ));
        }
        if kept > i32::MAX as usize {
            return Err(Error::shape(
                "all_layer_embeddings",
                "fewer than 2^31 layers",
                dims,
            ));
        }
        let weights = layer_weights.to_f32_vec()?;
        let weight_sum: f32 = weights.iter().sum();
        if weight_sum == 0.0 || !weight_sum.is_finite() {
            return Err(Error::invalid(format!(
                "layer_weights sum to {weight_sum}; the average needs a finite, non-zero sum"
            )));
        }
        Ok(LayerPoolPlan {
            layer_shape: dims[1..].to_vec(),
            layer_start,
            weights,
            weight_sum,
            out_dtype: if layers_dtype == weights_dtype {
                layers_dtype
            } else {
                DType::F32
            },
        })
    }

    /// Elements of one layer.
    pub fn layer_len(&self) -> usize {
        self.layer_shape.iter().product()
    }
}

/// The shape and scalar arguments of one weighted-layer-pooling launch. The kernel's arguments
/// are, in order: kept layers, weights, `num_layers, n, weight_sum`, output.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPoolLaunch {
    pub kernel: &'static str,
    pub grid: u32,
    pub threads: u32,
    pub num_layers: i32,
    pub n: i64,
    pub weight_sum: f32,
}

/// The launch averaging `kept` layers of `n` elements (`None` when a layer is empty).
pub fn layer_pool_launch(
    kept: usize,
    n: usize,
    dtype: DType,
    weight_sum: f32,
) -> Result<Option<LayerPoolLaunch>> {
    if n == 0 {
        return Ok(None);
    }
    let v = ptx::pack_width(dtype);
    let packed = n % v == 0;
    let packs = if packed { n / v } else { n };
    Ok(Some(LayerPoolLaunch {
        kernel: ptx::layer_pool_kernel(dtype, packed)?,
        grid: packs.div_ceil(LAYER_POOL_THREADS as usize).min(MAX_BLOCKS) as u32,
        threads: LAYER_POOL_THREADS,
        num_layers: i32::try_from(kept).map_err(|_| Error::invalid("more than 2^31 layers"))?,
        n: n as i64,
        weight_sum,
    }))
}

fn kept_layers<T: Element + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    dev: &CudaDevice,
    all: &Tensor,
    plan: &LayerPoolPlan,
) -> Result<cudarc::driver::CudaSlice<T>> {
    let n = plan.layer_len();
    dev.htod(&all.as_slice::<T>()?[plan.layer_start * n..])
}

impl CudaDevice {
    /// WeightedLayerPooling of stacked hidden states `[L + 1, B, T, D]` (f32/f16/bf16) with
    /// `layer_weights [L + 1 − layer_start]`: returns `[B, T, D]`, accumulated in f32, in the
    /// layers' dtype (f32 when the weights' dtype differs, as torch promotes).
    pub fn weighted_layer_pool(
        &self,
        all_layers: &Tensor,
        layer_start: usize,
        layer_weights: &Tensor,
    ) -> Result<Tensor> {
        let plan = LayerPoolPlan::new(all_layers, layer_start, layer_weights)?;
        if plan.layer_len() == 0 {
            return Tensor::zeros(plan.layer_shape.clone(), plan.out_dtype);
        }
        // A promoted output is computed from the layers widened to f32 (exact), so the
        // kernel's element type is the output's.
        let all_layers = all_layers.to_dtype(plan.out_dtype)?;
        let kept = plan.weights.len();
        let mut shape = vec![kept];
        shape.extend_from_slice(&plan.layer_shape);
        // Only the kept layers travel to the device.
        let data = match plan.out_dtype {
            DType::F32 => DeviceData::F32(kept_layers::<f32>(self, &all_layers, &plan)?),
            DType::F16 => DeviceData::F16(kept_layers::<f16>(self, &all_layers, &plan)?),
            _ => DeviceData::BF16(kept_layers::<bf16>(self, &all_layers, &plan)?),
        };
        let layers = DeviceTensor::from_parts(Shape::new(shape), data);
        let weights = self.htod(&plan.weights)?;
        let mut out = self.zeros(plan.layer_shape.clone(), plan.out_dtype)?;
        self.weighted_layer_pool_device(&layers, &weights, plan.weight_sum, &mut out)?;
        self.download(&out)
    }

    /// The kernel on device buffers: `kept_layers [K, ...]`, `weights` (K values), output of
    /// one layer's shape and the same dtype.
    pub fn weighted_layer_pool_device(
        &self,
        kept_layers: &DeviceTensor,
        weights: &cudarc::driver::CudaSlice<f32>,
        weight_sum: f32,
        out: &mut DeviceTensor,
    ) -> Result<()> {
        let dtype = kept_layers.dtype();
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::dtype("kept layers", "f32, f16 or bf16", dtype));
        }
        let Some((&kept, layer_shape)) = kept_layers.dims().split_first() else {
            return Err(Error::shape(
                "kept layers",
                "[K, B, T, D]",
                kept_layers.dims(),
            ));
        };
        if out.dims() != layer_shape || out.dtype() != dtype {
            return Err(Error::shape(
                "weighted layer pooling output",
                format!("{layer_shape:?} {dtype}"),
                out.dims(),
            ));
        }
        if weights.len() < kept || kept == 0 || kept > i32::MAX as usize {
            return Err(Error::invalid(format!(
                "{} layer weights for {kept} kept layers",
                weights.len()
            )));
        }
        let Some(l) = layer_pool_launch(kept, out.numel(), dtype, weight_sum)? else {
            return Ok(());
        };
        let cfg = LaunchConfig {
            grid_dim: (l.grid, 1, 1),
            block_dim: (l.threads, 1, 1),
            shared_mem_bytes: 0,
        };
        // In bounds: kept_layers holds kept * n elements, weights at least kept, out n; the
        // kernel reads layers[l * n + e] for l < kept, e < n (packs only when v divides n).
        self.launch(l.kernel)?
            .tensor(kept_layers)
            .buf(weights)
            .i32(&l.num_layers)
            .i64(&l.n)
            .f32(&l.weight_sum)
            .tensor_mut(out)
            .run(cfg)
    }
}
