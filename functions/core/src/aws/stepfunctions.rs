//! Step Functions capability: the safety net starts a cleanup execution of
//! the deployment state machine when Finalization has to wait for the fleet.

use crate::error::{classify_sdk_error, StepError};
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::Client;

/// Step Functions as the safety net uses it.
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
