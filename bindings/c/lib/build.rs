//! Gives the shared library its soname, `libmetafed.so.MAJOR`, as an installed library has it,
//! and puts the soname's link beside the library in the build tree
//! (`target/release/libmetafed.so.1 -> libmetafed.so`), so that a C program linked in place,
//! `cc -Iinclude prog.c -Ltarget/release -lmetafed`, runs with
//! `LD_LIBRARY_PATH=target/release ./prog`: the loader looks for the soname.

use std::path::PathBuf;

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets it");
    let soname = format!("libmetafed.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // OUT_DIR is <target dir>/<profile>/build/<package>-<hash>/out: the library lands in
    // <target dir>/<profile>. (The link points at the file cargo writes there; it is made
    // before the library is linked, and resolves once it is.)
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let Some(dir) = out.ancestors().nth(3) else { return };
    let link = dir.join(&soname);
    if std::fs::read_link(&link).is_ok_and(|t| t == std::path::Path::new("libmetafed.so")) {
        return;
    }
    let _ = std::fs::remove_file(&link);
    #[cfg(unix)]
    if let Err(e) = std::os::unix::fs::symlink("libmetafed.so", &link) {
        println!("cargo:warning=could not make {}: {e}", link.display());
    }
}
