use crate::st::FileBytes;
use crate::{DType, Element, Error, Result, Shape};
use std::ops::Range;
use std::sync::Arc;

/// A dense, row-major tensor on the host.
///
/// Cloning is cheap (the bytes are shared). Storage is either owned (8-byte aligned, so any
/// element type can be viewed in place) or a range of a memory-mapped safetensors file, which
/// is how model tables stay in their stored dtype without a copy.
#[derive(Clone)]
pub struct Tensor {
    shape: Shape,
    dtype: DType,
    buf: Buffer,
}

#[derive(Clone)]
enum Buffer {
    /// `u64` words give 8-byte alignment; `len` is the byte length actually used.
    Owned { words: Arc<Vec<u64>>, len: usize },
    /// Bytes `range` of a mapped (or embedded) safetensors file, already checked to be
    /// aligned for the dtype.
    Mapped {
        map: Arc<FileBytes>,
        range: Range<usize>,
    },
    /// Bytes owned by someone else (a caller's array), checked at construction to hold the
    /// shape and to be aligned for the dtype.
    Shared(Arc<dyn SharedBytes>),
    /// Bytes `range` (starting on a 2 MiB boundary) of an anonymous read-only map that the
    /// kernel was asked to back with huge pages ([`Tensor::copy_to_huge_pages`]).
    HugePages {
        map: Arc<memmap2::Mmap>,
        range: Range<usize>,
    },
}

/// Bytes that live outside stk (for example a Python array's buffer) and stay valid and
/// unchanged for as long as this handle lives. Lets [`Tensor::from_shared`] borrow a caller's
/// array instead of copying it.
pub trait SharedBytes: Send + Sync {
    /// The bytes, the same on every call while the handle lives.
    fn bytes(&self) -> &[u8];
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.buf {
            Buffer::Owned { .. } => "owned",
            Buffer::Mapped { .. } => "mapped",
            Buffer::Shared(_) => "shared",
            Buffer::HugePages { .. } => "huge pages",
        };
        write!(f, "Tensor({}, {}, {kind})", self.dtype, self.shape)
    }
}

impl Tensor {
    /// Own a copy of `bytes` as a tensor of `dtype` and `shape`.
    pub fn from_bytes(shape: impl Into<Shape>, dtype: DType, bytes: &[u8]) -> Result<Self> {
        let shape = shape.into();
        let want = shape
            .checked_numel()
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
            .ok_or_else(|| Error::too_large("tensor", shape.dims()))?;
        if want != bytes.len() {
            return Err(Error::invalid(format!(
                "{} bytes do not hold a {dtype} tensor of shape {shape} ({want} bytes)",
                bytes.len()
            )));
        }
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Ok(Tensor {
            shape,
            dtype,
            buf: Buffer::Owned {
                words: Arc::new(words),
                len: bytes.len(),
            },
        })
    }

    /// A tensor over `bytes` without copying them: they must hold exactly `shape` elements of
    /// `dtype` and be aligned for it.
    pub fn from_shared(
        shape: impl Into<Shape>,
        dtype: DType,
        bytes: Arc<dyn SharedBytes>,
    ) -> Result<Self> {
        let shape = shape.into();
        let have = bytes.bytes();
        let want = shape
            .checked_numel()
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()));
        if want != Some(have.len()) {
            return Err(Error::invalid(format!(
                "{} bytes do not hold a {dtype} tensor of shape {shape}",
                have.len()
            )));
        }
        if (have.as_ptr() as usize) % dtype.size_in_bytes() != 0 {
            return Err(Error::invalid(format!(
                "the {dtype} data of a tensor of shape {shape} is not aligned to {} bytes",
                dtype.size_in_bytes()
            )));
        }
        Ok(Tensor {
            shape,
            dtype,
            buf: Buffer::Shared(bytes),
        })
    }

    /// A tensor holding `data` with `shape` (element count must match).
    pub fn from_slice<T: Element>(shape: impl Into<Shape>, data: &[T]) -> Result<Self> {
        Self::from_bytes(shape, T::DTYPE, bytemuck::cast_slice(data))
    }

    /// Same as [`Tensor::from_slice`], taking the vector (kept for call-site clarity).
    pub fn from_vec<T: Element>(shape: impl Into<Shape>, data: Vec<T>) -> Result<Self> {
        Self::from_slice(shape, &data)
    }

    /// A tensor of zeros; [`Error::Shape`] if its size in bytes overflows `usize`.
    pub fn zeros(shape: impl Into<Shape>, dtype: DType) -> Result<Self> {
        let shape = shape.into();
        let n = shape
            .checked_numel()
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
            .ok_or_else(|| Error::too_large("tensor", shape.dims()))?;
        Ok(Tensor {
            shape,
            dtype,
            buf: Buffer::Owned {
                words: Arc::new(vec![0u64; n.div_ceil(8)]),
                len: n,
            },
        })
    }

    /// An owned f32 tensor of `shape` whose values `fill` writes. The memory is reserved
    /// fallibly: a tensor too large for this machine is an error naming `what`, not an abort.
    pub fn try_f32_filled(
        shape: impl Into<Shape>,
        what: &str,
        fill: impl FnOnce(&mut [f32]) -> Result<()>,
    ) -> Result<Self> {
        let shape = shape.into();
        let too_large = |bytes| cannot_allocate(&format!("{what}: its f32 copy"), bytes);
        let n = shape.checked_numel().ok_or_else(|| too_large(None))?;
        let len = n.checked_mul(4).ok_or_else(|| too_large(None))?;
        let mut words: Vec<u64> = Vec::new();
        words
            .try_reserve_exact(len.div_ceil(8))
            .map_err(|_| too_large(Some(len)))?;
        words.resize(len.div_ceil(8), 0);
        fill(&mut bytemuck::cast_slice_mut::<u64, f32>(&mut words)[..n])?;
        Ok(Tensor {
            shape,
            dtype: DType::F32,
            buf: Buffer::Owned {
                words: Arc::new(words),
                len,
            },
        })
    }

    pub(crate) fn mapped(
        shape: Shape,
        dtype: DType,
        map: Arc<FileBytes>,
        range: Range<usize>,
    ) -> Self {
        debug_assert_eq!(range.len(), shape.numel() * dtype.size_in_bytes());
        Tensor {
            shape,
            dtype,
            buf: Buffer::Mapped { map, range },
        }
    }

    /// The dimensions (the bytes are row-major and contiguous).
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    /// The element type of the bytes: the type [`Tensor::as_slice`] must be asked for.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The number of elements, the product of the dimensions.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    /// True when the bytes are borrowed from a safetensors file's bytes (memory-mapped, or
    /// compiled into the program) rather than copied.
    pub fn is_mapped(&self) -> bool {
        matches!(self.buf, Buffer::Mapped { .. })
    }
    /// True for a [`Tensor::copy_to_huge_pages`] copy.
    pub fn is_huge_page_copy(&self) -> bool {
        matches!(self.buf, Buffer::HugePages { .. })
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.buf {
            Buffer::Owned { words, len } => &bytemuck::cast_slice::<u64, u8>(words)[..*len],
            Buffer::Mapped { map, range } => &map[range.clone()],
            Buffer::Shared(shared) => shared.bytes(),
            Buffer::HugePages { map, range } => &map[range.clone()],
        }
    }

    /// A copy in anonymous memory that the kernel is asked to back with 2 MiB pages (Linux
    /// transparent huge pages, `madvise(MADV_HUGEPAGE)`), for tables read at random rows: in
    /// 4 KiB pages, a 30 MB table spans 7,500 pages, more than the TLB holds, so many row reads
    /// also miss the TLB. Where huge pages are unavailable the copy is in ordinary pages, with
    /// the same contents.
    pub fn copy_to_huge_pages(&self) -> Result<Tensor> {
        self.copy_to_huge_pages_with(|to, from| to.copy_from_slice(from))
    }

    /// [`Tensor::copy_to_huge_pages`] with the bytes moved by `copy(to, from)` (equal
    /// lengths; `to` starts on a 2 MiB boundary): a caller with a thread pool can fill the
    /// pages in parallel, since the kernel's zeroing of each fresh page, not the copy, is most
    /// of the cost.
    pub fn copy_to_huge_pages_with(&self, copy: impl FnOnce(&mut [u8], &[u8])) -> Result<Tensor> {
        const HUGE_PAGE: usize = 2 << 20;
        let bytes = self.bytes();
        let len = bytes.len();
        let io = |e| Error::io("anonymous memory for a huge-page copy", e);
        let mut map = memmap2::MmapMut::map_anon(len + HUGE_PAGE).map_err(io)?;
        // Start on a huge-page boundary, so that every whole 2 MiB of the copy can be one page.
        let start = map.as_ptr().align_offset(HUGE_PAGE).min(HUGE_PAGE);
        #[cfg(target_os = "linux")]
        {
            // Only a hint, given before the pages are touched: a kernel without transparent
            // huge pages refuses it and the copy lives in ordinary pages.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        copy(&mut map[start..start + len], bytes);
        let map = map.make_read_only().map_err(io)?;
        Ok(Tensor {
            shape: self.shape.clone(),
            dtype: self.dtype,
            buf: Buffer::HugePages {
                map: Arc::new(map),
                range: start..start + len,
            },
        })
    }

    /// View the elements as `T`; fails if the dtype is not `T`'s.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        if self.dtype != T::DTYPE {
            return Err(Error::dtype("tensor", T::DTYPE.as_str(), self.dtype));
        }
        // Alignment holds by construction (owned: u64 words; mapped: checked at load).
        bytemuck::try_cast_slice(self.bytes()).map_err(|e| {
            Error::invalid(format!(
                "tensor bytes cannot be viewed as {}: {e}",
                T::DTYPE
            ))
        })
    }

    /// All elements widened to f32 (any dtype).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        fn widen<T: Element>(t: &Tensor) -> Result<Vec<f32>> {
            Ok(t.as_slice::<T>()?.iter().map(|v| v.to_f32()).collect())
        }
        match self.dtype {
            DType::F32 => Ok(self.as_slice::<f32>()?.to_vec()),
            DType::F16 => widen::<half::f16>(self),
            DType::BF16 => widen::<half::bf16>(self),
            DType::I8 => widen::<i8>(self),
            DType::I32 => widen::<i32>(self),
            DType::I64 => widen::<i64>(self),
        }
    }

    /// All elements as i64; only for integer dtypes (ids, masks, offsets).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        match self.dtype {
            DType::I64 => Ok(self.as_slice::<i64>()?.to_vec()),
            DType::I32 => Ok(self.as_slice::<i32>()?.iter().map(|&v| v as i64).collect()),
            DType::I8 => Ok(self.as_slice::<i8>()?.iter().map(|&v| v as i64).collect()),
            d => Err(Error::dtype("integer tensor", "i8, i32 or i64", d)),
        }
    }

    /// Convert to another dtype (float targets round to nearest; same dtype is a cheap clone).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        fn narrow<T: Element>(shape: &Shape, v: &[f32]) -> Result<Tensor> {
            let out: Vec<T> = v.iter().map(|&x| T::from_f32(x)).collect();
            Tensor::from_slice(shape.clone(), &out)
        }
        let v = self.to_f32_vec()?;
        match dtype {
            DType::F32 => Tensor::from_slice(self.shape.clone(), &v),
            DType::F16 => narrow::<half::f16>(&self.shape, &v),
            DType::BF16 => narrow::<half::bf16>(&self.shape, &v),
            d => Err(Error::Unsupported(
                format!("converting {} to {d}", self.dtype),
                "the host".into(),
            )),
        }
    }

    /// Same bytes, new shape with the same element count.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.checked_numel() != Some(self.numel()) {
            return Err(Error::shape(
                "reshape",
                format!("{} elements", self.numel()),
                shape.dims(),
            ));
        }
        Ok(Tensor {
            shape,
            dtype: self.dtype,
            buf: self.buf.clone(),
        })
    }

    /// Check the rank and return the dims, naming the tensor in the error.
    pub fn expect_rank(&self, what: &str, rank: usize) -> Result<&[usize]> {
        if self.shape.rank() != rank {
            return Err(Error::shape(what, format!("rank {rank}"), self.dims()));
        }
        Ok(self.dims())
    }

    /// Check the dtype is one of `allowed`, naming the tensor in the error.
    pub fn expect_dtype(&self, what: &str, allowed: &[DType]) -> Result<DType> {
        if allowed.contains(&self.dtype) {
            Ok(self.dtype)
        } else {
            let names: Vec<_> = allowed.iter().map(|d| d.as_str()).collect();
            Err(Error::dtype(what, names.join(" or "), self.dtype))
        }
    }
}

/// `n` zeros for an output (`what` names it in the error): an error, not an abort, when the
/// machine cannot allocate them, so that a caller in Python or C gets an exception or a code.
pub fn zeroed_f32s(n: usize, what: &str) -> Result<Vec<f32>> {
    let bytes = n.checked_mul(std::mem::size_of::<f32>());
    // The fallible reservation asks the allocator first; it is given back, since `vec!` of
    // zeros takes lazily zeroed pages (calloc) where filling the reservation would write
    // every byte once more. Only a concurrent allocation between the two could still fail.
    let mut probe: Vec<f32> = Vec::new();
    probe
        .try_reserve_exact(n)
        .map_err(|_| cannot_allocate(what, bytes))?;
    drop(probe);
    Ok(vec![0.0; n])
}

/// The error for a buffer of `bytes` (`None`: more than the address space) that cannot be had.
fn cannot_allocate(what: &str, bytes: Option<usize>) -> Error {
    let size = bytes.map_or("more than the address space".into(), |b| {
        format!("{b} bytes")
    });
    Error::invalid(format!(
        "{what} needs {size}, which cannot be allocated on this machine"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::expect_err;
    use half::{bf16, f16};

    /// Outputs too large for the machine are errors naming them, whatever the reason.
    #[test]
    fn impossible_outputs_are_errors() {
        assert_eq!(zeroed_f32s(3, "rows").unwrap(), [0.0; 3]);
        for n in [usize::MAX, usize::MAX / 4, 1 << 50] {
            let e = zeroed_f32s(n, "rows").unwrap_err().to_string();
            assert!(
                e.starts_with("invalid argument: rows needs") && e.contains("cannot be allocated"),
                "{n}: {e}"
            );
        }
    }

    #[test]
    fn round_trips_and_converts() {
        let t = Tensor::from_slice([2, 3], &[1.0f32, -2.0, 3.5, 0.0, 1e-3, 7.0]).unwrap();
        assert_eq!(t.dims(), &[2, 3]);
        assert_eq!(t.as_slice::<f32>().unwrap()[2], 3.5);
        expect_err(
            t.as_slice::<f16>(),
            |e| matches!(e, Error::DType { .. }),
            &["expected dtype f16", "got f32"],
        );
        let h = t.to_dtype(DType::F16).unwrap();
        assert_eq!(h.as_slice::<f16>().unwrap()[1], f16::from_f32(-2.0));
        let b = t.to_dtype(DType::BF16).unwrap();
        assert_eq!(b.to_f32_vec().unwrap()[5], bf16::from_f32(7.0).to_f32());
        expect_err(
            t.reshape([3, 3]),
            |e| matches!(e, Error::Shape { .. }),
            &["reshape", "6 elements", "[3, 3]"],
        );
        assert_eq!(t.reshape([6]).unwrap().dims(), &[6]);
        expect_err(
            Tensor::from_slice([4], &[1i64, 2, 3]),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["24 bytes", "i64 tensor of shape [4]", "32 bytes"],
        );
        expect_err(
            t.to_i64_vec(),
            |e| matches!(e, Error::DType { .. }),
            &["integer tensor", "got f32"],
        );
    }

    #[test]
    fn huge_page_copies_keep_contents() {
        let values: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5 - 7.0).collect();
        let t = Tensor::from_slice([1000, 3], &values).unwrap();
        let copy = t.copy_to_huge_pages().unwrap();
        assert!(copy.is_huge_page_copy() && !t.is_huge_page_copy());
        assert_eq!(copy.dims(), t.dims());
        assert_eq!(copy.as_slice::<f32>().unwrap(), &values[..]);
        assert_eq!(
            copy.bytes().as_ptr() as usize % (2 << 20),
            0,
            "starts on a huge page"
        );
        let empty = Tensor::from_slice([0, 4], &[] as &[f32]).unwrap();
        assert!(empty.copy_to_huge_pages().unwrap().bytes().is_empty());
    }

    #[test]
    fn absurd_shapes_are_errors_not_panics() {
        let huge = usize::MAX.to_string();
        for absurd in [
            Tensor::zeros([usize::MAX, 4], DType::F32),
            Tensor::from_bytes([usize::MAX, 2], DType::I8, &[]),
        ] {
            expect_err(
                absurd,
                |e| matches!(e, Error::Shape { .. }),
                &["size fits in memory", &huge],
            );
        }
        for shape in [[usize::MAX, 2], [1 << 61, 1]] {
            let e = Tensor::try_f32_filled(shape, "tensor `t`", |_| Ok(()))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("tensor `t`") && e.contains("cannot be allocated"),
                "{e}"
            );
        }
        let t = Tensor::try_f32_filled([3], "t", |v| {
            v.copy_from_slice(&[1.0, 2.0, 3.0]);
            Ok(())
        })
        .unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn shared_bytes_are_viewed_not_copied_and_checked() {
        struct Words(Vec<u32>);
        impl SharedBytes for Words {
            fn bytes(&self) -> &[u8] {
                bytemuck::cast_slice(&self.0)
            }
        }
        let words = Arc::new(Words(vec![1.5f32.to_bits(), 2.5f32.to_bits()]));
        let first = words.bytes().as_ptr();
        let t = Tensor::from_shared([2], DType::F32, words.clone()).unwrap();
        assert_eq!(t.bytes().as_ptr(), first);
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1.5, 2.5]);
        for (dims, dtype, message) in [
            ([3], DType::F32, ["8 bytes", "f32 tensor of shape [3]"]),
            ([2], DType::F16, ["8 bytes", "f16 tensor of shape [2]"]),
        ] {
            expect_err(
                Tensor::from_shared(dims, dtype, words.clone()),
                |e| matches!(e, Error::InvalidArgument(_)),
                &message,
            );
        }
    }
}
