//! Arbitrary bytes as the text input of `stk encode`: the line reader and the streaming JSON
//! reader must return the texts or an `Error`, never panic, and must agree with a plain
//! reference (`str::lines` over the whole input; `serde_json::from_slice::<Vec<String>>`).
//!
//! Input layout: byte 0 chooses the reader (bit 0: JSON) and the batch size (bits 1-3, plus
//! one); the rest is the input file.
#![no_main]
#![deny(unsafe_code)]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use stk::text_io::{for_each_json_batch, for_each_line_batch};
use stk_core::Error;

/// The lines the reader must give (`Ok`), or the 1-based number of the first line that is not
/// UTF-8 (`Err`).
fn reference_lines(data: &[u8]) -> Result<Vec<String>, usize> {
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    // A final newline does not start another line; an empty input has no line.
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    let ends_with_newline = data.last() == Some(&b'\n');
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            // `\r\n` ends a line; a `\r` at the very end of the input (no `\n`) is kept.
            let has_newline = i + 1 < n || ends_with_newline;
            let piece = match piece.strip_suffix(b"\r") {
                Some(p) if has_newline => p,
                _ => piece,
            };
            std::str::from_utf8(piece)
                .map(str::to_owned)
                .map_err(|_| i + 1)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let json = selector & 1 == 1;
    let batch_size = usize::from((selector >> 1) & 7) + 1;
    let path = Path::new("fuzz-input");
    let mut got: Vec<String> = Vec::new();
    let mut on_batch = |batch: &[&str], _consumed: u64| -> stk_core::Result<()> {
        assert!(
            !batch.is_empty() && batch.len() <= batch_size,
            "batch of {}",
            batch.len()
        );
        got.extend(batch.iter().map(|s| s.to_string()));
        Ok(())
    };
    if json {
        let result = for_each_json_batch(input, path, batch_size, &mut on_batch);
        match (result, serde_json::from_slice::<Vec<String>>(input)) {
            (Ok(n), Ok(want)) => {
                assert_eq!(n as usize, want.len());
                assert_eq!(got, want);
            }
            (Err(e), Err(_)) => assert!(matches!(e, Error::Config { .. }), "{e}"),
            (Ok(n), Err(e)) => panic!("streaming reader accepted {n} texts, from_slice: {e}"),
            (Err(e), Ok(want)) => panic!("streaming reader refused {} texts: {e}", want.len()),
        }
    } else {
        let result = for_each_line_batch(input, path, batch_size, &mut on_batch);
        match (result, reference_lines(input)) {
            (Ok(n), Ok(want)) => {
                assert_eq!(n as usize, want.len());
                assert_eq!(got, want);
            }
            (Err(Error::InvalidUtf8 { line, .. }), Err(want_line)) => {
                assert_eq!(line, want_line);
                // Every line before the bad one was handed over, batch by batch.
                assert!(got.len() < want_line);
            }
            (r, want) => panic!("line reader gave {r:?}, reference {want:?}"),
        }
    }
});
