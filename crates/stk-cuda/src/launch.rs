//! The argument list of a kernel launch, written once per op and shared by the GPU (device
//! pointers) and the kernel simulator (buffer contents): [`Arg`] is generic over what a buffer
//! is, so the order and kinds of a kernel's arguments are spelled in one place.

use crate::ptx::{Kernel, ParamKind};
use stk_core::{Error, Result};

/// One kernel argument. `B` is a device pointer (`u64`) on the GPU, the bytes in the simulator.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg<B> {
    Buf(B),
    /// A null pointer, for an optional buffer.
    Null,
    I32(i32),
    I64(i64),
    U64(u64),
    F32(f32),
}

impl<B> Arg<B> {
    /// A buffer that may be absent.
    pub fn opt(b: Option<B>) -> Self {
        b.map_or(Arg::Null, Arg::Buf)
    }
    /// The PTX parameter kind this argument fills.
    pub fn kind(&self) -> ParamKind {
        match self {
            Arg::Buf(_) | Arg::Null | Arg::I64(_) | Arg::U64(_) => ParamKind::U64,
            Arg::I32(_) => ParamKind::U32,
            Arg::F32(_) => ParamKind::F32,
        }
    }
}

/// Which kernel, and its grid, block and dynamic shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchShape {
    pub kernel: &'static Kernel,
    pub grid: u32,
    pub threads: u32,
    pub shared_bytes: u32,
}

impl LaunchShape {
    /// Refuse a launch whose arguments do not match the kernel's PTX signature in number and
    /// kind, or whose block is larger than the kernel was compiled for: a launcher that drifts
    /// from its `.cu` file fails here instead of corrupting memory.
    pub fn check<B>(&self, args: &[Arg<B>]) -> Result<()> {
        let k = self.kernel;
        let kinds: Vec<ParamKind> = args.iter().map(Arg::kind).collect();
        if kinds != k.params {
            return Err(Error::Cuda(format!(
                "argument list of {} ({kinds:?}) does not match its PTX signature ({:?})",
                k.name, k.params
            )));
        }
        if let Some(max) = k.max_threads {
            if self.threads > max {
                return Err(Error::Cuda(format!(
                    "{} launched with {} threads per block, compiled for at most {max}",
                    k.name, self.threads
                )));
            }
        }
        if self.grid == 0 || self.threads == 0 {
            return Err(Error::Cuda(format!(
                "{} launched with an empty grid",
                k.name
            )));
        }
        Ok(())
    }
}
