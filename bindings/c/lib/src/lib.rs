//! libmetafed: every function of the C ABI (the `metafed-c` crate), exported from the shared and
//! the static library. The functions are `#[no_mangle] extern "C"`: linking the crate exports them.

pub use metafed_c::*;
