//! The trend chart: inline SVG, drawn on the server (no script, prints as it shows). One line
//! of daily compliance percentages; days without a figure leave a gap in the line.

use std::fmt::Write as _;

/// One day of the chart: its label (`YYYY-MM-DD`) and the compliance percentage, if any
/// device counted that day.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub day: String,
    pub percent: Option<f64>,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart of `points` (oldest first) as an `<svg>` element, titled `title`.
pub fn svg(title: &str, points: &[Point]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let n = points.len().max(2) - 1;
    let x = |i: usize| LEFT + plot_w * i as f64 / n as f64;
    let y = |p: f64| TOP + plot_h * (1.0 - p.clamp(0.0, 100.0) / 100.0);
    let known: Vec<f64> = points.iter().filter_map(|p| p.percent).collect();
    let summary = match (known.first(), known.last()) {
        (Some(first), Some(last)) => format!(
            "{} days from {} to {}: {first:.1} % at the start, {last:.1} % at the end, lowest {:.1} %.",
            points.len(),
            points.first().map_or("", |p| p.day.as_str()),
            points.last().map_or("", |p| p.day.as_str()),
            known.iter().copied().fold(f64::INFINITY, f64::min),
        ),
        _ => "No compliance figures in this period.".to_owned(),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<figure class="chart"><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-t chart-d" xmlns="http://www.w3.org/2000/svg"><title id="chart-t">{}</title><desc id="chart-d">{}</desc>"#,
        escape(title),
        escape(&summary)
    );
    for p in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let class = if p == 0.0 { "axis" } else { "grid" };
        let _ = write!(
            out,
            r#"<line class="{class}" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text x="{}" y="{:.1}" text-anchor="end">{p:.0} %</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(p) + 4.0,
            y = y(p)
        );
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{}"/>"#,
        TOP + plot_h
    );
    // Labels: the first and last day and a few between, never crowded.
    let step = (points.len() / 6).max(1);
    for (i, p) in points.iter().enumerate() {
        if i % step == 0 || i + 1 == points.len() {
            let anchor = if i == 0 {
                "start"
            } else if i + 1 == points.len() {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
                x(i),
                HEIGHT - 8.0,
                escape(&p.day)
            );
        }
    }
    // The line, broken where a day has no figure.
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, out: &mut String| {
        if run.len() > 1 {
            let _ = write!(
                out,
                r#"<polyline class="line" points="{}"/>"#,
                run.join(" ")
            );
        }
        run.clear();
    };
    for (i, p) in points.iter().enumerate() {
        match p.percent {
            Some(v) => run.push(format!("{:.1},{:.1}", x(i), y(v))),
            None => flush(&mut run, &mut out),
        }
    }
    flush(&mut run, &mut out);
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p.percent {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5"><title>{}: {v:.1} %</title></circle>"#,
                x(i),
                y(v),
                escape(&p.day)
            );
        }
    }
    out.push_str("</svg></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32, p: Option<f64>) -> Point {
        Point {
            day: format!("2026-11-{d:02}"),
            percent: p,
        }
    }

    #[test]
    fn a_gap_breaks_the_line_and_the_description_says_what_it_shows() {
        let svg = svg(
            "Fleet compliance, 4 days",
            &[
                day(1, Some(50.0)),
                day(2, Some(75.0)),
                day(3, None),
                day(4, Some(100.0)),
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("50.0 % at the start, 100.0 % at the end, lowest 50.0 %"));
        assert!(svg.contains("<title id=\"chart-t\">Fleet compliance, 4 days</title>"));
        // 100 % is at the top of the plot, 0 % at the bottom.
        assert!(svg.contains(&format!("cy=\"{TOP:.1}\"")));
    }

    #[test]
    fn text_is_escaped_and_no_figures_say_so() {
        let svg = svg("a <b> & \"c\"", &[day(1, None)]);
        assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
        assert!(svg.contains("No compliance figures"));
        assert!(!svg.contains("<polyline"));
    }
}
