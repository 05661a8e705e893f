//! Task tokens close when their execution ends, as on AWS ("TaskTimedOut:
//! The task token has either expired or the task associated with the token
//! has already been closed"). fakecloud still takes SendTaskSuccess and
//! SendTaskFailure for a stopped execution's task and goes on interpreting
//! it, so the activity workers note each token's execution and the gateway
//! refuses a completion whose execution is no longer RUNNING with AWS's
//! error (a wake-up that comes after a stop from the console, say).

use super::faults;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Token → the ARN of the execution whose task it is.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Mutex<HashMap<String, String>>>);

impl Tokens {
    pub fn note(&self, token: &str, execution_arn: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(token.to_string(), execution_arn.to_string());
        }
    }

    fn execution(&self, token: &str) -> Option<String> {
        self.0.lock().ok()?.get(token).cloned()
    }

    /// The refusal of a SendTaskSuccess/SendTaskFailure `body` whose token
    /// belongs to an execution that has ended; None: forward it.
    pub async fn refusal(
        &self,
        sfn: &aws_sdk_sfn::Client,
        body: &[u8],
    ) -> Option<Response<Full<Bytes>>> {
        let body: serde_json::Value = serde_json::from_slice(body).ok()?;
        let arn = self.execution(body["taskToken"].as_str()?)?;
        let out = sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .ok()?;
        if out.status() == &aws_sdk_sfn::types::ExecutionStatus::Running {
            return None;
        }
        Some(faults::states_error(
            400,
            "TaskTimedOut",
            "Task Timed Out: 'Provided task does not exist anymore'",
        ))
    }
}
