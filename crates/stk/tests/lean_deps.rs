//! A backend that adds the `stk` library to its Cargo.toml gets no command-line baggage:
//! `cargo tree -p stk -e normal` lists none of the crates only the `stk` binary and the tests
//! need.

use std::process::Command;

/// `cargo tree -p stk -e normal --offline --prefix none --format {p}` with `extra` arguments:
/// one crate per line, its name first.
fn tree(extra: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["tree", "-p", "stk", "-e", "normal", "--offline"])
        .args(["--prefix", "none", "--format", "{p}"])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} tree: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The library's normal dependency tree, one crate name per line.
fn normal_dependencies() -> Vec<String> {
    tree(&[])
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

/// No stk crate of the library depends on rand itself (the benchmark helpers that did sit behind
/// stk-cuda's `bench` feature, which only the binary enables). rand still arrives one level
/// further down, which stk cannot change: the `tokenizers` crate depends on it unconditionally
/// (BPE dropout), and `half` with cudarc's `f16` feature (its `rand_distr` support).
#[test]
fn no_stk_crate_of_the_library_depends_on_rand() {
    // rand, then the crates that depend on it directly (nothing when rand is not in the tree).
    let dependents = tree(&["-i", "rand", "--depth", "1"]);
    let ours: Vec<&String> = dependents
        .iter()
        .skip(1)
        .filter(|d| d.starts_with("stk"))
        .collect();
    assert!(
        ours.is_empty(),
        "stk crates depending on rand: {ours:?} (all: {dependents:?})"
    );
}
