//! `docs/latency.svg` from a [`Report`](super::results::Report)'s latency curves: an SVG chart
//! written by hand, with log scales on both axes.

use super::names;
use super::results::Curve;
use super::workload::Flavor;

/// The chart: p50 and p99 latency (log scale) against offered deliveries per second (log
/// scale), one colour per server, solid for p50 and dashed for p99.
pub fn svg(curves: &[Curve]) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 20.0, 40.0, 60.0);
    let all = curves.iter().flat_map(|curve| curve.points.iter());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, 0.0f64, f64::MAX, 0.0f64);
    for p in all {
        x_min = x_min.min(p.offered);
        x_max = x_max.max(p.offered);
        y_min = y_min.min(p.p50.max(0.001));
        y_max = y_max.max(p.p99);
    }
    let decade = |v: f64, up: bool| {
        let l = v.max(1e-3).log10();
        10f64.powf(if up { l.ceil() } else { l.floor() })
    };
    let (x_min, x_max) = (
        decade(x_min, false),
        decade(x_max, true).max(decade(x_min, false) * 10.0),
    );
    let (y_min, y_max) = (
        decade(y_min, false),
        decade(y_max, true).max(decade(y_min, false) * 10.0),
    );
    let px = |x: f64| {
        left + (x.log10() - x_min.log10()) / (x_max.log10() - x_min.log10()) * (w - left - right)
    };
    let py = |y: f64| {
        h - bottom
            - (y.max(y_min).log10() - y_min.log10()) / (y_max.log10() - y_min.log10())
                * (h - top - bottom)
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Delivery latency against offered load \
         (100 clients, 10 senders, TCP)</text>\n",
        w / 2.0
    );
    let mut x = x_min;
    while x <= x_max * 1.0001 {
        svg += &format!(
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#ddd\"/>\
             <text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
            px(x),
            top,
            h - bottom,
            h - bottom + 16.0,
            si(x)
        );
        x *= 10.0;
    }
    let mut y = y_min;
    while y <= y_max * 1.0001 {
        svg += &format!(
            "<line x1=\"{0}\" y1=\"{1:.1}\" x2=\"{2}\" y2=\"{1:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{3}\" y=\"{4:.1}\" text-anchor=\"end\">{5} ms</text>\n",
            left,
            py(y),
            w - right,
            left - 6.0,
            py(y) + 4.0,
            trim(y)
        );
        y *= 10.0;
    }
    svg += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">offered deliveries per second (log)</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">latency (log)</text>\n",
        (left + w - right) / 2.0,
        h - 14.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0
    );
    let mut legend_y = top + 10.0;
    for curve @ Curve { flavor, points, .. } in curves {
        let label = names::curve(curve);
        let (name, colour) = match flavor {
            _ if curve.nodes > 0 => (label.as_str(), "#8250df"),
            Flavor::Ours => ("chat-server", "#1f6feb"),
            Flavor::Seed => ("seed (asyncio)", "#d1242f"),
            Flavor::Floor => ("floor (relay only)", "#6e7781"),
        };
        for (quantile, dash, pick) in [("p50", "", 1usize), ("p99", " stroke-dasharray=\"6 4\"", 2)]
        {
            let path: Vec<String> = points
                .iter()
                .map(|p| {
                    let v = if pick == 1 { p.p50 } else { p.p99 };
                    format!("{:.1},{:.1}", px(p.offered), py(v))
                })
                .collect();
            svg += &format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n",
                path.join(" ")
            );
            for p in points {
                let v = if pick == 1 { p.p50 } else { p.p99 };
                svg += &format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>\n",
                    px(p.offered),
                    py(v)
                );
            }
            svg += &format!(
                "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\
                 <text x=\"{3}\" y=\"{4}\">{name} {quantile}</text>\n",
                left + 12.0,
                legend_y,
                left + 40.0,
                left + 46.0,
                legend_y + 4.0
            );
            legend_y += 16.0;
        }
    }
    svg + "</svg>\n"
}

/// An axis label: `100`, `10k`, `1M`.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

/// `v` with at most three decimals and no trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::sample;

    #[test]
    fn each_curve_has_a_line_and_a_point_per_load_for_p50_and_p99() {
        let report = sample();
        let svg = svg(&report.curves);
        assert!(
            svg.starts_with("<svg ") && svg.ends_with("</svg>\n"),
            "{svg}"
        );
        assert_eq!(svg.matches("<polyline ").count(), 2 * report.curves.len());
        let points: usize = report.curves.iter().map(|c| c.points.len()).sum();
        assert_eq!(svg.matches("<circle ").count(), 2 * points);
        for legend in [
            "chat-server p99",
            "floor (relay only) p50",
            "seed (asyncio) p99",
        ] {
            assert!(svg.contains(legend), "{legend}");
        }
    }
}
