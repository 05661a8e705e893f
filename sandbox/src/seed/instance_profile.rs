//! The IAM role and instance profile the seeded launch templates name: the
//! role a refresh passes to EC2 (iam:PassRole) when it launches from them, as
//! an operator gives it to the stack (template.yaml: InstanceRoleArns).
//!
//! The sandbox has no IAM SDK client (one crate less to build): the three
//! calls are IAM query requests (`Action=...&Version=2010-05-08`) sent to the
//! emulator, whose router picks the service from the credential scope of the
//! Authorization header (only the scope is read, not the signature).

use bytes::Bytes;
use http_body_util::Full;
use std::collections::BTreeSet;

/// The role's and the instance profile's name.
pub const INSTANCE_PROFILE_NAME: &str = "autosky-sandbox-instance";
/// The account the emulator creates everything in (fakecloud's default,
/// as its ARNs show: the role's below, the state machine's).
pub const EMULATOR_ACCOUNT: &str = "123456789012";
/// The role the seeded templates' profile holds: the stack's
/// InstanceRoleArns in the sandbox.
pub const INSTANCE_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/autosky-sandbox-instance";
/// The instance profile the seeded launch templates name.
pub const INSTANCE_PROFILE_ARN: &str =
    "arn:aws:iam::123456789012:instance-profile/autosky-sandbox-instance";

/// EC2 may assume the role (what an instance profile's role needs).
const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// Creates the role and the instance profile holding it, once per emulator
/// (later calls, and a profile another seed already made, change nothing).
pub async fn ensure(emulator: &str) -> Result<(), String> {
    static DONE: tokio::sync::Mutex<BTreeSet<String>> =
        tokio::sync::Mutex::const_new(BTreeSet::new());
    let mut done = DONE.lock().await;
    if done.contains(emulator) {
        return Ok(());
    }
    let role = call(
        emulator,
        "CreateRole",
        &[
            ("RoleName", INSTANCE_PROFILE_NAME),
            ("AssumeRolePolicyDocument", TRUST_POLICY),
        ],
    )
    .await?;
    if let Answer::Created(xml) = &role {
        check_arn(xml, INSTANCE_ROLE_ARN)?;
    }
    let profile = call(
        emulator,
        "CreateInstanceProfile",
        &[("InstanceProfileName", INSTANCE_PROFILE_NAME)],
    )
    .await?;
    if let Answer::Created(xml) = &profile {
        check_arn(xml, INSTANCE_PROFILE_ARN)?;
        // A new profile is empty: it gets its one role now.
        call(
            emulator,
            "AddRoleToInstanceProfile",
            &[
                ("InstanceProfileName", INSTANCE_PROFILE_NAME),
                ("RoleName", INSTANCE_PROFILE_NAME),
            ],
        )
        .await?;
    }
    done.insert(emulator.to_string());
    Ok(())
}

enum Answer {
    Created(String),
    AlreadyExists,
}

/// One IAM query request; `EntityAlreadyExists` is [`Answer::AlreadyExists`].
async fn call(emulator: &str, action: &str, params: &[(&str, &str)]) -> Result<Answer, String> {
    // Built before any await: the serializer is not Send.
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action);
        form.append_pair("Version", "2010-05-08");
        for (k, v) in params {
            form.append_pair(k, v);
        }
        form.finish()
    };
    let req = hyper::Request::post(format!("{}/", emulator.trim_end_matches('/')))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host, Signature=0",
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let (status, _, body) = crate::http::send(req).await?;
    let text = String::from_utf8_lossy(&body).into_owned();
    match status {
        200..=299 => Ok(Answer::Created(text)),
        _ if text.contains("<Code>EntityAlreadyExists</Code>") => Ok(Answer::AlreadyExists),
        _ => Err(format!("IAM {action}: HTTP {status}: {text}")),
    }
}

/// The created entity's `<Arn>` is `expected` (the constants must name
/// what the emulator makes).
fn check_arn(xml: &str, expected: &str) -> Result<(), String> {
    let arn = xml
        .split("<Arn>")
        .nth(1)
        .and_then(|rest| rest.split("</Arn>").next());
    match arn {
        Some(a) if a == expected => Ok(()),
        other => Err(format!("IAM created {other:?}, expected {expected}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arns_name_the_sandbox_account_and_the_profile() {
        let account = format!(":{EMULATOR_ACCOUNT}:");
        for arn in [INSTANCE_ROLE_ARN, INSTANCE_PROFILE_ARN] {
            assert!(arn.contains(&account), "{arn}");
            assert!(arn.ends_with(&format!("/{INSTANCE_PROFILE_NAME}")), "{arn}");
        }
    }

    #[test]
    fn the_created_arn_is_checked() {
        let xml = format!("<Role><Arn>{INSTANCE_ROLE_ARN}</Arn></Role>");
        assert!(check_arn(&xml, INSTANCE_ROLE_ARN).is_ok());
        assert!(check_arn(&xml, INSTANCE_PROFILE_ARN).is_err());
        assert!(check_arn("<Role/>", INSTANCE_ROLE_ARN).is_err());
    }
}
