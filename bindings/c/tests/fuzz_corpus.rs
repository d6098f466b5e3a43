//! The fuzz targets' harnesses (`fuzz/harness/`) over the committed corpus (`fuzz/corpus/`), on
//! stable Rust in every `cargo test`: whatever libFuzzer once found and we kept stays fixed.
//! Fuzzing itself needs nightly and cargo-fuzz (see docs/verification.md).

#![cfg(not(miri))]

use std::path::Path;

mod toml_harness {
    include!("../../../fuzz/harness/toml.rs");
}
mod c_abi_harness {
    include!("../../../fuzz/harness/c_abi.rs");
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    for path in inputs {
        let data = std::fs::read(&path).unwrap();
        eprintln!("{target}: {}", path.display());
        run(&data);
    }
}

#[test]
fn the_toml_loaders_take_every_corpus_input() {
    replay("toml", toml_harness::fuzz_toml);
}

#[test]
fn the_c_abi_takes_every_corpus_sequence() {
    replay("c_abi", |data| {
        c_abi_harness::fuzz_c_abi(data);
    });
}

/// The hand-written seed decodes as intended: an engine started, tasks submitted and answered,
/// then use after shutdown and after free (so the harness is not quietly doing nothing).
#[test]
fn the_lifecycle_seed_drives_an_engine() {
    let data = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/c_abi/lifecycle")).unwrap();
    let sum = c_abi_harness::fuzz_c_abi(&data);
    assert_eq!((sum.engines, sum.submitted), (1, 3), "{sum:?}");
    assert!(sum.ok >= 12 && sum.ok < sum.calls, "{sum:?}");
}
