#![no_main]
//! The C ABI driven by sequences of calls decoded from the input.

use libfuzzer_sys::fuzz_target;

include!("../harness/c_abi.rs");

fuzz_target!(|data: &[u8]| {
    fuzz_c_abi(data);
});
