//! Outstanding operations, as a user can inspect them: how many, of which kind, how old.

use super::table::Table;
use std::time::Duration;

/// A snapshot of the operations the proactor holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Operations handed to the driver and not yet completed.
    pub in_flight: usize,
    /// Operations waiting for admission under the in-flight cap.
    pub queued: usize,
    /// In-flight operations per kind (`"recv"`, `"accept"`, …), sorted by name.
    pub by_kind: Vec<(&'static str, usize)>,
    /// Age of the oldest in-flight operation.
    pub oldest: Option<Duration>,
}

impl InFlight {
    /// `now_ms` and the slots' start times are on the loop's wrapping millisecond clock.
    pub(crate) fn collect(ops: &Table, now_ms: u32) -> InFlight {
        let mut snap = InFlight::default();
        let mut oldest: Option<u32> = None;
        for (_, slot) in ops.iter() {
            if slot.state.is_queued() {
                snap.queued += 1;
                continue;
            }
            if !slot.state.in_driver() {
                continue;
            }
            snap.in_flight += 1;
            let name = slot.kind.name;
            match snap.by_kind.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => *n += 1,
                None => snap.by_kind.push((name, 1)),
            }
            let age = now_ms.wrapping_sub(slot.started);
            oldest = Some(oldest.map_or(age, |o| o.max(age)));
        }
        snap.by_kind.sort();
        snap.oldest = oldest.map(|ms| Duration::from_millis(ms.into()));
        snap
    }
}
