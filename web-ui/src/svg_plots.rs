//! The dashboard's plots, drawn by the app as inline SVG (nothing from a CDN, no script): a
//! bar chart, points with interval whiskers, and lines over steps. Each plot is one `<svg>`
//! with a title, labelled axes and its data as `<title>` tooltips, under a stable
//! `data-testid`.

use leptos::prelude::*;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 40.0;
/// Line colours, one per series (colour-blind-safe Okabe–Ito).
const COLOURS: [&str; 6] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00",
];

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

/// `value` between `low` and `high` as a y coordinate.
fn y_of(value: f64, low: f64, high: f64) -> f64 {
    let span = if high > low { high - low } else { 1.0 };
    TOP + plot_height() * (1.0 - (value - low) / span)
}

/// What an empty plot says instead of marks.
fn no_data() -> AnyView {
    view! {
        <text x=LEFT + plot_width() / 2.0 y=TOP + plot_height() / 2.0 text-anchor="middle" class="tick" data-empty="true">
            "No data yet"
        </text>
    }
    .into_any()
}

fn frame(title: String, testid: &'static str, low: f64, high: f64, body: AnyView) -> AnyView {
    let ticks: Vec<f64> = (0..=4)
        .map(|i| low + (high - low) * i as f64 / 4.0)
        .collect();
    let label = title.clone();
    view! {
        <figure class="plot">
            <svg data-testid=testid viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=label
                xmlns="http://www.w3.org/2000/svg">
                <text x=LEFT y="16" class="plot-title">{title}</text>
                {ticks.into_iter().map(|tick| {
                    let y = y_of(tick, low, high);
                    view! {
                        <line x1=LEFT x2=WIDTH - RIGHT y1=y y2=y class="grid"></line>
                        <text x=LEFT - 6.0 y=y + 4.0 text-anchor="end" class="tick">{format_tick(tick)}</text>
                    }
                }).collect_view()}
                {body}
            </svg>
        </figure>
    }
    .into_any()
}

fn format_tick(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Vertical bars, one per `(label, value)`, from 0 to `max` (the largest value when `None`).
pub fn bar_chart(
    title: impl Into<String>,
    testid: &'static str,
    bars: Vec<(String, f64)>,
    max: Option<f64>,
) -> AnyView {
    let high = max
        .unwrap_or_else(|| bars.iter().map(|b| b.1).fold(0.0, f64::max))
        .max(1e-9);
    if bars.is_empty() {
        return frame(title.into(), testid, 0.0, high, no_data());
    }
    let slot = plot_width() / bars.len().max(1) as f64;
    let body = bars
        .into_iter()
        .enumerate()
        .map(|(i, (label, value))| {
            let x = LEFT + slot * i as f64 + slot * 0.15;
            let top = y_of(value, 0.0, high);
            view! {
                <g class="bar">
                    <rect x=x y=top width=slot * 0.7 height=TOP + plot_height() - top fill=COLOURS[0]>
                        <title>{format!("{label}: {}", format_tick(value))}</title>
                    </rect>
                    <text x=x + slot * 0.35 y=top - 3.0 text-anchor="middle" class="value">{format_tick(value)}</text>
                    <text x=x + slot * 0.35 y=HEIGHT - BOTTOM + 14.0 text-anchor="middle" class="tick">{label}</text>
                </g>
            }
        })
        .collect_view()
        .into_any();
    frame(title.into(), testid, 0.0, high, body)
}

/// One point per `(label, value, low, high)` with a whisker from low to high.
pub fn interval_chart(
    title: impl Into<String>,
    testid: &'static str,
    points: Vec<(String, f64, f64, f64)>,
) -> AnyView {
    let low = points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
    let high = points.iter().map(|p| p.3).fold(f64::NEG_INFINITY, f64::max);
    let (low, high) = if low.is_finite() && high > low {
        let pad = (high - low) * 0.1;
        (low - pad, high + pad)
    } else {
        (900.0, 1100.0)
    };
    if points.is_empty() {
        return frame(title.into(), testid, low, high, no_data());
    }
    let slot = plot_width() / points.len().max(1) as f64;
    let body = points
        .into_iter()
        .enumerate()
        .map(|(i, (label, value, from, to))| {
            let x = LEFT + slot * (i as f64 + 0.5);
            view! {
                <g class="interval">
                    <line x1=x x2=x y1=y_of(from, low, high) y2=y_of(to, low, high) stroke=COLOURS[0] stroke-width="2"></line>
                    <line x1=x - 6.0 x2=x + 6.0 y1=y_of(from, low, high) y2=y_of(from, low, high) stroke=COLOURS[0]></line>
                    <line x1=x - 6.0 x2=x + 6.0 y1=y_of(to, low, high) y2=y_of(to, low, high) stroke=COLOURS[0]></line>
                    <circle cx=x cy=y_of(value, low, high) r="4" fill=COLOURS[1]>
                        <title>{format!("{label}: {value:.0} [{from:.0}, {to:.0}]")}</title>
                    </circle>
                    <text x=x y=HEIGHT - BOTTOM + 14.0 text-anchor="middle" class="tick">{label}</text>
                </g>
            }
        })
        .collect_view()
        .into_any();
    frame(title.into(), testid, low, high, body)
}

/// Lines over a shared x axis (steps), one per named series, with a legend.
pub fn line_chart(
    title: impl Into<String>,
    testid: &'static str,
    series: Vec<(String, Vec<(f64, f64)>)>,
) -> AnyView {
    let all = || series.iter().flat_map(|(_, points)| points.iter().copied());
    let (x_low, x_high) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (x, _)| {
        (lo.min(x), hi.max(x))
    });
    let (y_low, y_high) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, y)| {
        (lo.min(y), hi.max(y))
    });
    let (y_low, y_high) = if y_low.is_finite() {
        (y_low.min(0.0), y_high.max(y_low + 1e-6))
    } else {
        (0.0, 1.0)
    };
    if series.iter().all(|(_, points)| points.is_empty()) {
        return frame(title.into(), testid, y_low, y_high, no_data());
    }
    let x_of = |x: f64| {
        let span = if x_high > x_low { x_high - x_low } else { 1.0 };
        LEFT + plot_width() * (x - x_low) / span
    };
    let body = series
        .iter()
        .enumerate()
        .map(|(i, (name, points))| {
            let colour = COLOURS[i % COLOURS.len()];
            let path: Vec<String> = points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", x_of(x), y_of(y, y_low, y_high)))
                .collect();
            view! {
                <g class="series" data-series=name.clone()>
                    <polyline points=path.join(" ") fill="none" stroke=colour stroke-width="2">
                        <title>{name.clone()}</title>
                    </polyline>
                    <rect x=WIDTH - RIGHT - 150.0 y=TOP + 14.0 * i as f64 width="10" height="10" fill=colour></rect>
                    <text x=WIDTH - RIGHT - 136.0 y=TOP + 9.0 + 14.0 * i as f64 class="tick">{name.clone()}</text>
                </g>
            }
        })
        .collect_view();
    let axis = view! {
        <text x=LEFT y=HEIGHT - BOTTOM + 14.0 class="tick">{format_tick(if x_low.is_finite() { x_low } else { 0.0 })}</text>
        <text x=WIDTH - RIGHT y=HEIGHT - BOTTOM + 14.0 text-anchor="end" class="tick">
            {format!("step {}", format_tick(if x_high.is_finite() { x_high } else { 0.0 }))}
        </text>
    };
    frame(
        title.into(),
        testid,
        y_low,
        y_high,
        view! { {body} {axis} }.into_any(),
    )
}
