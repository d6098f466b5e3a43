// The TOML loaders, fed any bytes: `TopologyBuilder::from_toml` (and building what it accepts)
// and `EngineConfig::from_toml` must return a value or an error, never panic, whatever the text.
// Shared by the cargo-fuzz target `toml` and by the C library crate's tests (`bindings/c/tests/fuzz_corpus.rs`), which replay the corpus.

pub fn fuzz_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(builder) = metafed_rs::TopologyBuilder::from_toml(text) {
        let _ = builder.build();
    }
    let _ = metafed_rs::EngineConfig::from_toml(text);
    // The C entry point parses the same text behind a NUL-terminated string.
    if let Ok(c) = std::ffi::CString::new(text) {
        let mut topo = std::ptr::null_mut();
        if metafed_c::metafed_topology_new_from_toml(c.as_ptr(), &mut topo) == metafed_c::METAFED_OK {
            metafed_c::metafed_topology_free(topo);
        }
    }
}
