//! The access log: one line per response in the common log format, through `tracing` (target
//! `proactor_cli::http::access`), so `RUST_LOG` can route or silence it and `--quiet` turns it off.

use super::date;
use std::net::IpAddr;

/// Logs one response: `host - - [date] "request line" status bytes`.
pub fn access(peer: IpAddr, request: Option<(&str, &str, u8)>, status: u16, bytes: u64) {
    let line = match request {
        Some((method, target, minor)) => {
            format!("\"{} {} HTTP/1.{minor}\"", clean(method), clean(target))
        }
        None => "\"-\"".to_string(),
    };
    let bytes = if bytes == 0 { "-".to_string() } else { bytes.to_string() };
    tracing::info!(
        target: "proactor_cli::http::access",
        "{peer} - - [{}] {line} {status} {bytes}",
        date::clf_date(date::now_secs())
    );
}

/// Escapes what would break the line's quoting or inject a line.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
