//! E-mail capability (SES `SendEmail`: one message, text and HTML parts).

use crate::error::{classify_sdk_error, StepError};
use aws_sdk_ses::types::{Body, Content, Destination, Message};
use aws_sdk_ses::Client;

/// SES as the notifications use it.
pub type Mailer = super::Capability<Client>;

/// A rendered notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn content(data: &str) -> Result<Content, StepError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| StepError::BadInput(format!("e-mail content: {e}")))
}

impl Mailer {
    /// Sends one message to all recipients; returns the SES message id.
    pub async fn send(
        &self,
        from: &str,
        to: &[String],
        email: &Email,
    ) -> Result<String, StepError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .text(content(&email.text)?)
                    .html(content(&email.html)?)
                    .build(),
            )
            .build();
        let out = self
            .client
            .send_email()
            .source(from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(to.to_vec()))
                    .build(),
            )
            .message(message)
            .send()
            .await
            .map_err(|e| classify_sdk_error("SendEmail", &e))?;
        Ok(out.message_id().to_string())
    }
}
