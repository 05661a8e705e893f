//! The IAM role and instance profile the seeded launch templates name: the
//! role a refresh passes to EC2 (iam:PassRole) when it launches from them, as
//! an operator gives it to the stack (template.yaml: InstanceRoleArns).
//!
//! The sandbox has no IAM SDK client (one crate less to build): the three
//! calls are IAM query requests (`Action=...&Version=2010-05-08`) sent to the
//! emulator, whose router picks the service from the credential scope of the
//! Authorization header (only the scope is read, not the signature).

use std::collections::BTreeSet;

/// The role's and the instance profile's name.
pub const INSTANCE_PROFILE_NAME: &str = "autosky-sandbox-instance";
/// The role the seeded templates' profile holds: the stack's
/// InstanceRoleArns in the sandbox.
pub const INSTANCE_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/autosky-sandbox-instance";
/// The instance profile the seeded launch templates name.
pub const INSTANCE_PROFILE_ARN: &str =
    "arn:aws:iam::000000000000:instance-profile/autosky-sandbox-instance";

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
    let (role, profile) = create(emulator, INSTANCE_PROFILE_NAME).await?;
    for (arn, expected) in [(role, INSTANCE_ROLE_ARN), (profile, INSTANCE_PROFILE_ARN)] {
        if arn.as_deref().is_some_and(|a| a != expected) {
            return Err(format!("IAM created {arn:?}, expected {expected}"));
        }
    }
    done.insert(emulator.to_string());
    Ok(())
}

/// Creates the role `name` (EC2 may assume it) and the instance profile
/// `name` holding it; returns the ARNs of what it created (None: it existed).
pub async fn create(
    emulator: &str,
    name: &str,
) -> Result<(Option<String>, Option<String>), String> {
    let role = call(
        emulator,
        "CreateRole",
        &[
            ("RoleName", name),
            ("AssumeRolePolicyDocument", TRUST_POLICY),
        ],
    )
    .await?;
    let profile = call(
        emulator,
        "CreateInstanceProfile",
        &[("InstanceProfileName", name)],
    )
    .await?;
    if let Answer::Created(_) = &profile {
        // A new profile is empty: it gets its one role now.
        call(
            emulator,
            "AddRoleToInstanceProfile",
            &[("InstanceProfileName", name), ("RoleName", name)],
        )
        .await?;
    }
    Ok((role.arn(), profile.arn()))
}

enum Answer {
    Created(String),
    AlreadyExists,
}

/// One IAM request; `EntityAlreadyExists` is [`Answer::AlreadyExists`].
async fn call(emulator: &str, action: &str, params: &[(&str, &str)]) -> Result<Answer, String> {
    let (status, text) = crate::emulator::iam(emulator, action, params).await?;
    match status {
        200..=299 => Ok(Answer::Created(text)),
        _ if text.contains("<Code>EntityAlreadyExists</Code>") => Ok(Answer::AlreadyExists),
        _ => Err(format!("IAM {action}: HTTP {status}: {text}")),
    }
}

impl Answer {
    /// The created entity's `<Arn>`.
    fn arn(&self) -> Option<String> {
        match self {
            Answer::Created(xml) => xml
                .split("<Arn>")
                .nth(1)
                .and_then(|rest| rest.split("</Arn>").next())
                .map(str::to_string),
            Answer::AlreadyExists => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arns_name_the_sandbox_account_and_the_profile() {
        // The emulator runs in the sandbox account (`--account-id`).
        let account = format!(":{}:", crate::iam::ACCOUNT);
        for arn in [INSTANCE_ROLE_ARN, INSTANCE_PROFILE_ARN] {
            assert!(arn.contains(&account), "{arn}");
            assert!(arn.ends_with(&format!("/{INSTANCE_PROFILE_NAME}")), "{arn}");
        }
    }

    #[test]
    fn the_created_arn_is_read_from_the_answer() {
        let xml = format!("<Role><Arn>{INSTANCE_ROLE_ARN}</Arn></Role>");
        assert_eq!(
            Answer::Created(xml).arn().as_deref(),
            Some(INSTANCE_ROLE_ARN)
        );
        assert_eq!(Answer::Created("<Role/>".into()).arn(), None);
        assert_eq!(Answer::AlreadyExists.arn(), None);
    }
}
