//! Large input files (see also `large_input.rs`, which bounds memory against a large output):
//! `stk encode` streams its input and output in batches, so its peak memory does
//! not grow with the size of the input. Each test generates a text file (one text per line, or
//! one JSON array), runs the binary on it and polls the child's `VmHWM` (peak resident set,
//! file-backed pages of the memory-mapped model included) in `/proc/<pid>/status` until it exits.
//!
//! The 200 MB cases run in CI (about 15 s each in a debug build). The 1 GB case is ignored by
//! default (1 GB of input and 0.6 GB of output in the temporary folder); run it with
//! `cargo test --release -p stk-cli --test large_input_files -- --ignored --nocapture`.

#[path = "../../../tests/lib.rs"]
#[allow(dead_code)]
mod golden;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use golden::repo_root;

/// int8 table `[2048, 128]`: the output is 512 bytes a text.
const MODEL: &str = "models/potion-base-8M-int8-vq2048-d128";
const DIM: u64 = 128;

/// Peak memory allowed for `stk encode`, whatever the input size. Measured: about 30 MB for
/// 200 MB and 1 GB inputs; 128 MB leaves room for allocator and thread-count differences while
/// staying below what holding a 200 MB input (or its 140 MB of output) would need.
const PEAK_LIMIT_KB: u64 = 128 * 1024;

/// Words the generated texts are made of (common English words the tokenizer knows, and a few
/// it splits into pieces).
const WORDS: [&str; 40] = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "an",
    "which",
    "were",
    "are",
    "this",
    "be",
    "or",
    "has",
    "had",
    "it",
    "not",
    "first",
    "also",
    "new",
    "one",
    "two",
    "embedding",
    "tokenization",
    "über",
    "naïve",
    "sentence-transformers",
    "2026",
    "🙂",
];

/// A small deterministic generator (xorshift64*), so that the input is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Write about `bytes` bytes of texts of 100 to 250 words to `path`, as lines or as one JSON
/// array of strings. Returns the number of texts.
fn generate(path: &Path, bytes: u64, json: bool) -> u64 {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut written, mut texts) = (0u64, 0u64);
    let mut line = String::new();
    if json {
        out.write_all(b"[").unwrap();
    }
    while written < bytes {
        line.clear();
        for i in 0..100 + rng.below(151) {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        }
        let text = if json {
            let sep = if texts > 0 { "," } else { "" };
            format!("{sep}{}", serde_json::to_string(&line).unwrap())
        } else {
            format!("{line}\n")
        };
        out.write_all(text.as_bytes()).unwrap();
        written += text.len() as u64;
        texts += 1;
    }
    if json {
        out.write_all(b"]").unwrap();
    }
    out.flush().unwrap();
    texts
}

/// `VmHWM` of a running process in kB, `None` once it has exited (or is a zombie).
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Run `stk args`, polling its peak memory. Returns (peak kB, wall time).
fn run_measured(args: &[&str]) -> (u64, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stk"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = peak_rss_kb(pid) {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "stk {args:?} failed: {stderr}");
    assert!(peak > 0, "never read the peak memory of pid {pid}");
    (peak, start.elapsed())
}

/// The `(rows, cols)` of an NPY 1.0 file's header, and its header length (read from the
/// file's first 64 KiB, not the whole output).
fn npy_shape(path: &Path) -> ((u64, u64), u64) {
    let mut head = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(path).unwrap(), 1 << 16),
        &mut head,
    )
    .unwrap();
    let (_, dims, rows) = stk_tests::npy_parts(&head);
    let &[n, d] = dims.as_slice() else {
        panic!("expected a 2-D array, got shape {dims:?}")
    };
    ((n as u64, d as u64), (head.len() - rows.len()) as u64)
}

/// Generate `bytes` of input, encode it, and check the output and the peak memory.
fn encode_large(bytes: u64, json: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp
        .path()
        .join(if json { "texts.json" } else { "texts.txt" });
    let output = tmp.path().join("embeddings.npy");
    let t = Instant::now();
    let texts = generate(&input, bytes, json);
    let generated = t.elapsed();
    let model = repo_root().join(MODEL);
    let (peak_kb, took) = run_measured(&[
        "encode",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--quiet",
    ]);
    let input_mb = std::fs::metadata(&input).unwrap().len() as f64 / 1e6;
    println!(
        "{input_mb:.0} MB of {} ({texts} texts, generated in {generated:.1?}): encoded in \
         {took:.1?}, peak RSS {:.1} MB",
        if json { "JSON" } else { "lines" },
        peak_kb as f64 / 1024.0
    );
    let ((rows, cols), header) = npy_shape(&output);
    assert_eq!((rows, cols), (texts, DIM));
    assert_eq!(
        std::fs::metadata(&output).unwrap().len(),
        header + texts * DIM * 4
    );
    assert!(
        peak_kb < PEAK_LIMIT_KB,
        "peak RSS {peak_kb} kB for {input_mb:.0} MB of input exceeds {PEAK_LIMIT_KB} kB: \
         the input or the output is not streamed"
    );
}

#[test]
fn encode_200mb_of_lines_in_bounded_memory() {
    encode_large(200_000_000, false);
}

#[test]
fn encode_200mb_json_array_in_bounded_memory() {
    encode_large(200_000_000, true);
}

#[test]
#[ignore = "1 GB of input and 0.6 GB of output in the temporary folder; run by hand in release"]
fn encode_1gb_of_lines_in_bounded_memory() {
    encode_large(1_000_000_000, false);
}
