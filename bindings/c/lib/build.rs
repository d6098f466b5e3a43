//! Gives the shared library its soname, `libmetafed.so.MAJOR`, as an installed library has it.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets it");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmetafed.so.{major}");
    }
}
