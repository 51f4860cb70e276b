//! The targets for the proactor, checked against a report: they are measured and
//! reported, never asserted (speed is not a test).

use super::report::{Report, Target};

/// Server CPU per message of proactor (io_uring) relative to the reference, at most.
const URING_CPU_RATIO: f64 = 0.8;
/// Messages/s of proactor (epoll) relative to the reference, at least.
const EPOLL_RATE_RATIO: f64 = 0.8;
/// Memory per idle connection of proactor (io_uring), bytes, at most.
const IDLE_BYTES: f64 = 1024.0;

/// Every target that the report's figures allow to check.
pub fn check(report: &Report) -> Vec<Target> {
    let mut out = Vec::new();
    let reference = report.reference.as_str();
    for r in report.runs.iter().filter(|r| !r.same_core && r.error_count == 0) {
        let Some(base) = report.run_of(reference, r.conns, r.size).filter(|b| b.error_count == 0)
        else {
            continue;
        };
        let at = super::report::point_label(r.conns, r.size, false);
        if r.server == "proactor-uring" && r.conns >= 100 {
            if base.server_cpu_s_per_million > 0.0 {
                let ratio = r.server_cpu_s_per_million / base.server_cpu_s_per_million;
                out.push(target(
                    format!("proactor-uring CPU/msg vs {reference}, {at}"),
                    ratio,
                    URING_CPU_RATIO,
                    ratio <= URING_CPU_RATIO,
                ));
            }
            if base.msgs_per_sec > 0.0 {
                let ratio = r.msgs_per_sec / base.msgs_per_sec;
                out.push(target(
                    format!("proactor-uring msg/s vs {reference}, {at}"),
                    ratio,
                    1.0,
                    ratio >= 1.0,
                ));
            }
            if base.p99_us > 0.0 {
                let ratio = r.p99_us / base.p99_us;
                out.push(target(
                    format!("proactor-uring p99 vs {reference}, {at}"),
                    ratio,
                    1.0,
                    ratio <= 1.0,
                ));
            }
        }
        if r.server == "proactor-epoll" && base.msgs_per_sec > 0.0 {
            let ratio = r.msgs_per_sec / base.msgs_per_sec;
            out.push(target(
                format!("proactor-epoll msg/s vs {reference}, {at}"),
                ratio,
                EPOLL_RATE_RATIO,
                ratio >= EPOLL_RATE_RATIO,
            ));
        }
    }
    let idle_of = |name: &str| report.idle.iter().find(|i| i.server == name && i.error.is_none());
    if let Some(p) = idle_of("proactor-uring") {
        out.push(target(
            "proactor-uring bytes per idle connection".into(),
            p.bytes_per_conn,
            IDLE_BYTES,
            p.bytes_per_conn <= IDLE_BYTES,
        ));
        if let Some(t) = idle_of(reference) {
            out.push(target(
                format!("proactor-uring bytes per idle connection vs {reference}'s"),
                p.bytes_per_conn,
                t.bytes_per_conn,
                p.bytes_per_conn < t.bytes_per_conn,
            ));
        }
    }
    out
}

fn target(what: String, measured: f64, bound: f64, met: bool) -> Target {
    Target { what, measured, bound, met }
}
