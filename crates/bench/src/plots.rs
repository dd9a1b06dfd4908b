//! PNG plots with plotters (text through ab_glyph and a DejaVu font file:
//! Debian's fonts-dejavu-core, installed by scripts/install-deps.sh).

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::error::{Error, Result};
use crate::report::ProfileResult;

const FONT_CANDIDATES: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Register the font plotters draws text with: `$KE_BENCH_FONT` or DejaVu
/// Sans from the usual places.
pub fn register() -> Result<()> {
    let candidates: Vec<PathBuf> = std::env::var_os("KE_BENCH_FONT")
        .map(PathBuf::from)
        .into_iter()
        .chain(FONT_CANDIDATES.iter().map(PathBuf::from))
        .collect();
    let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| Error::Plot {
        path: PathBuf::from(FONT_CANDIDATES[0]),
        message: "no TrueType font found: install fonts-dejavu-core (scripts/install-deps.sh) or set KE_BENCH_FONT".into(),
    })?;
    let bytes = std::fs::read(path).map_err(|e| Error::Plot {
        path: path.clone(),
        message: e.to_string(),
    })?;
    // plotters keeps the font for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| Error::Plot {
        path: path.clone(),
        message: "not a usable TrueType font".into(),
    })
}

fn plot_err(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |message| Error::Plot {
        path: path.to_path_buf(),
        message,
    }
}

/// The white 900×500 image every plot is drawn on.
fn canvas<'a>(
    path: &'a Path,
    e: &impl Fn(String) -> Error,
) -> Result<DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    Ok(root)
}

/// The layout every plot shares (title, margins, label areas).
fn layout<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    caption: &str,
) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55);
    builder
}

/// Draw the grid and axes, described `x_desc` and `y_desc`.
fn mesh<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
    e: &impl Fn(String) -> Error,
) -> Result<()>
where
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|x| e(x.to_string()))
}

/// Draw the legend at `position` and write the file.
fn finish<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    root: &DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>,
    position: SeriesLabelPosition,
    e: impl Fn(String) -> Error,
) -> Result<bool> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(true)
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
];

/// Share of targets ready over time, one line per profile (x: share of that
/// profile's convergence time is not comparable, so seconds on a log axis).
pub fn convergence(results: &[ProfileResult], path: &Path) -> Result<bool> {
    let series: Vec<(&str, &Vec<(f64, f64)>)> = results
        .iter()
        .filter_map(|r| r.convergence.as_ref().map(|c| (r.profile.name, &c.series)))
        .collect();
    if series.is_empty() {
        return Ok(false);
    }
    let e = plot_err(path);
    let max_t = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|(t, _)| *t))
        .fold(1.0_f64, f64::max);
    let root = canvas(path, &e)?;
    let mut chart = layout(
        &root,
        "Convergence: targets ready in EndpointSlices and Endpoints",
    )
    .build_cartesian_2d((0.1_f64..max_t * 1.1).log_scale(), 0.0_f64..100.0)
    .map_err(|x| e(x.to_string()))?;
    mesh(
        &mut chart,
        "seconds since the first object was created (log)",
        "% of targets ready",
        &e,
    )?;
    for (i, (name, s)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.iter().map(|(t, f)| (t.max(0.1), f * 100.0)),
                color.stroke_width(2),
            ))
            .map_err(|x| e(x.to_string()))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft, e)
}

/// Cumulative distribution of detection and recovery overhead, one line per
/// (profile, mode, detect/recover).
pub fn detection(results: &[ProfileResult], path: &Path) -> Result<bool> {
    let mut lines: Vec<(String, &Vec<f64>)> = Vec::new();
    for r in results {
        for d in &r.detection {
            if !d.detect_samples.is_empty() {
                lines.push((
                    format!("{} {} down", r.profile.name, d.mode.as_str()),
                    &d.detect_samples,
                ));
            }
            if !d.recover_samples.is_empty() {
                lines.push((
                    format!("{} {} up", r.profile.name, d.mode.as_str()),
                    &d.recover_samples,
                ));
            }
        }
    }
    if lines.is_empty() {
        return Ok(false);
    }
    let e = plot_err(path);
    let all = lines.iter().flat_map(|(_, v)| v.iter().copied());
    let (lo, hi) = all.fold((0.0_f64, 1.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let root = canvas(path, &e)?;
    let mut chart = layout(
        &root,
        "Detection / recovery time over the floor (threshold × period), CDF",
    )
    .build_cartesian_2d((lo - 0.2)..(hi + 0.2), 0.0_f64..100.0)
    .map_err(|x| e(x.to_string()))?;
    mesh(&mut chart, "seconds over the floor", "% of targets", &e)?;
    for (i, (name, v)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let n = v.len() as f64;
        let style = if name.ends_with("up") {
            color.stroke_width(1)
        } else {
            color.stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(
                v.iter()
                    .enumerate()
                    .map(|(k, x)| (*x, (k + 1) as f64 / n * 100.0)),
                style,
            ))
            .map_err(|x| e(x.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    finish(&mut chart, &root, SeriesLabelPosition::LowerRight, e)
}
