//! [`CudaDevice`]: a context, a stream and the loaded kernels of one GPU; [`DeviceTensor`]: a
//! typed device buffer with a shape; [`Launch`]: the checked argument list of one launch.

use crate::ptx::{self, ParamKind};
use crate::sys;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, LaunchArgs,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::Arc;
use stk_core::{bf16, f16, DType, Error, Result, Shape, Tensor};

pub(crate) fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

/// One GPU: its context, the stream every op of this handle runs on, and the kernels of
/// `kernels/*.cu` loaded from the embedded PTX (JIT-compiled by the driver for the device).
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    driver_version: i32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    _modules: Vec<Arc<CudaModule>>,
    kernels: HashMap<&'static str, LoadedKernel>,
}

/// A kernel of the embedded PTX with what its launches are checked against.
struct LoadedKernel {
    function: CudaFunction,
    params: Vec<ParamKind>,
    max_threads: Option<u32>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice(cuda:{} {})", self.ordinal, self.name)
    }
}

impl CudaDevice {
    /// Open device `ordinal`. Without `libcuda.so` this is `Err(NoCudaDriver)`; with a driver
    /// but no such device, `Err(NoCudaDevice(ordinal))`. Never panics.
    pub fn new(ordinal: usize) -> Result<Self> {
        // cudarc panics on its first driver call when libcuda is missing: ask first.
        if !sys::driver_present() {
            return Err(Error::NoCudaDriver);
        }
        let driver_version = sys::driver_version()?;
        let count = match CudaContext::device_count() {
            Ok(n) => n.max(0) as usize,
            Err(e) if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => 0,
            Err(e) => return Err(Error::Cuda(format!("initializing the CUDA driver: {e}"))),
        };
        if ordinal >= count {
            return Err(Error::NoCudaDevice(ordinal));
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err("creating a CUDA context"))?;
        let name = ctx.name().map_err(cuda_err("reading the device name"))?;
        let stream = ctx.default_stream();
        let mut modules = Vec::new();
        let mut kernels = HashMap::new();
        for family in ptx::FAMILIES {
            let module = ctx.load_module(Ptx::from_src(family.ptx)).map_err(|e| {
                Error::Cuda(format!("loading the {} kernels' PTX: {e}", family.name))
            })?;
            for entry in ptx::ptx_entries(family.ptx) {
                let params = ptx::entry_params(family.ptx, entry)?;
                let f = module
                    .load_function(entry)
                    .map_err(|e| Error::Cuda(format!("loading kernel {entry}: {e}")))?;
                let max_threads = ptx::entry_max_threads(family.ptx, entry);
                // The names come from the embedded PTX, which lives as long as the program.
                kernels.insert(
                    entry,
                    LoadedKernel {
                        function: f,
                        params,
                        max_threads,
                    },
                );
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
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    pub(crate) fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
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
        let n = shape.checked_numel().ok_or_else(|| {
            Error::shape(
                "device tensor",
                "a shape whose size fits in memory",
                shape.dims(),
            )
        })?;
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
            .map_err(|e| Error::Cuda(format!("allocating {n} elements on the device: {e}")))
    }

    fn dtoh<T: DeviceRepr + Default + Clone>(&self, s: &CudaSlice<T>, n: usize) -> Result<Vec<T>> {
        let mut v = self
            .stream
            .clone_dtoh(s)
            .map_err(cuda_err("copying from the device"))?;
        v.truncate(n);
        Ok(v)
    }

    /// Start the argument list of `kernel` (one of the names of [`crate::ptx`]).
    pub(crate) fn launch(&self, kernel: &'static str) -> Result<Launch<'_>> {
        let k = self
            .kernels
            .get(kernel)
            .ok_or_else(|| Error::Cuda(format!("kernel {kernel} is not in the embedded PTX")))?;
        Ok(Launch {
            kernel,
            args: self.stream.launch_builder(&k.function),
            pushed: Vec::with_capacity(k.params.len()),
            expected: &k.params,
            max_threads: k.max_threads,
        })
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
    F32(CudaSlice<f32>),
    F16(CudaSlice<f16>),
    BF16(CudaSlice<bf16>),
    I8(CudaSlice<i8>),
    I32(CudaSlice<i32>),
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
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
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

/// A null device pointer, for optional buffer arguments.
static NULL_DEVICE_PTR: u64 = 0;

/// The argument list of one launch. Each push records the PTX parameter kind it provides;
/// [`Launch::run`] refuses to launch unless they match the kernel's PTX signature exactly,
/// so a launcher that drifts from its `.cu` file fails with an error instead of corrupting
/// memory.
pub(crate) struct Launch<'a> {
    kernel: &'static str,
    args: LaunchArgs<'a>,
    pushed: Vec<ParamKind>,
    expected: &'a [ParamKind],
    max_threads: Option<u32>,
}

impl<'a> Launch<'a> {
    pub fn buf<T>(&mut self, s: &'a CudaSlice<T>) -> &mut Self {
        self.args.arg(s);
        self.pushed.push(ParamKind::U64);
        self
    }
    pub fn buf_mut<T>(&mut self, s: &'a mut CudaSlice<T>) -> &mut Self {
        self.args.arg(s);
        self.pushed.push(ParamKind::U64);
        self
    }
    /// A tensor's buffer, whatever its element type (the kernel was chosen for that dtype).
    pub fn tensor(&mut self, t: &'a DeviceTensor) -> &mut Self {
        match &t.data {
            DeviceData::F32(s) => self.buf(s),
            DeviceData::F16(s) => self.buf(s),
            DeviceData::BF16(s) => self.buf(s),
            DeviceData::I8(s) => self.buf(s),
            DeviceData::I32(s) => self.buf(s),
            DeviceData::I64(s) => self.buf(s),
        }
    }
    pub fn tensor_mut(&mut self, t: &'a mut DeviceTensor) -> &mut Self {
        match &mut t.data {
            DeviceData::F32(s) => self.buf_mut(s),
            DeviceData::F16(s) => self.buf_mut(s),
            DeviceData::BF16(s) => self.buf_mut(s),
            DeviceData::I8(s) => self.buf_mut(s),
            DeviceData::I32(s) => self.buf_mut(s),
            DeviceData::I64(s) => self.buf_mut(s),
        }
    }
    pub fn opt_tensor(&mut self, t: Option<&'a DeviceTensor>) -> &mut Self {
        match t {
            Some(t) => self.tensor(t),
            None => self.null(),
        }
    }
    pub fn opt_buf<T>(&mut self, s: Option<&'a CudaSlice<T>>) -> &mut Self {
        match s {
            Some(s) => self.buf(s),
            None => self.null(),
        }
    }
    pub fn null(&mut self) -> &mut Self {
        self.args.arg(&NULL_DEVICE_PTR);
        self.pushed.push(ParamKind::U64);
        self
    }
    pub fn i32(&mut self, v: &'a i32) -> &mut Self {
        self.args.arg(v);
        self.pushed.push(ParamKind::U32);
        self
    }
    pub fn i64(&mut self, v: &'a i64) -> &mut Self {
        self.args.arg(v);
        self.pushed.push(ParamKind::U64);
        self
    }
    pub fn u64(&mut self, v: &'a u64) -> &mut Self {
        self.args.arg(v);
        self.pushed.push(ParamKind::U64);
        self
    }
    pub fn f32(&mut self, v: &'a f32) -> &mut Self {
        self.args.arg(v);
        self.pushed.push(ParamKind::F32);
        self
    }

    /// Check the argument kinds against the PTX signature and the block size against the
    /// kernel's launch bounds, then launch.
    pub fn run(&mut self, cfg: LaunchConfig) -> Result<()> {
        if self.pushed != self.expected {
            return Err(Error::Cuda(format!(
                "argument list of {} ({:?}) does not match its PTX signature ({:?})",
                self.kernel, self.pushed, self.expected
            )));
        }
        let threads = cfg.block_dim.0 * cfg.block_dim.1 * cfg.block_dim.2;
        if let Some(max) = self.max_threads {
            if threads > max {
                return Err(Error::Cuda(format!(
                    "{} launched with {threads} threads per block, compiled for at most {max}",
                    self.kernel
                )));
            }
        }
        sys::launch(self.kernel, &mut self.args, cfg)
    }
}
