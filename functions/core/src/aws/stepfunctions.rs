//! Step Functions capability: the safety net starts a cleanup execution of
//! the deployment state machine when Finalization has to wait for the fleet;
//! the waiting states' task tokens are completed through [`TaskTokens`].

use crate::error::{classify_sdk_error, StepError};
use async_trait::async_trait;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::Client;
use serde_json::Value;

/// Step Functions as the safety net and the waits use it.
pub type StepFunctions = super::Capability<Client>;

impl StepFunctions {
    /// Starts execution `name` of `state_machine_arn` with `input`. `Ok(false)`:
    /// an execution of that name exists already (names are unique per state
    /// machine, so a second start of the same cleanup is refused).
    pub async fn start_named(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<bool, StepError> {
        match self
            .client
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ExecutionAlreadyExists") => Ok(false),
            Err(e) => Err(classify_sdk_error("StartExecution", &e)),
        }
    }
}

/// Completes a waiting state's task token. `Ok(false)`: the token is no
/// longer open (completed already, its state timed out, its execution
/// ended) — for a wake-up that means there is nothing left to wake.
#[async_trait]
pub trait TaskTokens: Send + Sync {
    async fn succeed(&self, token: &str, output: &Value) -> Result<bool, StepError>;
    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<bool, StepError>;
}

/// SendTaskSuccess/SendTaskFailure errors that mean the token is closed:
/// "TaskDoesNotExist", "TaskTimedOut" (the task or its execution ended) and
/// "InvalidToken" (a token of a task that no longer exists).
fn token_closed(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("TaskDoesNotExist" | "TaskTimedOut" | "InvalidToken")
    )
}

#[async_trait]
impl TaskTokens for StepFunctions {
    async fn succeed(&self, token: &str, output: &Value) -> Result<bool, StepError> {
        match self
            .client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if token_closed(e.code()) => Ok(false),
            Err(e) => Err(classify_sdk_error("SendTaskSuccess", &e)),
        }
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<bool, StepError> {
        match self
            .client
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if token_closed(e.code()) => Ok(false),
            Err(e) => Err(classify_sdk_error("SendTaskFailure", &e)),
        }
    }
}

/// [`TaskTokens`] for tests: records every completion; tokens listed in
/// `closed` answer as closed.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct RecordedTokens {
    pub sent: std::sync::Mutex<Vec<(String, Result<Value, String>)>>,
    pub closed: std::sync::Mutex<Vec<String>>,
}

#[cfg(any(test, feature = "test-util"))]
impl RecordedTokens {
    pub fn sent(&self) -> Vec<(String, Result<Value, String>)> {
        self.sent.lock().unwrap().clone()
    }
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait]
impl TaskTokens for RecordedTokens {
    async fn succeed(&self, token: &str, output: &Value) -> Result<bool, StepError> {
        if self.closed.lock().unwrap().iter().any(|t| t == token) {
            return Ok(false);
        }
        self.sent
            .lock()
            .unwrap()
            .push((token.into(), Ok(output.clone())));
        Ok(true)
    }

    async fn fail(&self, token: &str, error: &str, _cause: &str) -> Result<bool, StepError> {
        if self.closed.lock().unwrap().iter().any(|t| t == token) {
            return Ok(false);
        }
        self.sent
            .lock()
            .unwrap()
            .push((token.into(), Err(error.into())));
        Ok(true)
    }
}
