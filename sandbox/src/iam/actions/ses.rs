//! SES's map entry (v1 query protocol: `Action=SendEmail`, the sender in
//! `Source`). Sending is authorized on the identity SES sends as: the
//! sender's address when that address is a verified identity of its own,
//! else the address's domain identity; with the sender and the recipients
//! as `ses:FromAddress` and `ses:Recipients`.

use super::{Call, Lookup, MapError};
use crate::iam::{Check, ACCOUNT, REGION};
use iam_rs::ContextValue;
use std::collections::HashMap;

pub async fn checks<L: Lookup>(call: &Call<'_>, lookup: &L) -> Result<Vec<Check>, MapError> {
    match call.action {
        "SendEmail" => Ok(vec![send_email(call.form, lookup).await?]),
        other => Err(MapError::NoEntry(format!("ses:{other}"))),
    }
}

async fn send_email<L: Lookup>(
    form: &HashMap<String, String>,
    lookup: &L,
) -> Result<Check, MapError> {
    let source = form
        .get("Source")
        .ok_or_else(|| MapError::Invalid("SendEmail without Source".into()))?;
    let address = address(source);
    let domain = address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| MapError::Invalid(format!("Source {source} has no address")))?;
    let verified = lookup
        .ses_identity_verified(address)
        .await
        .map_err(MapError::Invalid)?;
    // An address verified on its own is its own identity; one that only
    // inherits its domain's verification sends as the domain identity.
    let identity = if verified { address } else { domain };
    let mut context = vec![(
        "ses:FromAddress".to_string(),
        ContextValue::String(address.to_string()),
    )];
    let recipients = recipients(form);
    if !recipients.is_empty() {
        context.push((
            "ses:Recipients".to_string(),
            ContextValue::StringList(recipients),
        ));
    }
    Ok(Check {
        action: "ses:SendEmail".into(),
        resource: format!("arn:aws:ses:{REGION}:{ACCOUNT}:identity/{identity}"),
        context,
        on_behalf_of: None,
    })
}

/// The address of a `Source`, which may come with a display name
/// (`Autosky <noreply@example.com>`).
fn address(source: &str) -> &str {
    source
        .rsplit_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(addr, _)| addr)
        .unwrap_or(source)
        .trim()
}

/// The To, Cc and Bcc addresses (`Destination.ToAddresses.member.N` …), each
/// list in its members' order.
fn recipients(form: &HashMap<String, String>) -> Vec<String> {
    ["ToAddresses", "CcAddresses", "BccAddresses"]
        .iter()
        .flat_map(|list| {
            let prefix = format!("Destination.{list}.member.");
            let mut members: Vec<(u32, String)> = form
                .iter()
                .filter_map(|(k, v)| {
                    let n = k.strip_prefix(&prefix)?.parse().ok()?;
                    Some((n, address(v).to_string()))
                })
                .collect();
            members.sort();
            members.into_iter().map(|(_, a)| a)
        })
        .collect()
}

#[cfg(test)]
#[path = "tests/ses.rs"]
pub(super) mod tests;
