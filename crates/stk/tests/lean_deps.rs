//! A backend that adds the `stk` library to its Cargo.toml gets no command-line baggage:
//! `cargo tree -p stk -e normal` lists none of the crates only the `stk` binary and the tests
//! need.

use std::process::Command;

/// The library's normal dependency tree, one crate name per line.
fn normal_dependencies() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "tree",
            "-p",
            "stk",
            "-e",
            "normal",
            "--offline",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} tree: {e}"));
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn assert_absent(crates: &[&str]) {
    let deps = normal_dependencies();
    assert!(
        deps.iter().any(|d| d == "stk-core"),
        "unexpected tree: {deps:?}"
    );
    let found: Vec<&&str> = crates
        .iter()
        .filter(|c| deps.iter().any(|d| d == **c))
        .collect();
    assert!(found.is_empty(), "the stk library depends on {found:?}");
}

#[test]
fn the_library_pulls_no_command_line_or_test_crates() {
    assert_absent(&["clap", "indicatif", "tempfile"]);
}

/// rand reaches the library through stk-cuda's benchmark helpers (`stk_cuda::bench`); it
/// disappears when they move behind a cargo feature (issue 10). Until then this test fails.
#[test]
fn the_library_pulls_no_rand() {
    assert_absent(&["rand"]);
}
