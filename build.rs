//! Build script: generates the C header into OUT_DIR (never into the source tree; the committed
//! `include/metafed.h` is compared with it by `tests/header.rs`), and gives the shared library a
//! soname.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rustc-check-cfg=cfg(loom)");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,-soname,libmetafed.so.{}",
            env::var("CARGO_PKG_VERSION_MAJOR").unwrap()
        );
    }
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("metafed.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    // Parse only the C ABI module: the header must not depend on the rest of the crate.
    match cbindgen::Builder::new().with_config(config).with_src(crate_dir.join("src/ffi/mod.rs")).generate() {
        Ok(bindings) => {
            bindings.write_to_file(&out);
        }
        Err(e) => panic!("cbindgen could not generate the header: {e}"),
    }
}
