//! [`CudaDevice`]: a context, a stream and the loaded kernels of one GPU; [`DeviceTensor`]: a
//! typed device buffer with a shape.

use crate::launch::{Arg, LaunchShape};
use crate::ptx;
use crate::sys::{self, driver_error};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    DeviceRepr, SyncOnDrop, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::Arc;
use stk_core::{bf16, f16, DType, Error, Result, Shape, Tensor};

pub(crate) fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| driver_error(what, e)
}

/// One GPU: its context, the stream the host-tensor API runs on, and the kernels of
/// `kernels/*.cu` loaded from the embedded PTX (JIT-compiled by the driver for the device).
///
/// The device-buffer API (`*_views`, `*_raw`) runs on the caller's stream instead.
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    driver_version: i32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    _modules: Vec<Arc<CudaModule>>,
    kernels: HashMap<&'static str, CudaFunction>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice(cuda:{} {})", self.ordinal, self.name)
    }
}

impl CudaDevice {
    /// Open device `ordinal`. Without `libcuda.so` this is `Err(NoCudaDriver)`; with a driver
    /// older than the embedded PTX needs, `Err(DriverTooOld)` naming the driver needed; with a
    /// driver but no such device, `Err(NoCudaDevice(ordinal))`. Never panics.
    pub fn new(ordinal: usize) -> Result<Self> {
        // cudarc panics on its first driver call when libcuda is missing: ask first.
        if !sys::driver_present() {
            return Err(Error::NoCudaDriver);
        }
        let driver_version = sys::driver_version()?;
        ptx::check_driver(driver_version)?;
        let count = match CudaContext::device_count() {
            Ok(n) => n.max(0) as usize,
            Err(e) if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => 0,
            Err(e) => return Err(driver_error("initializing the CUDA driver", e)),
        };
        if ordinal >= count {
            return Err(Error::NoCudaDevice(ordinal));
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err("creating a CUDA context"))?;
        let name = ctx.name().map_err(cuda_err("reading the device name"))?;
        // A stream of our own: the legacy default stream would serialize with every other
        // stream of the process.
        let stream = ctx.new_stream().map_err(cuda_err("creating a stream"))?;
        let mut modules = Vec::new();
        let mut kernels = HashMap::new();
        for family in ptx::FAMILIES {
            let module = ctx.load_module(Ptx::from_src(family.ptx)).map_err(|e| {
                driver_error(format!("loading the {} kernels' PTX", family.name), e)
            })?;
            for k in ptx::KERNELS.iter().filter(|k| k.family == family.name) {
                let f = module
                    .load_function(k.name)
                    .map_err(|e| driver_error(format!("loading kernel {}", k.name), e))?;
                kernels.insert(k.name, f);
            }
            modules.push(module);
        }
        Ok(CudaDevice {
            ordinal,
            name,
            driver_version,
            ctx,
            stream,
            _modules: modules,
            kernels,
        })
    }

    /// The device's index (the ordinal `CudaDevice::new` was given).
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
    /// The device's marketing name (`NVIDIA H200`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The driver's CUDA version as `major * 1000 + minor * 10`.
    pub fn driver_version(&self) -> i32 {
        self.driver_version
    }
    /// Streaming multiprocessors on the device.
    pub fn multiprocessors(&self) -> Result<usize> {
        self.ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map(|n| n.max(0) as usize)
            .map_err(cuda_err("reading the multiprocessor count"))
    }
    /// The stream the host-tensor API (and `*_device` calls on [`DeviceTensor`]s) runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    /// The context the kernels are loaded in: device-buffer calls take streams of it.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Refuse a caller's stream of another context (our kernels are loaded in ours).
    pub(crate) fn check_stream(&self, stream: &CudaStream) -> Result<()> {
        if Arc::ptr_eq(stream.context(), &self.ctx) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "the stream belongs to another CUDA context than cuda:{}'s",
                self.ordinal
            )))
        }
    }

    /// Wait until every op submitted through this handle has finished.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(cuda_err("synchronizing the stream"))
    }

    /// Copy a host tensor to the device (any dtype; the shape is kept).
    pub fn upload(&self, t: &Tensor) -> Result<DeviceTensor> {
        let data = match t.dtype() {
            DType::F32 => DeviceData::F32(self.htod(t.as_slice::<f32>()?)?),
            DType::F16 => DeviceData::F16(self.htod(t.as_slice::<f16>()?)?),
            DType::BF16 => DeviceData::BF16(self.htod(t.as_slice::<bf16>()?)?),
            DType::I8 => DeviceData::I8(self.htod(t.as_slice::<i8>()?)?),
            DType::I32 => DeviceData::I32(self.htod(t.as_slice::<i32>()?)?),
            DType::I64 => DeviceData::I64(self.htod(t.as_slice::<i64>()?)?),
        };
        Ok(DeviceTensor {
            shape: t.shape().clone(),
            data,
        })
    }

    /// Copy a device tensor back to the host.
    pub fn download(&self, t: &DeviceTensor) -> Result<Tensor> {
        let n = t.numel();
        match &t.data {
            DeviceData::F32(s) => Tensor::from_vec(t.shape.clone(), self.dtoh(s, n)?),
            DeviceData::F16(s) => Tensor::from_vec(t.shape.clone(), self.dtoh(s, n)?),
            DeviceData::BF16(s) => Tensor::from_vec(t.shape.clone(), self.dtoh(s, n)?),
            DeviceData::I8(s) => Tensor::from_vec(t.shape.clone(), self.dtoh(s, n)?),
            DeviceData::I32(s) => Tensor::from_vec(t.shape.clone(), self.dtoh(s, n)?),
            DeviceData::I64(s) => Tensor::from_vec(t.shape.clone(), self.dtoh(s, n)?),
        }
    }

    /// A zero-filled device tensor.
    pub fn zeros(&self, shape: impl Into<Shape>, dtype: DType) -> Result<DeviceTensor> {
        let shape = shape.into();
        let n = shape
            .checked_numel()
            .ok_or_else(|| Error::too_large("device tensor", shape.dims()))?;
        let data = match dtype {
            DType::F32 => DeviceData::F32(self.alloc_zeros(n)?),
            DType::F16 => DeviceData::F16(self.alloc_zeros(n)?),
            DType::BF16 => DeviceData::BF16(self.alloc_zeros(n)?),
            DType::I8 => DeviceData::I8(self.alloc_zeros(n)?),
            DType::I32 => DeviceData::I32(self.alloc_zeros(n)?),
            DType::I64 => DeviceData::I64(self.alloc_zeros(n)?),
        };
        Ok(DeviceTensor { shape, data })
    }

    /// Copy a host slice to a new device buffer. Empty slices get a one-element buffer, because
    /// a zero-byte allocation is an error for the driver; kernels never index past the length
    /// the host passes them.
    pub(crate) fn htod<T: DeviceRepr + ValidAsZeroBits>(&self, v: &[T]) -> Result<CudaSlice<T>> {
        if v.is_empty() {
            return self.alloc_zeros(1);
        }
        self.stream
            .clone_htod(v)
            .map_err(cuda_err("copying to the device"))
    }

    pub(crate) fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| driver_error(format!("allocating {n} elements on the device"), e))
    }

    fn dtoh<T: DeviceRepr + Default + Clone>(&self, s: &CudaSlice<T>, n: usize) -> Result<Vec<T>> {
        let mut v = self
            .stream
            .clone_dtoh(s)
            .map_err(cuda_err("copying from the device"))?;
        v.truncate(n);
        Ok(v)
    }

    /// Check `args` against the kernel's PTX signature, then enqueue the launch on `stream`.
    ///
    /// # Safety
    /// `stream` is a stream of this device's context ([`CudaDevice::check_stream`]) or its raw
    /// handle, and every buffer in `args` satisfies the contract of [`sys::launch`]: a device
    /// address in this context of at least as many elements as the kernel indexes, alive
    /// until the launch has run.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn launch(
        &self,
        shape: &LaunchShape,
        stream: cudarc::driver::sys::CUstream,
        args: &[Arg<u64>],
    ) -> Result<()> {
        shape.check(args)?;
        let function = self
            .kernels
            .get(shape.kernel.name)
            .ok_or_else(|| Error::Cuda(format!("kernel {} is not loaded", shape.kernel.name)))?;
        self.ctx
            .bind_to_thread()
            .map_err(cuda_err("making the context current"))?;
        // SAFETY: `function` is the kernel `shape` names, loaded in `self.ctx`, now current;
        // the arguments match its signature (checked above); the buffers are the caller's
        // contract.
        unsafe { sys::launch(function, shape, stream, args) }
    }
}

/// The process-wide handle of device `ordinal`, opened (and its kernels loaded) on first use.
/// Errors are not remembered: a later call tries again.
pub fn shared_device(ordinal: usize) -> Result<Arc<CudaDevice>> {
    static OPEN: std::sync::Mutex<Vec<(usize, Arc<CudaDevice>)>> =
        std::sync::Mutex::new(Vec::new());
    // A panic while holding the lock cannot leave the list inconsistent: keep using it.
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, d)) = open.iter().find(|(o, _)| *o == ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(CudaDevice::new(ordinal)?);
    open.push((ordinal, d.clone()));
    Ok(d)
}

/// The element storage of a [`DeviceTensor`].
#[derive(Debug)]
pub enum DeviceData {
    /// f32 elements.
    F32(CudaSlice<f32>),
    /// IEEE half elements.
    F16(CudaSlice<f16>),
    /// bfloat16 elements.
    BF16(CudaSlice<bf16>),
    /// int8 elements (quantized tables).
    I8(CudaSlice<i8>),
    /// int32 elements (`cu_seq_lens`, id mappings).
    I32(CudaSlice<i32>),
    /// int64 elements (masks, offsets, spans).
    I64(CudaSlice<i64>),
}

/// A dense row-major tensor in device memory. Its buffer is a whole cudarc allocation (256-byte
/// aligned), which is what lets the kernels use 16-byte loads on rows whose length is a
/// multiple of 16 bytes.
#[derive(Debug)]
pub struct DeviceTensor {
    shape: Shape,
    data: DeviceData,
}

impl DeviceTensor {
    /// The tensor's shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    /// The tensor's dimensions.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    /// The number of elements (the product of the dimensions).
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            DeviceData::F32(_) => DType::F32,
            DeviceData::F16(_) => DType::F16,
            DeviceData::BF16(_) => DType::BF16,
            DeviceData::I8(_) => DType::I8,
            DeviceData::I32(_) => DType::I32,
            DeviceData::I64(_) => DType::I64,
        }
    }
    /// Bytes of the elements (not of the padding of an empty tensor's buffer).
    pub fn size_in_bytes(&self) -> usize {
        self.numel() * self.dtype().size_in_bytes()
    }
    /// Same buffer, another shape with the same element count.
    pub fn reshape(self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.checked_numel() != Some(self.numel()) {
            return Err(Error::shape(
                "device reshape",
                format!("{} elements", self.numel()),
                shape.dims(),
            ));
        }
        Ok(DeviceTensor {
            shape,
            data: self.data,
        })
    }
    pub(crate) fn from_parts(shape: Shape, data: DeviceData) -> Self {
        DeviceTensor { shape, data }
    }
}

impl DeviceTensor {
    /// The buffer's device address for a launch on `stream`, with cudarc's guard (which
    /// records the read when event tracking is on); keep the guard until the launch is queued.
    pub(crate) fn ptr<'a>(&'a self, stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        match &self.data {
            DeviceData::F32(s) => s.device_ptr(stream),
            DeviceData::F16(s) => s.device_ptr(stream),
            DeviceData::BF16(s) => s.device_ptr(stream),
            DeviceData::I8(s) => s.device_ptr(stream),
            DeviceData::I32(s) => s.device_ptr(stream),
            DeviceData::I64(s) => s.device_ptr(stream),
        }
    }
    /// [`DeviceTensor::ptr`] for a buffer the launch writes.
    pub(crate) fn ptr_mut<'a>(&'a mut self, stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        match &mut self.data {
            DeviceData::F32(s) => s.device_ptr_mut(stream),
            DeviceData::F16(s) => s.device_ptr_mut(stream),
            DeviceData::BF16(s) => s.device_ptr_mut(stream),
            DeviceData::I8(s) => s.device_ptr_mut(stream),
            DeviceData::I32(s) => s.device_ptr_mut(stream),
            DeviceData::I64(s) => s.device_ptr_mut(stream),
        }
    }
}
