//! The committed C header is exactly what the pinned cbindgen generates from this crate (the
//! build script writes it to OUT_DIR), and its version macros match Cargo.toml.
//!
//! After changing the C ABI: `METAFED_BLESS_HEADER=1 cargo test --release -p metafed-c`.

use super::*;
use std::ffi::CStr;

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/metafed.h"));
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/metafed.h");
const GENERATED_CDEF: &str = include_str!(concat!(env!("OUT_DIR"), "/metafed_cdef.h"));
const COMMITTED_CDEF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../python/metafed/_cdef.h");

fn check_generated(path: &str, generated: &str) {
    if std::env::var_os("METAFED_BLESS_HEADER").is_some() {
        std::fs::write(path, generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "{path} differs from what cbindgen generates (first difference at line {}); \
             regenerate it with METAFED_BLESS_HEADER=1 cargo test --release -p metafed-c",
            line + 1
        );
    }
}

#[test]
fn the_committed_header_is_up_to_date() {
    check_generated(COMMITTED, GENERATED);
}

#[test]
fn the_python_cdef_is_up_to_date_and_plain() {
    check_generated(COMMITTED_CDEF, GENERATED_CDEF);
    for forbidden in ["#include", "#ifndef", "#ifdef", "#endif", "extern \"C\""] {
        assert!(!GENERATED_CDEF.contains(forbidden), "the cdef must be plain C declarations: found {forbidden}");
    }
}

#[test]
fn version_macros_match_cargo_toml() {
    let v = |name: &str| -> u32 {
        let line = GENERATED
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(v("METAFED_VERSION_MAJOR").to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
    assert_eq!(v("METAFED_VERSION_MINOR").to_string(), env!("CARGO_PKG_VERSION_MINOR"));
    assert_eq!(v("METAFED_VERSION_PATCH").to_string(), env!("CARGO_PKG_VERSION_PATCH"));
    // SAFETY: metafed_version returns a static NUL-terminated string.
    let s = unsafe { CStr::from_ptr(metafed_version()) };
    assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn every_status_has_a_name() {
    for code in METAFED_OK..=METAFED_E_ABANDONED {
        // SAFETY: static NUL-terminated strings.
        let s = unsafe { CStr::from_ptr(metafed_status_str(code)) }.to_str().unwrap();
        assert_ne!(s, "unknown status", "status {code}");
    }
    // SAFETY: as above.
    assert_eq!(unsafe { CStr::from_ptr(metafed_status_str(999)) }.to_str().unwrap(), "unknown status");
}
