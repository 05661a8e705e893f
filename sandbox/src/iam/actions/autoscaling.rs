//! The Auto Scaling entries of the per-action map: the group each call names
//! (its ARN, as the service reports it, and its tags), plus, for
//! StartInstanceRefresh, what launching from its launch templates needs on
//! the caller's behalf ([`super::launch`]).

use super::ec2::{resource_tags, Context};
use super::{launch, Call, Lookup, MapError};
use crate::iam::Check;

pub async fn checks<L: Lookup>(call: &Call<'_>, lookup: &L) -> Result<Vec<Check>, MapError> {
    match call.action {
        // List actions: no resource-level permissions, so `*`.
        "DescribeAutoScalingGroups"
        | "DescribeInstanceRefreshes"
        | "DescribeLaunchConfigurations" => Ok(vec![check(call.action, "*", vec![])]),
        "SuspendProcesses"
        | "ResumeProcesses"
        | "CancelInstanceRefresh"
        | "RollbackInstanceRefresh"
        | "StartInstanceRefresh" => {
            let name = call.form.get("AutoScalingGroupName").ok_or_else(|| {
                MapError::Invalid(format!("{}: no AutoScalingGroupName", call.action))
            })?;
            let group = lookup
                .group(name)
                .await
                .map_err(MapError::Invalid)?
                .ok_or_else(|| MapError::NotFound(format!("Auto Scaling group {name}")))?;
            let mut out = vec![check(
                call.action,
                &group.arn,
                resource_tags("autoscaling", &group.tags),
            )];
            if call.action == "StartInstanceRefresh" {
                out.extend(launch::checks(call.form, &group, lookup).await?);
            }
            Ok(out)
        }
        other => Err(MapError::NoEntry(format!("autoscaling:{other}"))),
    }
}

fn check(action: &str, resource: &str, context: Context) -> Check {
    Check {
        action: format!("autoscaling:{action}"),
        resource: resource.to_string(),
        context,
        on_behalf_of: None,
    }
}

#[cfg(test)]
#[path = "tests/autoscaling.rs"]
mod tests;
