//! PNG plots of the evaluation report, drawn with `plotters` (bitmap backend). Text is
//! rendered by ab_glyph from a TrueType font file found on the system (or `RNAFM_FONT`),
//! so no font library is linked.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use rnafm_runtime::{Error, Result};

const SIZE: (u32, u32) = (900, 600);
const FONT: &str = "sans-serif";

/// Font files tried in order when `RNAFM_FONT` is not set.
const FONT_CANDIDATES: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a font once; the error names what was tried.
fn ensure_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let candidates: Vec<PathBuf> = match std::env::var_os("RNAFM_FONT") {
            Some(p) => vec![PathBuf::from(p)],
            None => FONT_CANDIDATES.iter().map(PathBuf::from).collect(),
        };
        for p in &candidates {
            if let Ok(bytes) = std::fs::read(p) {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no TrueType font for the plots (tried {}); set RNAFM_FONT to a .ttf file",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
    .clone()
    .map_err(Error::Runtime)
}

fn draw_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::invalid(path, format!("cannot draw the plot: {e:?}"))
}

fn color(i: usize) -> RGBColor {
    // matplotlib's tab10, so a full report's 9 rows get 9 colours.
    const C: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

/// A named line: points (x, y); NaN y values are left out.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Mean r (y) by gene set (x = category index with `labels`) for each series.
pub fn r_by_top_k(path: &Path, labels: &[String], series: &[Series]) -> Result<()> {
    ensure_font()?;
    let err = draw_err(path);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((0.0f64, 0.1f64), |(l, h), y| (l.min(y), h.max(y)));
    let n = labels.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("Mean Pearson r by gene set", (FONT, 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), lo.min(0.0)..(hi * 1.1).min(1.0))
        .map_err(&err)?;
    let labels = labels.to_vec();
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("genes (ranked by cross-validated r)")
        .y_desc("mean r")
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(&err)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(&err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}

/// Empirical (y) against nominal (x) coverage of central intervals, with the diagonal.
pub fn calibration_curve(path: &Path, series: &[Series]) -> Result<()> {
    ensure_font()?;
    let err = draw_err(path);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Calibration of central intervals", (FONT, 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("nominal coverage")
        .y_desc("empirical coverage (held-out slides)")
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(&err)?
        .label("ideal")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(&err)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(&err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}

/// One gene's held-out slides: (true value, predicted mean, interval low, interval high).
pub struct GenePanel {
    pub title: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Predicted against true values, one panel per gene (up to 4, 2×2), with intervals.
pub fn predicted_vs_true(path: &Path, caption: &str, panels: &[GenePanel]) -> Result<()> {
    ensure_font()?;
    let err = draw_err(path);
    let root = BitMapBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root.titled(caption, (FONT, 22)).map_err(&err)?;
    let areas = root.split_evenly((2, 2));
    for (area, p) in areas.iter().zip(panels) {
        let vals = p
            .points
            .iter()
            .flat_map(|&(t, m, l, h)| [t, m, l, h])
            .filter(|v| v.is_finite());
        let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if !lo.is_finite() {
            continue;
        }
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let (lo, hi) = (lo - pad, hi + pad);
        let mut chart = ChartBuilder::on(area)
            .caption(&p.title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("true log2(FPKM-UQ+1)")
            .y_desc("predicted")
            .label_style((FONT, 13))
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(LineSeries::new(vec![(lo, lo), (hi, hi)], BLACK.mix(0.4)))
            .map_err(&err)?;
        let c = color(0);
        chart
            .draw_series(
                p.points
                    .iter()
                    .map(|&(t, _, l, h)| PathElement::new(vec![(t, l), (t, h)], c.mix(0.5))),
            )
            .map_err(&err)?;
        chart
            .draw_series(
                p.points
                    .iter()
                    .map(|&(t, m, _, _)| Circle::new((t, m), 4, c.filled())),
            )
            .map_err(&err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}
