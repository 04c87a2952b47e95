//! A new output file written front to back through an aligned staging buffer, in large blocks
//! that bypass the page cache where the filesystem allows it (Linux `O_DIRECT`).
//!
//! Why: `stk encode` writes hundreds of MB while every core encodes. Through the page cache each
//! byte is copied into freshly allocated cache pages by the writing thread (system time that
//! varied from 0.1 to 1 s for 0.5 GB on the 2-core test machine) and written back again at
//! the final fsync. A direct write hands aligned blocks to the device: the writer waits on the
//! disk without using a core. Where direct writes are refused (tmpfs, some network or
//! overlay filesystems, other systems) the same buffer is written through the page cache.
//!
//! The only seeks supported are the ones file formats with a header need: back to an earlier
//! position to rewrite bytes already written, and to the end. A rewrite of bytes already on
//! disk reads and rewrites the whole blocks they lie in.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};

/// Alignment and size unit of direct writes: the page size, a multiple of every common
/// logical block size (512 or 4096 bytes).
const BLOCK: usize = 4096;
/// Staging buffer: 2 MiB, large enough that one write call keeps the disk busy for about a
/// millisecond, small enough to add little to a stream's memory (`.jsonl` rows go through it).
const BUFFER_BLOCKS: usize = 512;

/// One aligned block of bytes (a `Vec` of them is an aligned byte buffer, without `unsafe`).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(4096))]
struct Block([u8; BLOCK]);

/// A growable array of `T` that starts at a block boundary, so that an [`OutputFile`] writes
/// its whole blocks straight from it (the encoder's rows go to the file without a copy).
pub struct AlignedVec<T: Pod> {
    blocks: Vec<Block>,
    len: usize,
    element: std::marker::PhantomData<T>,
}

impl<T: Pod> Default for AlignedVec<T> {
    fn default() -> Self {
        AlignedVec {
            blocks: Vec::new(),
            len: 0,
            element: std::marker::PhantomData,
        }
    }
}

impl<T: Pod> AlignedVec<T> {
    /// Make it `len` elements long. Elements past the old length hold zero, or what they held
    /// when it was longer before; the allocation only grows.
    pub fn resize(&mut self, len: usize) {
        let bytes = len * std::mem::size_of::<T>();
        if bytes > self.blocks.len() * BLOCK {
            self.blocks.resize(bytes.div_ceil(BLOCK), Block::zeroed());
        }
        self.len = len;
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        let bytes: &[u8] = bytemuck::cast_slice(&self.blocks);
        bytemuck::cast_slice(&bytes[..self.len * std::mem::size_of::<T>()])
    }

    /// The elements, writable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.blocks);
        bytemuck::cast_slice_mut(&mut bytes[..self.len * std::mem::size_of::<T>()])
    }
}

/// How an [`OutputFile`] reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Direct (page-cache bypassing) writes where the filesystem accepts them, else buffered.
    Direct,
    /// Through the page cache.
    Buffered,
}

/// A file being created: `Write` + `Seek` (see the module docs for the seeks allowed); its
/// bytes reach the file by [`OutputFile::finish`], at the latest.
pub struct OutputFile {
    sink: Sink,
    /// Bytes `[flushed, flushed + filled)` of the file, not yet written.
    buf: Vec<Block>,
    filled: usize,
    /// Bytes of the file already written (a multiple of [`BLOCK`] when direct).
    flushed: u64,
    /// Where the next write goes.
    cursor: u64,
}

impl OutputFile {
    /// Create (or truncate) `path`, direct where `mode` asks and the filesystem allows.
    pub fn create(path: &Path, mode: WriteMode) -> io::Result<OutputFile> {
        let (file, direct) = match mode {
            WriteMode::Direct => match open_direct(path) {
                Ok(file) => (file, true),
                Err(_) => (File::create(path)?, false),
            },
            WriteMode::Buffered => (File::create(path)?, false),
        };
        Ok(OutputFile {
            sink: Sink {
                file,
                path: path.to_path_buf(),
                direct,
            },
            buf: vec![Block::zeroed(); BUFFER_BLOCKS],
            filled: 0,
            flushed: 0,
            cursor: 0,
        })
    }

    /// Write what is left, set the file's length, and return the file (not yet synced).
    pub fn finish(mut self) -> io::Result<File> {
        let len = self.end();
        let mut tail = self.filled;
        if self.sink.direct {
            // A direct write is whole blocks: pad the last one, then cut the file to length.
            tail = self.filled.next_multiple_of(BLOCK);
            let filled = self.filled;
            self.bytes_mut()[filled..tail].fill(0);
        }
        self.write_buffer(tail)?;
        self.sink.file.set_len(len)?;
        Ok(self.sink.file)
    }

    fn end(&self) -> u64 {
        self.flushed + self.filled as u64
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.buf)
    }

    /// Write the first `len` bytes of the buffer at `flushed`.
    fn write_buffer(&mut self, len: usize) -> io::Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(&self.buf);
        self.sink.write_at(&bytes[..len], self.flushed)
    }

    /// Write the buffer's bytes and start an empty buffer after them.
    fn flush_buffer(&mut self) -> io::Result<()> {
        self.write_buffer(self.filled)?;
        self.flushed += self.filled as u64;
        self.filled = 0;
        Ok(())
    }

    /// Write the whole blocks at the start of `data` straight from it, when that is a direct
    /// write: `data` is aligned, the cursor is at the end, and the buffer holds whole blocks
    /// (written first). Returns the bytes written (0 when it is not such a write).
    fn write_blocks_in_place(&mut self, data: &[u8]) -> io::Result<usize> {
        let blocks = data.len() / BLOCK * BLOCK;
        if !self.sink.direct
            || blocks == 0
            || data.as_ptr().align_offset(BLOCK) != 0
            || self.cursor != self.end()
            || self.filled % BLOCK != 0
        {
            return Ok(0);
        }
        self.flush_buffer()?;
        self.sink.write_at(&data[..blocks], self.flushed)?;
        self.flushed += blocks as u64;
        self.cursor = self.flushed;
        Ok(blocks)
    }

    /// Rewrite bytes already written (`at + data.len() <= flushed`).
    fn rewrite_flushed(&mut self, data: &[u8], at: u64) -> io::Result<()> {
        if !self.sink.direct {
            return write_all_at(&self.sink.file, data, at);
        }
        let first = at / BLOCK as u64 * BLOCK as u64;
        let last = (at + data.len() as u64).next_multiple_of(BLOCK as u64);
        let mut blocks = vec![Block::zeroed(); ((last - first) / BLOCK as u64) as usize];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut blocks);
        read_exact_at(&self.sink.file, bytes, first)?;
        let offset = (at - first) as usize;
        bytes[offset..offset + data.len()].copy_from_slice(data);
        write_all_at(&self.sink.file, bytes, first)
    }
}

impl Write for OutputFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.cursor < self.flushed {
            let n = data.len().min((self.flushed - self.cursor) as usize);
            self.rewrite_flushed(&data[..n], self.cursor)?;
            self.cursor += n as u64;
            return Ok(n);
        }
        let in_place = self.write_blocks_in_place(data)?;
        if in_place > 0 {
            return Ok(in_place);
        }
        let capacity = self.buf.len() * BLOCK;
        let mut start = (self.cursor - self.flushed) as usize;
        if start == capacity {
            // The cursor is at the end of a full buffer.
            self.flush_buffer()?;
            start = 0;
        }
        let n = data.len().min(capacity - start);
        self.bytes_mut()[start..start + n].copy_from_slice(&data[..n]);
        self.filled = self.filled.max(start + n);
        self.cursor += n as u64;
        Ok(n)
    }

    /// Nothing: the buffer reaches the file when it is full, and at [`OutputFile::finish`]
    /// (a direct write cannot end in the middle of a block).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for OutputFile {
    /// Anywhere from the start to the end of what is written; not past the end.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let end = self.end();
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => end.checked_add_signed(d),
            SeekFrom::Current(d) => self.cursor.checked_add_signed(d),
        };
        match target {
            Some(n) if n <= end => {
                self.cursor = n;
                Ok(n)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an output file is only sought within what is written",
            )),
        }
    }
}

/// The file an [`OutputFile`] writes, and how.
struct Sink {
    file: File,
    path: PathBuf,
    /// Whether `file` was opened for direct writes.
    direct: bool,
}

impl Sink {
    /// Write `data` at `at`; a direct write the filesystem refuses is retried buffered (and the
    /// file stays buffered).
    fn write_at(&mut self, data: &[u8], at: u64) -> io::Result<()> {
        match write_all_at(&self.file, data, at) {
            Err(e) if self.direct && e.kind() == io::ErrorKind::InvalidInput => {
                self.file = File::options().write(true).open(&self.path)?;
                self.direct = false;
                write_all_at(&self.file, data, at)
            }
            result => result,
        }
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .write(true)
        .read(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(unix)]
fn write_all_at(file: &File, data: &[u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, at)
}

#[cfg(unix)]
fn read_exact_at(file: &File, data: &mut [u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, data, at)
}

#[cfg(not(unix))]
fn write_all_at(mut file: &File, data: &[u8], at: u64) -> io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.write_all(data)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &File, data: &mut [u8], at: u64) -> io::Result<()> {
    use std::io::Read;
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One step of writing a file: append bytes, or go back and rewrite some.
    #[derive(Debug, Clone)]
    enum Step {
        Append(usize),
        Rewrite { at_fraction: f64, len: usize },
    }

    /// Run `steps` on an `OutputFile` and on a `Vec`, and compare the files' bytes.
    fn check(steps: &[Step], mode: WriteMode) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let mut file = OutputFile::create(&path, mode).unwrap();
        let mut want: Vec<u8> = Vec::new();
        let mut next = 1u8;
        let mut bytes = |len: usize| {
            (0..len)
                .map(|_| {
                    next = next.wrapping_mul(31).wrapping_add(7);
                    next
                })
                .collect::<Vec<u8>>()
        };
        for step in steps {
            match *step {
                Step::Append(len) => {
                    let data = bytes(len);
                    file.seek(SeekFrom::End(0)).unwrap();
                    file.write_all(&data).unwrap();
                    want.extend_from_slice(&data);
                }
                Step::Rewrite { at_fraction, len } => {
                    let at = (want.len() as f64 * at_fraction) as usize;
                    let data = bytes(len.min(want.len() - at));
                    file.seek(SeekFrom::Start(at as u64)).unwrap();
                    file.write_all(&data).unwrap();
                    want[at..at + data.len()].copy_from_slice(&data);
                }
            }
        }
        file.finish().unwrap().sync_all().unwrap();
        assert!(std::fs::read(&path).unwrap() == want, "{steps:?} {mode:?}");
    }

    const MIB: usize = 1 << 20;

    #[test]
    fn header_rewritten_after_rows_as_encode_does() {
        let cases: &[&[Step]] = &[
            &[],
            &[Step::Append(1)],
            &[Step::Append(128), Step::Append(3 * MIB + 5)],
            // Past the buffer, then a header rewrite on disk and an append after it.
            &[
                Step::Append(128),
                Step::Append(BUFFER_BLOCKS * BLOCK + MIB),
                Step::Rewrite {
                    at_fraction: 0.0,
                    len: 128,
                },
                Step::Append(77),
            ],
            // A rewrite across a block boundary of bytes already on disk.
            &[
                Step::Append(20 * MIB + 3),
                Step::Rewrite {
                    at_fraction: 0.1,
                    len: 3 * BLOCK + 5,
                },
            ],
            // Exactly the buffer.
            &[Step::Append(BUFFER_BLOCKS * BLOCK)],
        ];
        for steps in cases {
            for mode in [WriteMode::Direct, WriteMode::Buffered] {
                check(steps, mode);
            }
        }
    }

    #[test]
    fn seeking_past_the_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = OutputFile::create(&dir.path().join("o"), WriteMode::Direct).unwrap();
        file.write_all(b"abc").unwrap();
        assert!(file.seek(SeekFrom::Start(4)).is_err());
        assert!(file.seek(SeekFrom::End(-4)).is_err());
        assert_eq!(file.seek(SeekFrom::End(-1)).unwrap(), 2);
    }

    #[test]
    fn aligned_rows_go_to_the_file_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.bin");
        let mut rows = AlignedVec::<f32>::default();
        rows.resize(3 * BLOCK + 10);
        assert_eq!(rows.as_slice().as_ptr().align_offset(BLOCK), 0);
        rows.as_mut_slice()
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as f32);
        let mut file = OutputFile::create(&path, WriteMode::Direct).unwrap();
        let header = [7u8; BLOCK];
        file.write_all(&header).unwrap();
        let bytes: &[u8] = bytemuck::cast_slice(rows.as_slice());
        file.write_all(bytes).unwrap();
        file.write_all(bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(b"head").unwrap();
        file.finish().unwrap();
        let mut want = [b"head", &header[4..]].concat();
        want.extend_from_slice(bytes);
        want.extend_from_slice(bytes);
        assert!(std::fs::read(&path).unwrap() == want);
        // Shrinking keeps the values, growing adds zeros.
        rows.resize(2);
        assert_eq!(rows.as_slice(), [0.0, 1.0]);
        rows.resize(5 * BLOCK);
        assert_eq!(rows.as_slice()[..3], [0.0, 1.0, 2.0]);
        assert_eq!(rows.as_slice()[5 * BLOCK - 1], 0.0);
    }

    /// A direct write the filesystem refuses (here: from an unaligned buffer, which direct
    /// I/O never takes) is done buffered, and the file stays buffered. Where the filesystem
    /// refuses direct I/O already at open, the file is buffered from the start.
    #[test]
    fn a_refused_direct_write_falls_back_to_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let Ok(file) = open_direct(&path) else {
            let output = OutputFile::create(&path, WriteMode::Direct).unwrap();
            assert!(!output.sink.direct);
            return;
        };
        let mut sink = Sink {
            file,
            path: path.clone(),
            direct: true,
        };
        let block = vec![Block([7; BLOCK]); 2];
        let bytes: &[u8] = bytemuck::cast_slice(&block);
        sink.write_at(&bytes[1..BLOCK + 1], 0).unwrap();
        assert!(!sink.direct);
        assert_eq!(std::fs::read(&path).unwrap(), [7; BLOCK]);
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => prop_oneof![1usize..64, 1usize..3 * MIB].prop_map(Step::Append),
            1 => (0.0..1.0f64, 1usize..3 * BLOCK)
                .prop_map(|(at_fraction, len)| Step::Rewrite { at_fraction, len }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_appends_and_rewrites(steps in prop::collection::vec(step(), 0..12)) {
            check(&steps, WriteMode::Direct);
        }
    }
}
