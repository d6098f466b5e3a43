//! `simulate --plot DIR`: the figures, as SVG, drawn with plotters.

use super::report::{Recovery, Report, Sweep};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

type Res<T> = Result<T, String>;
/// Picks one value of a sweep point.
type Pick = Box<dyn Fn(&Sweep) -> f64>;

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// Writes every figure into `dir`; returns their paths.
pub(super) fn figures(dir: &Path, r: &Report) -> Res<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("--plot {}: {e}", dir.display()))?;
    let mut out = vec![reliability(&dir.join("reliability-vs-error-rate.svg"), r)?];
    for rec in &r.recovery {
        out.push(recovery(&dir.join(format!("recovery-{}.svg", rec.level)), rec, r.offered_rps)?);
    }
    if !r.hedging.is_empty() {
        out.push(latency_cdf(&dir.join("latency-cdf-hedging.svg"), r)?);
    }
    Ok(out)
}

/// The tail of task latency (W3 in virtual time), without hedging and with it: the share of
/// tasks slower than each latency, both axes on a log scale (the tail is where hedging acts).
fn latency_cdf(path: &Path, r: &Report) -> Res<PathBuf> {
    const FLOOR: f64 = 1e-6;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max = r.hedging.iter().flat_map(|h| h.cdf.iter().map(|p| p.0)).fold(1.0f64, f64::max) * 1.5;
    let min = r.hedging.iter().flat_map(|h| h.cdf.iter().map(|p| p.0)).fold(max, f64::min).max(0.1) / 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Latency tail, W3 in virtual time at {:.0} tasks/s: without and with hedging", r.offered_rps),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((min..max).log_scale(), (FLOOR..1.0).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (us, log scale)")
        .y_desc("share of tasks slower (log scale)")
        .y_label_formatter(&|y: &f64| format!("{y:e}"))
        .draw()
        .map_err(err)?;
    for (h, color) in r.hedging.iter().zip([RED, BLUE]) {
        let label = format!("hedge: {} (p99.9 {:.0} us, {} extra calls)", h.hedge, h.p999_us, h.extra_calls);
        let style = color.stroke_width(3);
        // The share slower than x holds until the next recorded latency.
        let steps = step_line((min, 1.0), h.cdf.iter().map(|&(x, q)| (x.max(min), (1.0 - q).max(FLOOR))));
        chart
            .draw_series(LineSeries::new(steps, style))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    legend(&mut chart)?;
    root.present().map_err(err)?;
    Ok(path.to_path_buf())
}

/// A step line through `points` from `start`: each value holds until the next point.
fn step_line(start: (f64, f64), points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut steps = vec![start];
    for (x, y) in points {
        let last = steps.last().map_or(start.1, |p| p.1);
        steps.push((x, last));
        steps.push((x, y));
    }
    steps
}

/// The series' legend, upper right, on a white box.
fn legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>) -> Res<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// Reliability against the agents' error rate: single agent and 3 x 3 federation, measured and
/// modelled, beside the seed's claimed values: the crossover the seed's own table shows.
fn reliability(path: &Path, r: &Report) -> Res<PathBuf> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let xs: Vec<f64> = r.sweep.iter().map(|s| s.error_rate * 100.0).collect();
    let ys = r.sweep.iter().flat_map(|s| {
        [s.single.measured, s.federation.measured, s.federation.predicted, s.seed_claim_single, s.seed_claim_federation]
    });
    let (lo, hi) = ys.fold((1.0f64, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (x0, x1) = (xs.first().copied().unwrap_or(0.0) - 1.0, xs.last().copied().unwrap_or(30.0) + 1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption("Success against the agents' error rate (breakers off)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, (lo * 100.0 - 1.0)..(hi * 100.0 + 1.0))
        .map_err(err)?;
    chart.configure_mesh().x_desc("agent error rate (%)").y_desc("tasks that succeed (%)").draw().map_err(err)?;
    let series: [(&str, RGBColor, bool, Pick); 5] = [
        ("single agent, measured", BLUE, false, Box::new(|s| s.single.measured)),
        ("single agent, seed's table", BLUE, true, Box::new(|s| s.seed_claim_single)),
        ("3 x 3 federation, measured", RED, false, Box::new(|s| s.federation.measured)),
        ("3 x 3 federation, model", BLACK, true, Box::new(|s| s.federation.predicted)),
        ("3 x 3 federation, seed's table", RED, true, Box::new(|s| s.seed_claim_federation)),
    ];
    for (label, color, dashed, f) in series {
        let points: Vec<(f64, f64)> = r.sweep.iter().map(|s| (s.error_rate * 100.0, f(s) * 100.0)).collect();
        let style = if dashed { color.stroke_width(1) } else { color.stroke_width(3) };
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        if !dashed {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(err)?;
        }
    }
    legend(&mut chart)?;
    root.present().map_err(err)?;
    Ok(path.to_path_buf())
}

/// Success of the affected tasks per 10 ms, and the faulted component's breaker state, around
/// one injected fault (shaded).
fn recovery(path: &Path, rec: &Recovery, rate: f64) -> Res<PathBuf> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let end = rec.timeline.last().map_or(4.0, |p| p.0 + 0.01);
    let caption = format!("{} from {} s to {} s ({rate:.0} tasks/s, virtual time)", rec.fault, rec.from_s, rec.to_s);
    let (upper, lower) = root.split_vertically(400);
    let mut chart = ChartBuilder::on(&upper)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(30)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..end, 0.0..100.0)
        .map_err(err)?;
    chart.configure_mesh().y_desc("affected tasks that succeed (%)").draw().map_err(err)?;
    chart
        .draw_series(std::iter::once(Rectangle::new([(rec.from_s, 0.0), (rec.to_s, 100.0)], RED.mix(0.12).filled())))
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(rec.timeline.iter().map(|&(t, s)| (t, s * 100.0)), BLUE.stroke_width(2)))
        .map_err(err)?;
    let mut states = ChartBuilder::on(&lower)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..end, -0.1..1.1)
        .map_err(err)?;
    states
        .configure_mesh()
        .x_desc("virtual time (s)")
        .y_desc(format!("{} breaker", rec.level))
        .y_labels(3)
        .y_label_formatter(&|y: &f64| {
            match (y * 2.0).round() as i32 {
                0 => "closed",
                1 => "half-open",
                _ => "open",
            }
            .to_string()
        })
        .draw()
        .map_err(err)?;
    states
        .draw_series(std::iter::once(Rectangle::new([(rec.from_s, -0.1), (rec.to_s, 1.1)], RED.mix(0.12).filled())))
        .map_err(err)?;
    // A step line: each state holds until the next transition.
    let mut steps = step_line((0.0, 0.0), rec.states.iter().copied());
    let last = steps.last().map_or(0.0, |p| p.1);
    steps.push((end, last));
    states.draw_series(LineSeries::new(steps, BLACK.stroke_width(2))).map_err(err)?;
    root.present().map_err(err)?;
    Ok(path.to_path_buf())
}
