use super::super::lookup::fake::Fake;
use super::*;

/// A look-up where these identities are verified.
pub(in super::super) fn verified(identities: &[&str]) -> Fake {
    Fake {
        verified: identities.iter().map(|i| i.to_string()).collect(),
        ..Fake::default()
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
    verified_identities: &[&str],
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
        &verified(verified_identities),
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
