//! Text helpers for messages, logs and e-mails: truncation of untrusted
//! input, e-mail masking, durations.

use chrono::{DateTime, Utc};

/// At most `max` characters of untrusted text, for error messages.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Masks e-mail addresses for logs (`ops@example.com` → `o***@example.com`):
/// addresses never reach CloudWatch, though the deployment record keeps them.
pub fn mask_emails(s: &str) -> String {
    let is_sep = |c: char| c.is_whitespace() || "<>()[],;:\"'".contains(c);
    let mut out = String::with_capacity(s.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        match token.split_once('@') {
            Some((local, domain)) if !local.is_empty() && domain.contains('.') => {
                out.push_str(&local.chars().take(1).collect::<String>());
                out.push_str("***@");
                out.push_str(domain);
            }
            _ => out.push_str(token),
        }
        token.clear();
    };
    for c in s.chars() {
        if is_sep(c) {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Milliseconds between two instants (never negative).
pub fn millis_between(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    (end - start).num_milliseconds().max(0)
}

/// "1m 05s" style duration for actions and e-mails.
pub fn human_duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms} ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_never_show_a_whole_address() {
        assert_eq!(
            mask_emails("rejected: ops@example.com, <dev@x.io> and 'me@y.org'"),
            "rejected: o***@example.com, <d***@x.io> and 'm***@y.org'"
        );
        assert_eq!(mask_emails("no address @ here"), "no address @ here");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(450), "450 ms");
        assert_eq!(human_duration(5_000), "5s");
        assert_eq!(human_duration(65_000), "1m 05s");
        assert_eq!(human_duration(3_660_000), "1h 01m");
    }
}
