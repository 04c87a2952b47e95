//! WeightedLayerPooling (`kernels/layer_pool.cu`): `Σ_l w_l·layer_l / Σ_l w_l` over the layers
//! `layer_start..` of a model's hidden states.

use crate::device::{CudaDevice, DeviceData, DeviceTensor};
use crate::launch::{Arg, LaunchShape};
use crate::ptx;
use crate::views::{aligned16, FloatElement};
use cudarc::driver::{CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use stk_core::validate::LayerPooling;
use stk_core::{bf16, f16, DType, Element, Error, Result, Shape, Tensor};

/// Threads per block (`LAYER_POOL_THREADS` in `kernels/layer_pool.cu`).
pub const LAYER_POOL_THREADS: u32 = 256;
/// Enough blocks to fill any current GPU several times over; the kernel loops over the rest.
const MAX_BLOCKS: usize = 1 << 16;

#[doc(hidden)]
/// One weighted-layer-pooling launch. The kernel's arguments are, in order: kept layers,
/// weights, `num_layers, n, weight_sum`, output ([`LayerPoolLaunch::args`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPoolLaunch {
    pub shape: LaunchShape,
    pub num_layers: i32,
    pub n: i64,
    pub weight_sum: f32,
}

impl LayerPoolLaunch {
    /// The argument list with the kept layers, the weights (f32) and the output.
    pub fn args<B>(&self, layers: B, weights: B, out: B) -> Vec<Arg<B>> {
        vec![
            Arg::Buf(layers),
            Arg::Buf(weights),
            Arg::I32(self.num_layers),
            Arg::I64(self.n),
            Arg::F32(self.weight_sum),
            Arg::Buf(out),
        ]
    }
}

#[doc(hidden)]
/// The launch averaging `kept` layers of `n` elements (`None` when a layer is empty); 16-byte
/// loads only when the buffers are `aligned` to 16 bytes.
pub fn layer_pool_launch(
    kept: usize,
    n: usize,
    dtype: DType,
    weight_sum: f32,
    aligned: bool,
) -> Result<Option<LayerPoolLaunch>> {
    if n == 0 {
        return Ok(None);
    }
    if kept == 0 {
        return Err(Error::invalid("weighted layer pooling of no layer"));
    }
    let v = ptx::pack_width(dtype);
    let packed = aligned && n % v == 0;
    let packs = if packed { n / v } else { n };
    Ok(Some(LayerPoolLaunch {
        shape: LaunchShape {
            kernel: ptx::select("layer_pool", dtype, packed)?,
            grid: packs.div_ceil(LAYER_POOL_THREADS as usize).min(MAX_BLOCKS) as u32,
            threads: LAYER_POOL_THREADS,
            shared_bytes: 0,
        },
        num_layers: i32::try_from(kept).map_err(|_| Error::invalid("more than 2^31 layers"))?,
        n: n as i64,
        weight_sum,
    }))
}

fn kept_layers<T: Element + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    dev: &CudaDevice,
    all: &Tensor,
    plan: &LayerPooling,
) -> Result<CudaSlice<T>> {
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
        // The checks every backend shares (the CPU makes the same call).
        let plan = LayerPooling::check(all_layers, layer_start, layer_weights)?;
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

    /// The kernel on device buffers, on this handle's stream: `kept_layers [K, ...]`,
    /// `weights` (K values), output of one layer's shape and the same dtype.
    #[allow(unsafe_code)]
    pub fn weighted_layer_pool_device(
        &self,
        kept_layers: &DeviceTensor,
        weights: &CudaSlice<f32>,
        weight_sum: f32,
        out: &mut DeviceTensor,
    ) -> Result<()> {
        let dtype = kept_layers.dtype();
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
        if weights.len() < kept {
            return Err(Error::invalid(format!(
                "{} layer weights for {kept} kept layers",
                weights.len()
            )));
        }
        let Some(l) = layer_pool_launch(kept, out.numel(), dtype, weight_sum, true)? else {
            return Ok(());
        };
        let stream = self.stream();
        let (layers_ptr, _l) = kept_layers.ptr(stream);
        let (weights_ptr, _w) = weights.device_ptr(stream);
        let (out_ptr, _o) = out.ptr_mut(stream);
        // SAFETY: whole allocations of this device: kept_layers holds kept * n elements,
        // weights at least kept, out n (checked above); the kernel reads layers[l * n + e] for
        // l < kept, e < n and writes out[e]. The guards keep them alive past the enqueue.
        unsafe {
            self.launch(
                &l.shape,
                stream.cu_stream(),
                &l.args(layers_ptr, weights_ptr, out_ptr),
            )
        }
    }

    /// Weighted layer pooling on the caller's `stream` (a stream of this device's context):
    /// `kept_layers` holds `K` layers of `out.len()` elements each, `weights` `K` values and
    /// `weight_sum` their sum. No copy, allocation or synchronization: graph-capturable.
    #[allow(unsafe_code)]
    pub fn weighted_layer_pool_views<T: FloatElement>(
        &self,
        stream: &CudaStream,
        kept_layers: &CudaView<'_, T>,
        weights: &CudaView<'_, f32>,
        weight_sum: f32,
        out: &mut CudaViewMut<'_, T>,
    ) -> Result<()> {
        self.check_stream(stream)?;
        let n = out.len();
        let kept = weights.len();
        if kept == 0 || kept_layers.len() != kept * n {
            return Err(Error::shape(
                "kept layers",
                format!("{kept} layers (one per weight) of {n} elements (the output's)"),
                &[kept_layers.len()],
            ));
        }
        let (layers_ptr, _l) = kept_layers.device_ptr(stream);
        let (weights_ptr, _w) = weights.device_ptr(stream);
        let (out_ptr, _o) = out.device_ptr_mut(stream);
        // SAFETY: views of this context's allocations with the lengths checked above; out is
        // borrowed mutably, so it overlaps neither input; the borrows outlive the enqueue.
        unsafe {
            self.weighted_layer_pool_raw(
                stream.cu_stream(),
                layers_ptr,
                weights_ptr,
                kept,
                n,
                T::DTYPE,
                weight_sum,
                out_ptr,
            )
        }
    }

    /// [`CudaDevice::weighted_layer_pool_views`] on raw device pointers, for foreign callers.
    ///
    /// # Safety
    /// `stream` is a live stream of this device's context; `kept_layers` is a device address
    /// in that context of `kept * n` elements of `dtype`, `weights` of `kept` f32 values, `out`
    /// of `n` elements of `dtype` not overlapping the inputs; all stay allocated until the
    /// launch has run on `stream`.
    #[allow(unsafe_code)]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn weighted_layer_pool_raw(
        &self,
        stream: cudarc::driver::sys::CUstream,
        kept_layers: u64,
        weights: u64,
        kept: usize,
        n: usize,
        dtype: DType,
        weight_sum: f32,
        out: u64,
    ) -> Result<()> {
        let aligned = aligned16(&[kept_layers, out]);
        let Some(l) = layer_pool_launch(kept, n, dtype, weight_sum, aligned)? else {
            return Ok(());
        };
        // SAFETY: the caller's contract above is the launch's.
        unsafe { self.launch(&l.shape, stream, &l.args(kept_layers, weights, out)) }
    }
}
