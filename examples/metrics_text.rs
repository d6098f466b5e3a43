//! Prints an engine's metrics after a short run (OpenMetrics text): `cargo run --release
//! --example metrics_text`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = metafed::Engine::start(metafed::Topology::seed(0.12)?, metafed::EngineConfig::default())?;
    let _ = metafed_bench::driver::closed_loop(&engine, &metafed_bench::driver::Load::w1(100_000), |_| {});
    print!("{}", engine.metrics_text());
    Ok(())
}
