//! The `--plot FILE.svg` chart: per matrix point, grouped bars per server for messages/s, server
//! CPU per message and p99 latency (log scale), with the idle memory per connection beside them.
//! A server whose rounds at a point did not settle is drawn as an outline with `?` above it.
//! With two load generators, the chart shows the first one's runs.

use super::report::{point_label, Report, RunResult};
use super::settle::Status;
use anyhow::anyhow;
use plotters::prelude::*;
use std::path::Path;

/// One colour per server, in report order (colour-blind-safe palette).
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(100, 100, 100),
];

/// One panel: a figure per run.
struct Metric {
    title: &'static str,
    unit: &'static str,
    value: fn(&RunResult) -> f64,
    log: bool,
}

/// Writes the chart for `report` to `path`.
pub fn write(report: &Report, path: &Path) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
    let mut points: Vec<(usize, usize, bool)> = Vec::new();
    for r in runs(report) {
        if !points.contains(&(r.conns, r.size, r.same_core)) {
            points.push((r.conns, r.size, r.same_core));
        }
    }
    let metrics = [
        Metric {
            title: "Throughput (higher is better)",
            unit: "messages/s",
            value: |r| r.msgs_per_sec,
            log: false,
        },
        Metric {
            title: "Server CPU per message (lower is better)",
            unit: "CPU µs / message",
            value: |r| r.server_cpu_s_per_million,
            log: false,
        },
        Metric {
            title: "p99 round-trip latency (lower is better, log scale)",
            unit: "µs",
            value: |r| r.p99_us,
            log: true,
        },
    ];
    let height = 300 * metrics.len() as u32 + 80 + if report.idle.is_empty() { 0 } else { 260 };
    let root = SVGBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, body) = root.split_vertically(70);
    head.draw(&Text::new(
        "proactor bench: echo over 127.0.0.1",
        (20, 10),
        ("sans-serif", 26).into_font().style(FontStyle::Bold),
    ))
    .map_err(|e| err(&e))?;
    head.draw(&Text::new(
        format!(
            "kernel {}, {} CPU(s), {}; one message in flight per connection, every byte checked; \
             outline and ?: did not settle",
            report.kernel, report.cpus, report.pinning
        ),
        (20, 44),
        ("sans-serif", 15).into_font().color(&RGBColor(80, 80, 80)),
    ))
    .map_err(|e| err(&e))?;
    legend(&head, report).map_err(|e| err(&e))?;
    let (charts, idle_area) = if report.idle.is_empty() {
        (body, None)
    } else {
        let (a, b) = body.split_vertically(300 * metrics.len() as u32);
        (a, Some(b))
    };
    let labels: Vec<String> = points.iter().map(|&(c, s, same)| point_label(c, s, same)).collect();
    for (area, metric) in charts.split_evenly((metrics.len(), 1)).iter().zip(&metrics) {
        panel(area, report, &points, &labels, metric).map_err(|e| err(&e))?;
    }
    if let Some(area) = idle_area {
        idle_panel(&area, report).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult<'a> =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>>;

fn panel<'a>(
    area: &Area<'a>,
    report: &Report,
    points: &[(usize, usize, bool)],
    labels: &[String],
    metric: &Metric,
) -> DrawResult<'a> {
    let run_at = |server: &str, p: &(usize, usize, bool)| {
        runs(report)
            .find(|r| r.server == server && (r.conns, r.size, r.same_core) == *p && r.messages > 0)
    };
    let value_at = |server: &str, p: &(usize, usize, bool)| {
        run_at(server, p).map(metric.value).filter(|v| *v > 0.0)
    };
    let all: Vec<f64> = report
        .servers
        .iter()
        .flat_map(|s| points.iter().filter_map(move |p| value_at(s, p)))
        .collect();
    let max = all.iter().cloned().fold(0.0, f64::max).max(1e-9);
    let min = all.iter().cloned().fold(f64::INFINITY, f64::min);
    // Log panels draw log10 of the value on a linear axis, labelled with the value itself.
    let (y0, y1, tf): (f64, f64, fn(f64) -> f64) = if metric.log {
        let lo = if min.is_finite() { min.log10().floor() } else { 0.0 };
        (lo, (max.log10() + 0.15).max(lo + 1.0), f64::log10)
    } else {
        (0.0, max * 1.12, |v| v)
    };
    let n = points.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(metric.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)?;
    let log = metric.log;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc(metric.unit)
        .y_labels(if log { (y1 - y0).ceil() as usize + 1 } else { 10 })
        .y_label_formatter(&|y| {
            if !log {
                short(*y)
            } else if (y - y.round()).abs() < 1e-6 {
                short(10f64.powf(y.round()))
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 13))
        .draw()?;
    let k = report.servers.len().max(1) as f64;
    let width = 0.8 / k;
    for (j, server) in report.servers.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        let mut bars = Vec::new();
        let mut unsettled = Vec::new();
        for (i, p) in points.iter().enumerate() {
            let Some(v) = value_at(server, p) else { continue };
            let x0 = i as f64 - 0.4 + j as f64 * width;
            let corners = [(x0 + 0.01, y0), (x0 + width - 0.01, tf(v))];
            if run_at(server, p).is_some_and(|r| r.status == Status::Unreliable) {
                bars.push(Rectangle::new(corners, colour.stroke_width(2)));
                unsettled.push(Text::new("?", (x0 + width * 0.3, tf(v)), ("sans-serif", 14)));
            } else {
                bars.push(Rectangle::new(corners, colour.filled()));
            }
        }
        chart.draw_series(bars)?;
        chart.draw_series(unsettled)?;
    }
    Ok(())
}

/// The runs the chart shows: the first load generator's.
fn runs(report: &Report) -> impl Iterator<Item = &RunResult> {
    let first = report.config.loadgens.first().cloned().unwrap_or_default();
    report.runs.iter().filter(move |r| r.loadgen == first)
}

/// One swatch and name per server, in a row at the top right.
fn legend<'a>(area: &Area<'a>, report: &Report) -> DrawResult<'a> {
    let (w, _) = area.dim_in_pixel();
    let font = ("sans-serif", 14).into_font();
    let widths: Vec<i32> = report.servers.iter().map(|s| 28 + 8 * s.len() as i32).collect();
    let mut x = w as i32 - 20 - widths.iter().sum::<i32>();
    for (j, (server, width)) in report.servers.iter().zip(&widths).enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        area.draw(&Rectangle::new([(x, 14), (x + 14, 28)], colour.filled()))?;
        area.draw(&Text::new(server.clone(), (x + 19, 14), font.clone()))?;
        x += width;
    }
    Ok(())
}

fn idle_panel<'a>(area: &Area<'a>, report: &Report) -> DrawResult<'a> {
    let rows: Vec<(usize, &str, f64)> = report
        .idle
        .iter()
        .filter(|i| i.error.is_none())
        .filter_map(|i| {
            let j = report.servers.iter().position(|s| *s == i.server)?;
            Some((j, i.server.as_str(), i.bytes_per_conn.max(0.0)))
        })
        .collect();
    let max = rows.iter().map(|r| r.2).fold(0.0, f64::max).max(1.0);
    let conns = report.idle.first().map(|i| i.conns).unwrap_or(0);
    let title = format!("Server memory per idle connection, {conns} held (lower is better)");
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(130)
        .build_cartesian_2d(0f64..max * 1.15, -0.5f64..(n as f64 - 0.5))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < rows.len() {
                rows[rows.len() - 1 - i as usize].1.to_string()
            } else {
                String::new()
            }
        })
        .x_desc("bytes of RSS per connection")
        .x_label_formatter(&|x| short(*x))
        .label_style(("sans-serif", 13))
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, &(j, _, v))| {
        let y = (rows.len() - 1 - i) as f64;
        Rectangle::new([(0.0, y - 0.35), (v, y + 0.35)], COLOURS[j % COLOURS.len()].filled())
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, &(_, _, v))| {
        let y = (rows.len() - 1 - i) as f64;
        Text::new(format!(" {v:.0} B"), (v, y + 0.1), ("sans-serif", 13))
    }))?;
    Ok(())
}

/// 1500 -> "1.5k", 2_000_000 -> "2M", 0.25 -> "0.25".
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
