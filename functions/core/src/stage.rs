//! Cold-start stage marks for `make bench`: with `AUTOSKY_STAGE_MARKS` set,
//! a binary writes `autosky-stage <stage> <unix µs> <peak RSS kB>` to stderr
//! as it passes each stage of its start (entering `main`, logging ready,
//! configuration and clients built), so the bench can tell what the time and
//! memory between spawn and the first `GET …/next` are made of. Without the
//! variable nothing is read or written. std only: the floor binary includes
//! this file too, to be measured the same way without linking this crate.

use std::io::Write;
use std::sync::OnceLock;

/// Writes the mark for `stage` when marks are asked for.
pub fn mark(stage: &str) {
    static ON: OnceLock<bool> = OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("AUTOSKY_STAGE_MARKS").is_some()) {
        return;
    }
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    // The peak so far (VmHWM), as the bench reads the whole start's.
    let peak_kb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let _ = writeln!(
        std::io::stderr(),
        "autosky-stage {stage} {micros} {peak_kb}"
    );
}
