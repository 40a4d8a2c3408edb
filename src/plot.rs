//! PNG charts of results: training curves and per-strategy bars.
//!
//! Text is drawn with the bundled DejaVu Sans (`assets/`, its licence beside it), so a chart
//! looks the same on every machine and needs no system fonts. Files are written atomically.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// Drawing failed.
    #[error("{path}: drawing the chart: {message}")]
    Draw {
        /// The PNG being written.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
    /// Moving the finished file into place failed.
    #[error("{path}: {source}")]
    Io {
        /// The PNG being written.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Nothing to draw.
    #[error("{path}: no data to plot")]
    Empty {
        /// The PNG being written.
        path: PathBuf,
    },
}

/// A named line of `(x, y)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// One chart panel: a title, axis labels and its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Panel title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Fixed y range (`Some((0.0, 1.0))` for scores); `None` fits the data.
    pub y_range: Option<(f64, f64)>,
}

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary; a failure would only
        // mean plotters already has the family, which is fine.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws `panels` side by side into a PNG at `path` (written under a temporary name, then
/// renamed).
pub fn line_charts(path: impl AsRef<Path>, panels: &[Panel]) -> Result<(), PlotError> {
    let path = path.as_ref();
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if panels
        .iter()
        .all(|p| p.series.iter().all(|s| s.points.is_empty()))
    {
        return Err(PlotError::Empty {
            path: path.to_path_buf(),
        });
    }
    register_font();
    let tmp = temp_path(path);
    {
        let width = 640 * panels.len().max(1) as u32;
        let root = BitMapBackend::new(&tmp, (width, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, panel) in areas.iter().zip(panels) {
            let points = panel.series.iter().flat_map(|s| s.points.iter());
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
                (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            }
            if x0 > x1 {
                continue;
            }
            if x1 - x0 < 1e-12 {
                x1 = x0 + 1.0;
            }
            let pad = ((y1 - y0) * 0.05).max(1e-6);
            let (y0, y1) = match panel.y_range {
                Some((lo, hi)) => (lo + pad, hi - pad),
                None => (y0, y1),
            };
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(|e| draw_err(&e))?;
            chart
                .configure_mesh()
                .x_desc(&panel.x_label)
                .y_desc(&panel.y_label)
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| draw_err(&e))?;
            for (i, s) in panel.series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| draw_err(&e))?
                    .label(&s.name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|e| draw_err(&e))?;
        }
        root.present().map_err(|e| draw_err(&e))?;
    }
    std::fs::rename(&tmp, path).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "chart.png".into(), |n| n.to_string_lossy().to_string());
    path.with_file_name(format!(".kwx-tmp-{}-{name}", std::process::id()))
}

/// One group member of a bar chart: a named value per category.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    /// Legend text.
    pub name: String,
    /// One value per category, in [0, 1].
    pub values: Vec<f64>,
}

/// Draws grouped bars (one group per category, one bar per [`Bars`]) on a 0–1 axis into a PNG
/// at `path`, each bar labelled with its value; written atomically.
pub fn bar_chart(
    path: impl AsRef<Path>,
    title: &str,
    categories: &[String],
    bars: &[Bars],
) -> Result<(), PlotError> {
    let path = path.as_ref();
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if categories.is_empty() || bars.is_empty() {
        return Err(PlotError::Empty {
            path: path.to_path_buf(),
        });
    }
    if let Some(b) = bars.iter().find(|b| b.values.len() != categories.len()) {
        return Err(draw_err(&format!(
            "series {:?} has {} values for {} categories",
            b.name,
            b.values.len(),
            categories.len()
        )));
    }
    register_font();
    let tmp = temp_path(path);
    {
        let width = (160 * categories.len() as u32).max(640) + 120;
        let root = BitMapBackend::new(&tmp, (width, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let n = categories.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..n, 0.0..1.1)
            .map_err(|e| draw_err(&e))?;
        let labels = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(categories.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (*x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("score")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| draw_err(&e))?;
        let width = 0.8 / bars.len() as f64;
        for (j, b) in bars.iter().enumerate() {
            let color = COLORS[j % COLORS.len()];
            let x = |i: usize| i as f64 + 0.1 + j as f64 * width;
            chart
                .draw_series(b.values.iter().enumerate().map(|(i, v)| {
                    Rectangle::new(
                        [(x(i), 0.0), (x(i) + width * 0.9, v.clamp(0.0, 1.0))],
                        color.filled(),
                    )
                }))
                .map_err(|e| draw_err(&e))?
                .label(&b.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
            chart
                .draw_series(b.values.iter().enumerate().map(|(i, v)| {
                    Text::new(
                        format!("{v:.2}"),
                        (x(i), v.clamp(0.0, 1.0) + 0.03),
                        ("sans-serif", 11),
                    )
                }))
                .map_err(|e| draw_err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| draw_err(&e))?;
        root.present().map_err(|e| draw_err(&e))?;
    }
    std::fs::rename(&tmp, path).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}
