//! Arbitrary bytes as a safetensors file: opening it and reading every tensor it lists, in
//! every way the library offers, must give tensors or an `Error`, never a panic.
#![no_main]
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stk_core::{DType, SafetensorsFile};

/// One scratch file per fuzzing process (the target runs inputs one after the other).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("fuzz.safetensors");
        (dir, path)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write scratch file");
    let Ok(file) = SafetensorsFile::open(path) else {
        return;
    };
    let names: Vec<String> = file.names().map(String::from).collect();
    for name in &names {
        let t = file.get(name).expect("a listed tensor is readable");
        assert_eq!(t.bytes().len(), t.numel() * t.dtype().size_in_bytes());
        let _ = t.to_f32_vec();
        let _ = t.to_i64_vec();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let _ = t.to_dtype(dtype);
        }
    }
    if !file.contains("absent") {
        let _ = file
            .get("absent")
            .expect_err("a tensor the file does not list");
    }
});
