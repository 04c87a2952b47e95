//! `unsafe` is allowed in exactly six places: the mmap of a safetensors file, the CUDA launch
//! module, the calls of its launch from stk-cuda's op files, the CPU's runtime-dispatched SIMD
//! module, the Python binding's numpy borrow and the C ABI's pointer handling. This test fails if the keyword appears in code
//! anywhere else in the repository, if an `unsafe` block in those files has no `// SAFETY:`
//! comment just above it, or if a library or binary crate root lacks `#![deny(unsafe_code)]`
//! (which makes the compiler refuse `unsafe` in every module of that crate that does not opt out
//! with `allow`).

use std::path::{Path, PathBuf};

use stk_tests::repo_root;

/// The only files where `unsafe` (and `allow(unsafe_code)`) may appear, relative to the root.
const ALLOWED: [&str; 5] = [
    "crates/stk-core/src/st.rs",  // the read-only mmap of safetensors files
    "crates/stk-cuda/src/sys.rs", // the CUDA launch module (cudarc kernel launches)
    "crates/stk-cpu/src/simd.rs", // calls of AVX2/F16C functions behind a runtime CPU check
    "crates/stk-python/src/arrays.rs", // numpy buffers borrowed as tensors
    "crates/stk-capi/src/ffi.rs", // C pointers turned into references (libstk)
];

/// The crate whose files may call the CUDA launch (an `unsafe fn`) and cudarc's raw API (its
/// graph-capture test), each call in an `unsafe` block under a `// SAFETY:` comment naming the
/// host checks that make it sound.
const ALLOWED_LAUNCH_CALLERS: &str = "crates/stk-cuda/";

fn allowed(relative_path: &str) -> bool {
    ALLOWED.contains(&relative_path) || relative_path.starts_with(ALLOWED_LAUNCH_CALLERS)
}

/// Lines (1-based) of `unsafe {` blocks with no `// SAFETY:` comment on the same line or in the
/// run of comment (and attribute) lines just above it.
fn blocks_without_safety_comment(src: &str) -> Vec<usize> {
    let lines: Vec<&str> = src.lines().collect();
    let code = code_only(src);
    let explained = |i: usize| {
        lines[i].contains("SAFETY:")
            || lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let l = l.trim_start();
                    l.starts_with("//") || l.starts_with("#[")
                })
                .any(|l| l.contains("SAFETY:"))
    };
    code.lines()
        .enumerate()
        .filter(|(_, l)| l.replace(' ', "").contains("unsafe{"))
        .map(|(i, _)| i)
        .filter(|&i| !explained(i))
        .map(|i| i + 1)
        .collect()
}

/// Folders never scanned: build outputs, fetched toolchains, fuzzing scratch space.
const SKIPPED_DIRS: [&str; 6] = [
    "target",
    ".git",
    ".cuda",
    "gpu-bundle",
    "corpus",
    "artifacts",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type().unwrap().is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// `src` with comments, string literals and char literals blanked out, so that a word found in
/// what is left is code.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if (rest.starts_with(b"r#") || rest.starts_with(b"r\""))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Raw string r#*"..."#*.
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                out.push(b[i] as char);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && (rest.get(2) == Some(&b'\'') || rest.get(1) == Some(&b'\\')) {
            // Char literal ('x' or an escape); lifetimes ('a) have no closing quote.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            // Copy one whole UTF-8 character.
            let len = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

fn has_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

#[test]
fn unsafe_appears_only_in_the_allowed_modules() {
    let mut files = Vec::new();
    rust_files(&repo_root(), &mut files);
    assert!(files.len() > 10, "found only {} Rust files", files.len());
    let offenders: Vec<String> = files
        .iter()
        .filter(|p| !allowed(&relative(p)))
        .filter(|p| {
            let code = code_only(&std::fs::read_to_string(p).unwrap());
            has_word(&code, "unsafe") || code.contains("allow(unsafe_code")
        })
        .map(|p| relative(p))
        .collect();
    assert!(
        offenders.is_empty(),
        "`unsafe` outside {ALLOWED:?}: {offenders:?}"
    );
}

#[test]
fn every_unsafe_block_says_why_it_is_sound() {
    let mut files = Vec::new();
    rust_files(&repo_root(), &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter(|p| allowed(&relative(p)))
        .flat_map(|p| {
            let lines = blocks_without_safety_comment(&std::fs::read_to_string(p).unwrap());
            lines
                .into_iter()
                .map(move |l| format!("{}:{l}", relative(p)))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "unsafe blocks without a `// SAFETY:` comment above them: {missing:?}"
    );
}

#[test]
fn a_block_without_a_safety_comment_is_found() {
    let src =
        "fn f() {\n    // SAFETY: checked above\n    unsafe { g() };\n    unsafe { h() };\n}\n";
    assert_eq!(blocks_without_safety_comment(src), [4]);
}

#[test]
fn every_crate_root_denies_unsafe_code() {
    let root = repo_root();
    let mut roots = Vec::new();
    for crate_dir in std::fs::read_dir(root.join("crates")).unwrap() {
        let crate_dir = crate_dir.unwrap().path();
        for file in ["src/lib.rs", "src/main.rs"] {
            if crate_dir.join(file).is_file() {
                roots.push(crate_dir.join(file));
            }
        }
        if let Ok(entries) = std::fs::read_dir(crate_dir.join("src/bin")) {
            roots.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    // The cargo-fuzz crate: each target is a binary crate root.
    if let Ok(entries) = std::fs::read_dir(root.join("fuzz").join("fuzz_targets")) {
        roots.extend(entries.map(|e| e.unwrap().path()));
    }
    for fixed in ["xtask/src/main.rs", "benches/lib.rs", "tests/lib.rs"] {
        roots.push(root.join(fixed));
    }
    roots.retain(|p| p.extension().is_some_and(|e| e == "rs"));
    roots.sort();
    roots.dedup();
    assert!(roots.len() >= 8, "found only {} crate roots", roots.len());
    let missing: Vec<String> = roots
        .iter()
        .filter(|p| {
            let code = code_only(&std::fs::read_to_string(p).unwrap());
            !code.replace(' ', "").contains("#![deny(unsafe_code)]")
        })
        .map(|p| relative(p))
        .collect();
    assert!(
        missing.is_empty(),
        "crate roots without #![deny(unsafe_code)]: {missing:?}"
    );
}

#[test]
fn the_scanner_sees_code_not_comments_or_strings() {
    let src = r##"
        // unsafe in a comment
        /* unsafe /* nested */ unsafe */
        let s = "unsafe { }"; let r = r#"unsafe"#; let c = '"'; let l: &'static str = "x";
        fn not_unsafe_fn() {}
    "##;
    assert!(!has_word(&code_only(src), "unsafe"), "{}", code_only(src));
    assert!(has_word(&code_only("let x = unsafe { f() };"), "unsafe"));
    assert!(has_word(
        &code_only("let c = 'a'; unsafe fn g() {}"),
        "unsafe"
    ));
}
