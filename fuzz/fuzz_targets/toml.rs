#![no_main]
//! The TOML loaders (topology and `[engine]` settings) on any input.

use libfuzzer_sys::fuzz_target;

include!("../harness/toml.rs");

fuzz_target!(|data: &[u8]| fuzz_toml(data));
