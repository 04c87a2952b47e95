//! `stk encode` streams: its peak memory is bounded by one batch, not by the input or output
//! size. The output here (~150 MB) is larger than the memory the process may use.

#![cfg(target_os = "linux")]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "../../../tests/lib.rs"]
#[allow(dead_code)]
mod golden;

use golden::repo_root;
use stk::{LoadOptions, Model};

/// Peak resident memory (VmHWM) of a running process, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn memory_stays_bounded_by_the_batch() {
    const ROWS: usize = 300_000;
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("big.txt");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..ROWS {
            writeln!(w, "line {} of {}", i % 1000, i % 7).unwrap();
        }
    }
    let model = repo_root()
        .join("models")
        .join("potion-base-8M-int8-vq2048-d128");
    let output = tmp.path().join("big.npy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stk"))
        .args(["encode", "--quiet", "--batch-size", "4096", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        // VmHWM only grows: the last reading before exit is the peak (to within a poll).
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dim = 128;
    let len = std::fs::metadata(&output).unwrap().len();
    let bytes = std::fs::read(&output).unwrap();
    let (_, _, rows) = stk_tests::npy_parts(&bytes);
    assert_eq!(rows.len(), ROWS * dim * 4, "NPY size");
    let out_mib = len / (1 << 20);
    let peak_mib = peak / 1024;
    println!("output {out_mib} MiB, peak resident memory {peak_mib} MiB");
    assert!(peak > 0, "could not read the peak memory of the child");
    assert!(
        peak_mib < 100 && peak_mib < out_mib / 2,
        "peak {peak_mib} MiB for a {out_mib} MiB output"
    );

    // Spot-check rows against the library.
    let model = Model::load_with(&model, &LoadOptions::default()).unwrap();
    for i in [0usize, 4095, 4096, ROWS - 1] {
        let text = format!("line {} of {}", i % 1000, i % 7);
        let want = model.encode(&[text.as_str()]).unwrap();
        let start = i * dim * 4;
        let got: Vec<f32> = rows[start..start + dim * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, want.as_slice(), "row {i}");
    }
}
