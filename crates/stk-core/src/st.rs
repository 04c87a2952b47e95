//! safetensors I/O. Reading memory-maps the file and hands out tensors that borrow the map;
//! writing goes through a temporary file in the target folder and a rename, so a failed run
//! never leaves a partial output behind.
#![allow(unsafe_code)] // the mmap below is the one unsafe operation of this crate

use crate::{DType, Error, OutputFile, Result, Shape, Tensor, WriteMode};
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An opened, validated safetensors file.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Arc<FileBytes>,
    entries: BTreeMap<String, (Stored, Shape, Range<usize>)>,
}

/// The bytes of a safetensors file that tensors borrow: a memory map of a file on disk, or
/// bytes compiled into the program (the embedded default model, `include_bytes!`).
pub(crate) enum FileBytes {
    Mapped(memmap2::Mmap),
    Static(&'static [u8]),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Static(bytes) => bytes,
        }
    }
}

/// How a tensor is stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// A dtype stk computes with: handed out as it is (borrowing the map when aligned).
    Native(DType),
    /// float64 (model2vec writes its tables so whenever the vectors are float64): converted to
    /// f32 once, when the tensor is read, since every computation in stk is f32.
    F64,
}

impl Stored {
    fn of(d: safetensors::Dtype) -> Option<Self> {
        match d {
            safetensors::Dtype::F64 => Some(Stored::F64),
            d => DType::from_st(d).map(Stored::Native),
        }
    }
}

impl SafetensorsFile {
    /// Map the file at `path` and check its header: every tensor's dtype readable, its offsets
    /// inside the file and in agreement with its shape. [`Error::Io`] if it cannot be opened,
    /// [`Error::Safetensors`] naming what is wrong otherwise; nothing is copied.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        let bad = |reason: String| Error::Safetensors {
            path: path.clone(),
            reason,
        };
        if !meta.is_file() {
            // Opening a directory succeeds on Unix; mapping it fails with an obscure errno.
            return Err(bad(
                "it is a directory (or another non-file), not a file".into()
            ));
        }
        let len = meta.len();
        if len < 8 {
            // Checked before mapping too: an empty file cannot be mapped at all.
            return Err(bad(too_short(len)));
        }
        // SAFETY: the map is read-only. Like every mmap reader, we assume no other process
        // truncates the file while it is mapped (model folders are not written in place).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        Self::parse(path, Arc::new(FileBytes::Mapped(map)))
    }

    /// A safetensors file compiled into the program (`include_bytes!`); `path` names it in
    /// messages. The same checks as [`SafetensorsFile::open`]; tensors borrow `bytes` when they
    /// are aligned for their dtype (so put them in an aligned static), else are copied once.
    pub fn from_static(path: impl Into<PathBuf>, bytes: &'static [u8]) -> Result<Self> {
        Self::parse(path.into(), Arc::new(FileBytes::Static(bytes)))
    }

    /// Validate the header and index the tensors of `map` (what every constructor shares).
    fn parse(path: PathBuf, map: Arc<FileBytes>) -> Result<Self> {
        let bad = |reason: String| Error::Safetensors {
            path: path.clone(),
            reason,
        };
        let len = map.len() as u64;
        if len < 8 {
            return Err(bad(too_short(len)));
        }
        let st =
            safetensors::SafeTensors::deserialize(&map[..]).map_err(|e| bad(describe(e, len)))?;
        let base = map.as_ptr() as usize;
        let mut entries = BTreeMap::new();
        for (name, view) in st.tensors() {
            let stored = Stored::of(view.dtype()).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` has dtype {:?}, which stk does not read",
                    view.dtype()
                ))
            })?;
            let shape = Shape::new(view.shape().to_vec());
            let start = view.data().as_ptr() as usize - base;
            let range = start..start + view.data().len();
            entries.insert(name, (stored, shape, range));
        }
        Ok(SafetensorsFile { path, map, entries })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The tensor `name`, borrowing the map when its bytes are aligned for its dtype
    /// (otherwise copied once into aligned memory).
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.get_opt(name)?.ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            path: self.path.clone(),
            available: {
                let v: Vec<_> = self.names().collect();
                if v.is_empty() {
                    "no tensors".into()
                } else {
                    v.join(", ")
                }
            },
        })
    }

    /// The tensor `name` if the file has it. float64 tensors come back as f32 (an owned copy,
    /// rounded to nearest); a finite value beyond f32's range is an error, not an infinity.
    pub fn get_opt(&self, name: &str) -> Result<Option<Tensor>> {
        let Some((stored, shape, range)) = self.entries.get(name) else {
            return Ok(None);
        };
        let dtype = match stored {
            Stored::Native(d) => d,
            Stored::F64 => {
                return self
                    .f64_as_f32(name, shape, &self.map[range.clone()])
                    .map(Some)
            }
        };
        let aligned = (self.map.as_ptr() as usize + range.start) % dtype.size_in_bytes() == 0;
        Ok(Some(if aligned {
            Tensor::mapped(shape.clone(), *dtype, self.map.clone(), range.clone())
        } else {
            Tensor::from_bytes(shape.clone(), *dtype, &self.map[range.clone()])?
        }))
    }
}

impl SafetensorsFile {
    /// `bytes` (little-endian float64, any alignment) as an owned f32 tensor of `shape`.
    fn f64_as_f32(&self, name: &str, shape: &Shape, bytes: &[u8]) -> Result<Tensor> {
        let what = format!(
            "tensor `{name}` of {} (float64 {shape}, converted to f32 at load)",
            self.path.display()
        );
        Tensor::try_f32_filled(shape.clone(), &what, |out| {
            for (i, (o, b)) in out.iter_mut().zip(bytes.chunks_exact(8)).enumerate() {
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                let x = f64::from_le_bytes(le);
                let y = x as f32;
                if y.is_infinite() && x.is_finite() {
                    return Err(Error::invalid(format!(
                        "{what}: value {x:e} at flat index {i} is beyond the f32 range"
                    )));
                }
                *o = y;
            }
            Ok(())
        })
    }
}

fn too_short(len: u64) -> String {
    format!("the file has {len} bytes, fewer than the 8-byte header length")
}

/// A sentence for a safetensors parse error (the crate's own `Display` prints variant names).
fn describe(e: safetensors::SafeTensorError, file_len: u64) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeader => "the header is not valid UTF-8".into(),
        E::InvalidHeaderStart => "the header does not start with `{`".into(),
        E::InvalidHeaderDeserialization | E::JsonError(_) => {
            "the header is not the expected JSON (a map of tensor name to dtype, shape and data_offsets)".into()
        }
        E::HeaderTooLarge => "the header length prefix is absurdly large (over 100 MB)".into(),
        E::HeaderTooSmall => "the header is shorter than 8 bytes".into(),
        E::InvalidHeaderLength => {
            format!("the header length prefix points past the end of the file ({file_len} bytes)")
        }
        E::TensorNotFound(name) => format!("tensor `{name}` not found"),
        E::TensorInvalidInfo => {
            "a tensor's shape and dtype do not match the size of its data_offsets".into()
        }
        E::InvalidOffset(name) => format!(
            "the data_offsets of tensor `{name}` are invalid (overlapping, out of order or past the data)"
        ),
        E::IoError(e) => e.to_string(),
        E::InvalidTensorView(dtype, shape, len) => {
            format!("{len} bytes do not hold a {dtype:?} tensor of shape {shape:?}")
        }
        E::MetadataIncompleteBuffer => format!(
            "the tensors' data_offsets do not cover exactly the bytes after the header (the file \
             has {file_len} bytes): it is truncated, or has trailing bytes"
        ),
        E::ValidationOverflow => "a tensor's shape or data_offsets overflow".into(),
    }
}

/// Write `tensors` to `path` atomically (temporary file + rename).
pub fn write_safetensors(path: impl AsRef<Path>, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            safetensors::tensor::TensorView::new(t.dtype().to_st(), t.dims().to_vec(), t.bytes())
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, &None)
        .map_err(|e| Error::invalid(format!("serializing {}: {e}", path.display())))?;
    write_file_atomic(path, |w| {
        w.write_all(&bytes).map_err(|e| Error::io(path, e))
    })
}

/// Create `path` through a temporary file in the same folder, renamed into place only when
/// `fill` succeeds; on any error nothing is left at `path` (nor a temporary file). The file is
/// written by an [`OutputFile`] (direct writes where the filesystem allows) and synced before
/// the rename.
pub fn write_file_atomic(
    path: impl AsRef<Path>,
    fill: impl FnOnce(&mut OutputFile) -> Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let name = path.file_name().ok_or_else(|| {
        Error::invalid(format!("output path `{}` has no file name", path.display()))
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the output folder does not exist",
            ),
        ));
    }
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut w = OutputFile::create(&tmp, WriteMode::Direct).map_err(|e| Error::io(&tmp, e))?;
        fill(&mut w)?;
        let file = w.finish().map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::expect_err;
    use half::f16;

    #[test]
    fn write_then_read_borrows_the_map() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let a = Tensor::from_slice([2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::from_slice([3], &[f16::ONE, f16::ZERO, f16::NEG_ONE]).unwrap();
        write_safetensors(&p, &[("a", &a), ("b", &b)]).unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        assert_eq!(f.names().collect::<Vec<_>>(), ["a", "b"]);
        let ra = f.get("a").unwrap();
        assert!(ra.is_mapped());
        assert_eq!(ra.as_slice::<f32>().unwrap(), a.as_slice::<f32>().unwrap());
        assert_eq!(f.get("b").unwrap().dtype(), DType::F16);
        let err = f.get("c").unwrap_err().to_string();
        assert!(
            err.contains("`c` not found") && err.contains("a, b"),
            "{err}"
        );
    }

    /// `bytes` at an address `offset` bytes past an 8-byte boundary, for the program's lifetime.
    fn leak_at(bytes: &[u8], offset: usize) -> &'static [u8] {
        let words: &'static mut [u64] = Vec::leak(vec![0u64; (bytes.len() + offset).div_ceil(8)]);
        let all: &'static mut [u8] = bytemuck::cast_slice_mut(words);
        all[offset..offset + bytes.len()].copy_from_slice(bytes);
        &all[offset..offset + bytes.len()]
    }

    #[test]
    fn static_bytes_read_like_the_file_and_are_borrowed_when_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let b = Tensor::from_slice([3], &[f16::ONE, f16::ZERO, f16::NEG_ONE]).unwrap();
        write_safetensors(&p, &[("b", &b)]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        // (byte offset of the file, whether its f16 data can be borrowed in place)
        for (offset, borrowed) in [(0, true), (2, true), (1, false)] {
            let f = SafetensorsFile::from_static("embedded", leak_at(&bytes, offset)).unwrap();
            let t = f.get("b").unwrap();
            assert_eq!(t.is_mapped(), borrowed, "offset {offset}");
            assert_eq!(t.as_slice::<f16>().unwrap(), b.as_slice::<f16>().unwrap());
        }
        // Bad bytes get the file's messages, naming the given path.
        for (bytes, words) in [
            (&bytes[..5], "fewer than the 8-byte header"),
            (&bytes[..bytes.len() - 1], "truncated"),
        ] {
            let err = SafetensorsFile::from_static("embedded", leak_at(bytes, 0))
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("embedded") && err.contains(words), "{err}");
        }
    }

    /// A safetensors file of float64 tensors, as model2vec writes them.
    fn write_f64(path: &Path, tensors: &[(&str, Vec<usize>, &[f64])]) {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .iter()
            .map(|(n, s, v)| {
                (
                    n.to_string(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    s.clone(),
                )
            })
            .collect();
        let views: Vec<_> = bytes
            .iter()
            .map(|(n, b, s)| {
                let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F64, s.clone(), b);
                (n.clone(), v.unwrap())
            })
            .collect();
        std::fs::write(path, safetensors::serialize(views, &None).unwrap()).unwrap();
    }

    #[test]
    fn float64_tensors_are_read_as_f32() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let table = [0.1f64, -2.5, 1e-30, f64::NAN, f64::INFINITY, 3.0e38];
        write_f64(
            &p,
            &[
                ("embeddings", vec![2, 3], &table),
                ("weights", vec![1], &[0.5]),
            ],
        );
        let f = SafetensorsFile::open(&p).unwrap();
        let t = f.get("embeddings").unwrap();
        assert_eq!((t.dtype(), t.dims()), (DType::F32, &[2, 3][..]));
        let got = t.as_slice::<f32>().unwrap();
        for (g, w) in got.iter().zip(table) {
            assert!(
                g.to_bits() == (w as f32).to_bits() || (g.is_nan() && w.is_nan()),
                "{g} {w}"
            );
        }
        assert_eq!(f.get("weights").unwrap().as_slice::<f32>().unwrap(), [0.5]);

        write_f64(&p, &[("embeddings", vec![2], &[1.0, 1e39])]);
        let e = SafetensorsFile::open(&p)
            .unwrap()
            .get("embeddings")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`embeddings`") && e.contains("index 1") && e.contains("f32 range"),
            "{e}"
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[u8])] = &[
            ("empty", b""),
            ("short", b"\x01\x02"),
            (
                "absurd_header",
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, b'{'],
            ),
            ("not_json", b"\x04\x00\x00\x00\x00\x00\x00\x00abcd"),
        ];
        for (name, bytes) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = SafetensorsFile::open(&p)
                .err()
                .unwrap_or_else(|| panic!("{name} opened"));
            assert!(matches!(e, Error::Safetensors { .. }), "{name}: {e}");
        }
        assert!(matches!(
            SafetensorsFile::open(dir.path().join("missing")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn atomic_write_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        let r = write_file_atomic(&p, |_| Err(Error::invalid("boom")));
        // The closure's own error comes back unchanged.
        expect_err(
            r,
            |e| matches!(e, Error::InvalidArgument(m) if m == "boom"),
            &["boom"],
        );

        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = dir.path().join("nope").join("out.bin");
        assert!(matches!(
            write_file_atomic(&missing, |_| Ok(())),
            Err(Error::Io { .. })
        ));
    }
}
