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
pub(super) mod tests {
    use super::super::{GroupInfo, Tags, TemplateInfo, VersionInfo};
    use super::*;

    /// SES's verified identities; the other look-ups are not SES's (and
    /// not asked for by SES's, Scheduler's, DynamoDB's or Step Functions'
    /// entries).
    pub(in super::super) struct Verified(pub &'static [&'static str]);

    impl Lookup for Verified {
        async fn instance_tags(&self, _: &str) -> Result<Option<Tags>, String> {
            unreachable!()
        }
        async fn launch_template(&self, _: &str) -> Result<Option<TemplateInfo>, String> {
            unreachable!()
        }
        async fn template_version(&self, _: &str, _: &str) -> Result<Option<VersionInfo>, String> {
            unreachable!()
        }
        async fn group(&self, _: &str) -> Result<Option<GroupInfo>, String> {
            unreachable!()
        }
        async fn instance_profile_roles(&self, _: &str) -> Result<Vec<String>, String> {
            unreachable!()
        }
        async fn ses_identity_verified(&self, identity: &str) -> Result<bool, String> {
            Ok(self.0.contains(&identity))
        }
    }

    /// The form the SES SDK sends for the product's notification.
    fn send_email_form(source: &str) -> HashMap<String, String> {
        [
            ("Action", "SendEmail"),
            ("Version", "2010-12-01"),
            ("Source", source),
            ("Destination.ToAddresses.member.1", "ops@example.com"),
            ("Destination.ToAddresses.member.2", "lead@example.org"),
            ("Message.Subject.Data", "Deployment 01J finished"),
            ("Message.Subject.Charset", "UTF-8"),
            ("Message.Body.Text.Data", "text"),
            ("Message.Body.Text.Charset", "UTF-8"),
            ("Message.Body.Html.Data", "<p>html</p>"),
            ("Message.Body.Html.Charset", "UTF-8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    async fn map(
        action: &str,
        form: &HashMap<String, String>,
        verified: &'static [&'static str],
    ) -> Result<Vec<Check>, MapError> {
        checks(
            &Call {
                service: "ses",
                action,
                method: "POST",
                path: "/",
                query: "",
                form,
                body: b"",
            },
            &Verified(verified),
        )
        .await
    }

    fn context(from: &str) -> Vec<(String, ContextValue)> {
        vec![
            ("ses:FromAddress".into(), ContextValue::String(from.into())),
            (
                "ses:Recipients".into(),
                ContextValue::StringList(vec!["ops@example.com".into(), "lead@example.org".into()]),
            ),
        ]
    }

    #[tokio::test]
    async fn send_email_from_a_verified_address_is_authorized_on_the_address_identity() {
        let form = send_email_form("noreply@example.com");
        let got = map("SendEmail", &form, &["example.com", "noreply@example.com"])
            .await
            .unwrap();
        assert_eq!(
            got,
            vec![Check {
                action: "ses:SendEmail".into(),
                resource: "arn:aws:ses:us-east-1:000000000000:identity/noreply@example.com".into(),
                context: context("noreply@example.com"),
                on_behalf_of: None,
            }]
        );
    }

    #[tokio::test]
    async fn send_email_from_an_address_of_a_verified_domain_is_authorized_on_the_domain() {
        let form = send_email_form("Autosky <noreply@example.com>");
        let got = map("SendEmail", &form, &["example.com"]).await.unwrap();
        assert_eq!(
            got[0].resource,
            "arn:aws:ses:us-east-1:000000000000:identity/example.com"
        );
        assert_eq!(got[0].context, context("noreply@example.com"));
    }

    #[tokio::test]
    async fn cc_and_bcc_recipients_count_too() {
        let mut form = send_email_form("noreply@example.com");
        form.insert(
            "Destination.CcAddresses.member.1".into(),
            "cc@example.com".into(),
        );
        form.insert(
            "Destination.BccAddresses.member.1".into(),
            "bcc@example.com".into(),
        );
        let got = map("SendEmail", &form, &[]).await.unwrap();
        assert_eq!(
            got[0].context[1].1,
            ContextValue::StringList(vec![
                "ops@example.com".into(),
                "lead@example.org".into(),
                "cc@example.com".into(),
                "bcc@example.com".into(),
            ])
        );
    }

    #[tokio::test]
    async fn a_source_without_an_address_is_invalid() {
        let form = send_email_form("nobody");
        assert!(matches!(
            map("SendEmail", &form, &[]).await,
            Err(MapError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn actions_without_an_entry_are_refused() {
        let form = send_email_form("noreply@example.com");
        assert_eq!(
            map("SendRawEmail", &form, &[]).await,
            Err(MapError::NoEntry("ses:SendRawEmail".into()))
        );
    }
}
