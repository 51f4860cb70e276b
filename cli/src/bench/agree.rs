//! How far two load generators agree: with `--loadgen epoll,threads` every point runs under
//! each, settled on its own, and each server's ratio to the reference (msg/s, CPU per message)
//! under one is set beside the other's. Servers with the same code shape should keep their
//! ratio whichever generator drives them; a ratio that moves with the generator measures the
//! generator, not the server.

use super::report::{point_label, Figure, Report};
use super::settle::Ratio;
use serde::Serialize;

/// One server's ratio at one point under every load generator.
#[derive(Serialize, Clone, Debug)]
pub struct Agreement {
    /// The server.
    pub server: String,
    /// The point, in words.
    pub point: String,
    /// `msg/s` or `CPU/msg`.
    pub figure: String,
    /// The load generators, in report order.
    pub loadgens: Vec<String>,
    /// The ratio to the reference under each.
    pub ratios: Vec<Ratio>,
    /// Largest ratio / smallest ratio − 1.
    pub differ: f64,
    /// Every ratio settled.
    pub settled: bool,
}

impl Agreement {
    /// The table line.
    pub fn line(&self) -> String {
        let each: Vec<String> = self
            .loadgens
            .iter()
            .zip(&self.ratios)
            .map(|(l, r)| {
                let spread =
                    r.spread.map(|s| format!(", spread {:.0}%", s * 100.0)).unwrap_or_default();
                let st = if r.settled { "" } else { ", unsettled" };
                format!("{l} {:.2}x{spread}{st}", r.ratio)
            })
            .collect();
        format!(
            "{}, {}, {}: {} — differ by {:.0}%",
            self.server,
            self.point,
            self.figure,
            each.join("; "),
            self.differ * 100.0
        )
    }
}

/// Every server's ratios under each load generator, where every generator measured it.
pub fn check(report: &Report) -> Vec<Agreement> {
    let lgs = &report.config.loadgens;
    if lgs.len() < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for r in report.runs.iter().filter(|r| r.loadgen == lgs[0] && r.server != report.reference) {
        for (f, name) in [(Figure::Msgs, "msg/s"), (Figure::Cpu, "CPU/msg")] {
            let ratios: Option<Vec<Ratio>> = lgs
                .iter()
                .map(|lg| {
                    let run = report.runs.iter().find(|x| {
                        x.server == r.server
                            && (x.conns, x.size, x.same_core) == (r.conns, r.size, r.same_core)
                            && &x.loadgen == lg
                    })?;
                    report.ratio(run, f)
                })
                .collect();
            let Some(ratios) = ratios else { continue };
            out.push(agreement(
                &r.server,
                point_label(r.conns, r.size, r.same_core),
                name,
                lgs.clone(),
                ratios,
            ));
        }
    }
    out
}

fn agreement(
    server: &str,
    point: String,
    figure: &str,
    loadgens: Vec<String>,
    ratios: Vec<Ratio>,
) -> Agreement {
    let hi = ratios.iter().map(|r| r.ratio).fold(f64::MIN, f64::max);
    let lo = ratios.iter().map(|r| r.ratio).fold(f64::MAX, f64::min);
    Agreement {
        server: server.into(),
        point,
        figure: figure.into(),
        loadgens,
        settled: ratios.iter().all(|r| r.settled),
        differ: if lo > 0.0 { hi / lo - 1.0 } else { f64::INFINITY },
        ratios,
    }
}

/// One line over all: the median and largest difference, among settled pairs and all pairs.
pub fn summary(all: &[Agreement]) -> Option<String> {
    let describe = |v: Vec<f64>| -> Option<String> {
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let max = v.iter().cloned().fold(0.0, f64::max);
        let median = super::report::median(v);
        Some(format!(
            "median {:.0}%, largest {:.0}% over {n} ratio(s)",
            median * 100.0,
            max * 100.0
        ))
    };
    let settled: Vec<f64> = all.iter().filter(|a| a.settled).map(|a| a.differ).collect();
    let every: Vec<f64> = all.iter().map(|a| a.differ).collect();
    let every = describe(every)?;
    Some(match describe(settled) {
        Some(s) => format!("ratios differ by: settled {s}; all {every}"),
        None => format!("ratios differ by: all {every} (none settled under every generator)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ratio: f64, settled: bool) -> Ratio {
        Ratio { ratio, spread: Some(0.05), settled }
    }

    #[test]
    fn difference_is_largest_over_smallest() {
        let a = agreement(
            "s",
            "p".into(),
            "msg/s",
            vec!["epoll".into(), "threads".into()],
            vec![r(1.47, true), r(0.92, true)],
        );
        assert!((a.differ - (1.47 / 0.92 - 1.0)).abs() < 1e-12);
        assert!(a.settled);
        assert!(a.line().contains("differ by 60%"), "{}", a.line());
        let b = agreement(
            "s",
            "p".into(),
            "msg/s",
            vec!["epoll".into(), "threads".into()],
            vec![r(1.0, true), r(1.05, false)],
        );
        assert!(!b.settled);
        let s = summary(&[a, b]).unwrap();
        assert!(s.contains("settled median 60%, largest 60% over 1"), "{s}");
        assert!(s.contains("all median 32%, largest 60% over 2"), "{s}");
        assert_eq!(summary(&[]), None);
    }
}
