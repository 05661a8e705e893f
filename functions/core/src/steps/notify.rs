//! The notification e-mails a deployment sends ("started", and the outcome):
//! each at most once, claimed in the record before it is sent.

use super::Journal;
use crate::deps::Deps;
use crate::domain::Environment;
use crate::error::StepError;

/// Which notification e-mail a step sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// "Started" (optional, sent by Initial validation).
    Started,
    /// The outcome (sent by Finalization).
    Ended,
}

/// Sends a notification at most once per kind; a sending failure is recorded
/// as an action and never changes the deployment's status.
pub(crate) async fn notify(
    deps: &Deps,
    j: &mut Journal<'_>,
    env: Option<&Environment>,
    notice: Notice,
) -> Result<(), StepError> {
    let claimed = match notice {
        Notice::Started => j.dep.runtime.notified_start,
        Notice::Ended => j.dep.runtime.notified,
    };
    if claimed {
        return Ok(());
    }
    let recipients = j.dep.recipients(env);
    if recipients.is_empty() {
        return Ok(());
    }
    let Some(sender) = deps.settings.sender_email.clone() else {
        return j
            .action("Notification not sent: no sender address configured")
            .await;
    };
    // Claim before sending: a retry after a crash skips rather than duplicates.
    match notice {
        Notice::Started => j.dep.runtime.notified_start = true,
        Notice::Ended => j.dep.runtime.notified = true,
    }
    j.save_runtime().await?;
    let console = j
        .dep
        .execution_arn
        .as_deref()
        .map(|arn| crate::email::console_url(&deps.settings.region, arn));
    let email = crate::email::render(&j.dep, console.as_deref());
    let what = match notice {
        Notice::Started => "\"Started\" e-mail",
        Notice::Ended => "Notification e-mail",
    };
    match deps.mailer.send(&sender, &recipients, &email).await {
        Ok(_) => {
            j.action(format!("{what} sent to {} recipient(s)", recipients.len()))
                .await
        }
        Err(e) => j.action(format!("{what} failed: {}", e.message())).await,
    }
}
