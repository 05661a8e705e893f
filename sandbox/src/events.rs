//! The safety net's events: fakecloud emits no EventBridge event when an
//! execution ends, so this pump watches the state machine's executions and,
//! for each one that has ended, builds the "Step Functions Execution Status
//! Change" event Step Functions sends (detail as DescribeExecution gives it)
//! and hands it to the Finalization handler, the target of the template's
//! rule, only if the rule's pattern (read from template.yaml) matches it.
//! A failed delivery is tried again as Lambda does for an asynchronous
//! invocation (the template's `EventInvokeConfig.MaximumRetryAttempts`).
//! [`Rules`] (a function's rule patterns and retries, and EventBridge's
//! matching) also serves the EC2 and Auto Scaling events of
//! [`crate::aws_events`].

use crate::template::Intrinsics;
use autosky_core::domain::StepName;
use autosky_core::Deps;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const TEMPLATE: &str = include_str!("../../template.yaml");
/// The function whose rules the pump delivers, and the handler it runs.
const FUNCTION: &str = "FinalizeFunction";
const DETAIL_TYPE: &str = "Step Functions Execution Status Change";

/// A function's EventBridge rules as the template declares them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// The event patterns of the function's EventBridge rules, with their
    /// `!Ref`s resolved.
    pub patterns: Vec<Value>,
    /// Retries of a failed asynchronous invocation.
    pub retries: u32,
}

/// The safety net: FinalizeFunction's rules (`from_template`, `from_yaml`).
pub type SafetyNet = Rules;

impl Rules {
    /// The safety net's rules from template.yaml; `refs` gives the value of
    /// each `!Ref` a pattern uses (the sandbox's state machine ARN for
    /// `DeploymentStateMachine`).
    pub fn from_template(refs: &BTreeMap<&str, String>) -> Result<Self, String> {
        Self::from_yaml(TEMPLATE, refs)
    }

    /// The safety net's rules from a template's text.
    pub fn from_yaml(yaml: &str, refs: &BTreeMap<&str, String>) -> Result<Self, String> {
        Self::of_yaml(yaml, FUNCTION, refs)
    }

    /// The rules of `function` (a logical id) in template.yaml.
    pub fn of(function: &str, refs: &BTreeMap<&str, String>) -> Result<Self, String> {
        Self::of_yaml(TEMPLATE, function, refs)
    }

    /// The rules of `function` in a template's text.
    pub fn of_yaml(
        yaml: &str,
        function: &str,
        refs: &BTreeMap<&str, String>,
    ) -> Result<Self, String> {
        let t: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        let properties = &t["Resources"][function]["Properties"];
        // Only the given `!Ref`s: the pump knows no other value.
        let values = refs.iter().fold(Intrinsics::new(), |v, (name, value)| {
            v.with_ref(name, value.as_str())
        });
        let mut patterns = vec![];
        if let Some(events) = properties["Events"].as_mapping() {
            for (name, event) in events {
                if event["Type"].as_str() != Some("EventBridgeRule") {
                    continue;
                }
                let pattern = values
                    .resolve(&event["Properties"]["Pattern"])
                    .map_err(|e| format!("{function} event {name:?}: {e}"))?;
                supported(&pattern)?;
                patterns.push(pattern);
            }
        }
        if patterns.is_empty() {
            return Err(format!("{function} has no EventBridgeRule in the template"));
        }
        let retries = properties["EventInvokeConfig"]["MaximumRetryAttempts"]
            .as_u64()
            // Lambda's default for asynchronous invocations.
            .unwrap_or(2) as u32;
        Ok(Self { patterns, retries })
    }

    pub fn matches(&self, event: &Value) -> bool {
        self.patterns.iter().any(|p| matches(p, event))
    }
}

/// The pattern forms [`matches`] knows: nested objects whose leaves are
/// arrays of exact values. Content filters (`prefix`, `anything-but`, …,
/// objects inside the arrays) are refused rather than misread.
fn supported(pattern: &Value) -> Result<(), String> {
    match pattern {
        Value::Object(o) => o.values().try_for_each(|v| match v {
            Value::Object(_) => supported(v),
            Value::Array(values) if values.iter().all(|x| !x.is_object() && !x.is_array()) => {
                Ok(())
            }
            other => Err(format!("unsupported event pattern form: {other}")),
        }),
        other => Err(format!("an event pattern must be an object, not {other}")),
    }
}

/// EventBridge matching for those forms: every field of the pattern is in
/// the event, nested the same way, and the event's value is one of the
/// pattern's values (for an array in the event, any of its elements is).
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Value::Object(fields) = pattern else {
        return false;
    };
    fields.iter().all(|(k, p)| {
        let Some(e) = event.get(k) else {
            return false;
        };
        match (p, e) {
            (Value::Object(_), _) => matches(p, e),
            (Value::Array(values), Value::Array(items)) => items.iter().any(|i| values.contains(i)),
            (Value::Array(values), e) => values.contains(e),
            _ => false,
        }
    })
}

fn millis(t: &aws_sdk_sfn::primitives::DateTime) -> Option<i64> {
    t.to_millis().ok()
}

/// The event Step Functions sends when an execution's status changes to
/// the one DescribeExecution gives.
pub fn status_change_event(
    e: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput,
) -> Value {
    let arn = e.execution_arn();
    // arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME
    let part = |i: usize| arn.split(':').nth(i).unwrap_or_default().to_string();
    let time = e
        .stop_date()
        .and_then(millis)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_else(chrono::Utc::now);
    let included = |v: Option<&str>| v.map(|_| json!({"included": true}));
    json!({
        "version": "0",
        "id": autosky_core::domain::new_deployment_id().to_lowercase(),
        "detail-type": DETAIL_TYPE,
        "source": "aws.states",
        "account": part(4),
        "time": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": part(3),
        "resources": [arn],
        "detail": {
            "executionArn": arn,
            "stateMachineArn": e.state_machine_arn(),
            "name": e.name(),
            "status": e.status().as_str(),
            "startDate": millis(e.start_date()),
            "stopDate": e.stop_date().and_then(millis),
            "input": e.input(),
            "inputDetails": included(e.input()),
            "output": e.output(),
            "outputDetails": included(e.output()),
            "error": e.error(),
            "cause": e.cause(),
        }
    })
}

/// Watches the executions of `state_machine_arn` (with `sfn`, a client
/// straight to the emulator, so the gateway counts only the steps' calls)
/// and delivers each ended one's event the safety net matches.
pub fn spawn(deps: Arc<Deps>, sfn: aws_sdk_sfn::Client, state_machine_arn: String, net: SafetyNet) {
    tokio::spawn(async move {
        let mut ended: HashSet<String> = HashSet::new();
        loop {
            for arn in newly_ended(&sfn, &state_machine_arn, &mut ended).await {
                let Ok(exec) = sfn.describe_execution().execution_arn(&arn).send().await else {
                    ended.remove(&arn); // look again next round
                    continue;
                };
                let event = status_change_event(&exec);
                if !net.matches(&event) {
                    continue;
                }
                let (deps, retries) = (deps.clone(), net.retries);
                tokio::spawn(async move { deliver(&deps, event, retries).await });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Executions that have ended since the last look.
async fn newly_ended(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    ended: &mut HashSet<String>,
) -> Vec<String> {
    let mut new = vec![];
    let mut token = None;
    loop {
        let Ok(page) = sfn
            .list_executions()
            .state_machine_arn(state_machine_arn)
            .set_next_token(token)
            .send()
            .await
        else {
            return new;
        };
        for e in page.executions() {
            let running = e.status() == &aws_sdk_sfn::types::ExecutionStatus::Running;
            if !running && ended.insert(e.execution_arn().to_string()) {
                new.push(e.execution_arn().to_string());
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return new;
        }
    }
}

/// Runs the Finalization handler with the event, trying again after a
/// failure as Lambda does for an asynchronous invocation.
async fn deliver(deps: &Deps, event: Value, retries: u32) {
    let arn = event["detail"]["executionArn"].clone();
    for attempt in 0..=retries {
        match autosky_core::steps::run(StepName::Finalization, deps, event.clone()).await {
            Ok(out) => {
                tracing::info!(execution = %arn, result = %out, "safety net delivered");
                return;
            }
            Err(e) => {
                tracing::warn!(execution = %arn, attempt, error = %e.message(), "safety net failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:autosky-deployment";

    fn net() -> SafetyNet {
        SafetyNet::from_template(&BTreeMap::from([(
            "DeploymentStateMachine",
            MACHINE.to_string(),
        )]))
        .unwrap()
    }

    fn example() -> Value {
        serde_json::from_str(include_str!("../../events/finalize-execution-aborted.json")).unwrap()
    }

    #[test]
    fn the_templates_pattern_matches_the_aborted_execution_event() {
        let net = net();
        assert_eq!(net.retries, 2);
        assert!(net.matches(&example()));
    }

    #[test]
    fn the_templates_pattern_skips_other_statuses_machines_and_sources() {
        let net = net();
        let with = |path: &[&str], v: Value| {
            let mut e = example();
            let mut at = &mut e;
            for p in &path[..path.len() - 1] {
                at = &mut at[*p];
            }
            at[path[path.len() - 1]] = v;
            e
        };
        for status in ["FAILED", "TIMED_OUT"] {
            assert!(
                net.matches(&with(&["detail", "status"], json!(status))),
                "{status}"
            );
        }
        for status in ["SUCCEEDED", "RUNNING"] {
            assert!(
                !net.matches(&with(&["detail", "status"], json!(status))),
                "{status}"
            );
        }
        let other = MACHINE.replace("autosky-deployment", "other");
        assert!(!net.matches(&with(&["detail", "stateMachineArn"], json!(other))));
        assert!(!net.matches(&with(&["source"], json!("aws.ec2"))));
        let mut no_detail = example();
        no_detail.as_object_mut().unwrap().remove("detail");
        assert!(!net.matches(&no_detail));
    }

    #[test]
    fn unknown_refs_and_content_filters_are_refused() {
        assert!(SafetyNet::from_template(&BTreeMap::new())
            .unwrap_err()
            .contains("!Ref DeploymentStateMachine"));
        let yaml = "Resources:\n  FinalizeFunction:\n    Properties:\n      Events:\n        E:\n          Type: EventBridgeRule\n          Properties:\n            Pattern:\n              source: [{prefix: aws.}]\n";
        assert!(SafetyNet::from_yaml(yaml, &BTreeMap::new())
            .unwrap_err()
            .contains("unsupported"));
    }

    #[test]
    fn the_event_mirrors_describe_execution() {
        use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
        use aws_sdk_sfn::primitives::DateTime;
        let arn = MACHINE.replace(":stateMachine:", ":execution:") + ":01JDXK2Q8V5W3N7R4T6Y9ZABCD";
        let out = DescribeExecutionOutput::builder()
            .execution_arn(&arn)
            .state_machine_arn(MACHINE)
            .name("01JDXK2Q8V5W3N7R4T6Y9ZABCD")
            .status(aws_sdk_sfn::types::ExecutionStatus::Aborted)
            .start_date(DateTime::from_millis(1795599600000))
            .stop_date(DateTime::from_millis(1795599612000))
            .input("{}")
            .build()
            .unwrap();
        let e = status_change_event(&out);
        let mut expected = example();
        expected["id"] = e["id"].clone();
        expected["time"] = json!("2026-11-25T09:40:12Z");
        expected["detail"]["input"] = json!("{}");
        assert_eq!(e, expected);
    }
}
