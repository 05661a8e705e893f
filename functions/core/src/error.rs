//! Step errors and their stable names. The name is what Step Functions sees as
//! `Error` (Lambda `errorType`, or the activity's `SendTaskFailure` error), so
//! the ASL's Retry/Catch match on it: never rename one without the ASL.

use std::fmt;
use strum::{IntoStaticStr, VariantNames};

/// The name of a variant is its stable name (derived, so the two cannot differ).
#[derive(Debug, Clone, PartialEq, Eq, IntoStaticStr, VariantNames)]
pub enum StepError {
    /// Transient (throttling, 5xx, timeouts, a state that will settle): retry.
    Retryable(String),
    /// The environment or its resources are missing or do not belong together.
    ValidationFailed(String),
    /// Another deployment holds the environment.
    EnvironmentLocked(String),
    /// An instance refresh not started by this deployment is running.
    RefreshInProgress(String),
    /// The preparation server could not be stopped in time.
    StopFailed(String),
    /// The image went to `failed`.
    ImageFailed(String),
    /// The image was not `available` within the environment's timeout.
    ImageTimeout(String),
    /// The launch template could not be updated.
    ModelsFailed(String),
    /// The instance refresh ended `Failed` or `Cancelled`, or timed out.
    RefreshFailed(String),
    /// The instance refresh rolled back: the deployment ends RolledBack.
    RefreshRolledBack(String),
    /// A non-transient AWS error (access denied, invalid parameter, ...).
    AwsError(String),
    /// The deployment record is not in a state this step can work on.
    InvalidState(String),
    /// Bad step input or configuration.
    BadInput(String),
    /// An operator cancelled the deployment: Finalization ends it Cancelled.
    Cancelled(String),
    /// This execution does not own the deployment (a second delivery of a
    /// schedule, a schedule that fired after being cancelled, a stale start):
    /// it ends without touching anything — never through Finalization.
    AlreadyHandled(String),
}

impl StepError {
    /// Every stable name the code can return, for the ASL coverage test.
    pub const NAMES: &'static [&'static str] = <Self as VariantNames>::VARIANTS;

    pub fn name(&self) -> &'static str {
        self.into()
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(m)
            | Self::ValidationFailed(m)
            | Self::EnvironmentLocked(m)
            | Self::RefreshInProgress(m)
            | Self::StopFailed(m)
            | Self::ImageFailed(m)
            | Self::ImageTimeout(m)
            | Self::ModelsFailed(m)
            | Self::RefreshFailed(m)
            | Self::RefreshRolledBack(m)
            | Self::AwsError(m)
            | Self::InvalidState(m)
            | Self::BadInput(m)
            | Self::Cancelled(m)
            | Self::AlreadyHandled(m) => m,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.message())
    }
}

impl std::error::Error for StepError {}

impl From<StepError> for lambda_runtime::Diagnostic {
    fn from(e: StepError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.name().to_string(),
            error_message: e.message().to_string(),
        }
    }
}

/// Classifies an SDK error of any service (every SDK crate re-exports the
/// same `SdkError` type): throttling, 5xx and transport failures are
/// `Retryable`; everything else is an `AwsError` with the service's code.
/// The one classification: the DynamoDB store maps its result to
/// `StoreError` too.
pub fn classify_sdk_error<E, R>(what: &str, err: &aws_sdk_ec2::error::SdkError<E, R>) -> StepError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug,
{
    use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
    let code = err.code().unwrap_or("");
    let msg = err.message().unwrap_or("");
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StepError::Retryable(format!("{what}: transport error ({err})"))
        }
        _ if is_transient_code(code) => {
            StepError::Retryable(format!("{what}: {code} {msg}").trim_end().to_string())
        }
        SdkError::ServiceError(_) if code.is_empty() => {
            StepError::AwsError(format!("{what}: {}", err_chain(err)))
        }
        _ => StepError::AwsError(format!("{what}: {code} {msg}").trim_end().to_string()),
    }
}

/// Error codes AWS documents as transient for EC2, Auto Scaling, DynamoDB and SES.
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceededException"
            | "InternalError"
            | "InternalFailure"
            | "InternalServerError"
            | "InternalServiceError"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "Unavailable"
            | "SlowDown"
            | "TransactionInProgressException"
            | "ResourceContention"
    )
}

fn err_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_listed_once_and_match_variants() {
        let all = [
            StepError::Retryable(String::new()),
            StepError::ValidationFailed(String::new()),
            StepError::EnvironmentLocked(String::new()),
            StepError::RefreshInProgress(String::new()),
            StepError::StopFailed(String::new()),
            StepError::ImageFailed(String::new()),
            StepError::ImageTimeout(String::new()),
            StepError::ModelsFailed(String::new()),
            StepError::RefreshFailed(String::new()),
            StepError::RefreshRolledBack(String::new()),
            StepError::AwsError(String::new()),
            StepError::InvalidState(String::new()),
            StepError::BadInput(String::new()),
            StepError::Cancelled(String::new()),
            StepError::AlreadyHandled(String::new()),
        ];
        let names: Vec<_> = all.iter().map(|e| e.name()).collect();
        assert_eq!(names, StepError::NAMES.to_vec());
    }

    #[test]
    fn diagnostic_carries_the_stable_name() {
        let d: lambda_runtime::Diagnostic = StepError::ImageFailed("boom".into()).into();
        assert_eq!(d.error_type, "ImageFailed");
        assert_eq!(d.error_message, "boom");
    }
}
