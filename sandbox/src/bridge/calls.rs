//! The gateway's call counts, served at `GET /_sandbox/calls`: per
//! `service:Action`, and for Auto Scaling also per `Action` and per
//! `Action group` (the tests check how often a step called an action on its
//! group; the bench reports calls per deployment).

use std::collections::BTreeMap;

#[derive(Default)]
pub struct Calls(BTreeMap<String, u64>);

impl Calls {
    /// Counts one call; `group` is the request's AutoScalingGroupName.
    pub fn count(&mut self, service: &str, action: &str, group: Option<&str>) {
        *self.0.entry(format!("{service}:{action}")).or_default() += 1;
        if service == "autoscaling" {
            *self.0.entry(action.to_string()).or_default() += 1;
            if let Some(g) = group {
                *self.0.entry(format!("{action} {g}")).or_default() += 1;
            }
        }
    }

    /// `{"key": count, …}`, keys in order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_scaling_calls_are_counted_per_action_and_group_too() {
        let mut c = Calls::default();
        c.count("autoscaling", "SuspendProcesses", Some("g"));
        c.count("ec2", "CreateImage", None);
        c.count("ec2", "CreateImage", None);
        assert_eq!(
            c.to_json(),
            r#"{"SuspendProcesses":1,"SuspendProcesses g":1,"autoscaling:SuspendProcesses":1,"ec2:CreateImage":2}"#
        );
    }
}
