//! Each function's and role's identity policies, read from template.yaml
//! (the file `sam build` packages) with the sandbox's names substituted, the
//! way CloudFormation and SAM turn them into IAM policies, and their
//! evaluation with iam-rs. A function's policies are its `Policies`
//! (inline documents and SAM policy templates) plus every `AWS::IAM::Policy`
//! attached to the role SAM generates for it (`<Function>Role`); a role's
//! are its inline `Policies`; the state machine's are its `Policies`.

use super::{Check, ACCOUNT, REGION};
use crate::template::Intrinsics;
use iam_rs::{
    Arn, ContextValue, Decision, EvaluationOptions, IAMAction, IAMEffect, IAMPolicy, IAMRequest,
    IAMStatement, PolicyEvaluator, Principal, PrincipalId,
};
use serde_json::{json, Value};
use serde_yaml::Value as Y;
use std::collections::{BTreeMap, BTreeSet};

const TEMPLATE: &str = include_str!("../../../template.yaml");
const PARTITION: &str = "aws";
const URL_SUFFIX: &str = "amazonaws.com";

/// iam-rs takes the request's resource as an ARN, and `*` (an action
/// without resource-level permissions) is none. This stand-in has a service
/// no policy names, so only a statement whose Resource is `*` applies to it,
/// as AWS requires for such actions.
const NO_RESOURCE: &str = "arn:sandbox:no-resource-level-permissions:::*";

/// The sandbox's names for what the template refers to.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub stack: String,
    pub sender: String,
    pub table: String,
    pub state_machine_arn: String,
    pub schedule_group: String,
    pub scheduler_role_arn: String,
    /// The `InstanceRoleArns` stack parameter.
    pub instance_role_arns: Vec<String>,
}

/// The outcome of one check against a function's policies.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed by the statement with this Sid.
    Allowed { sid: Option<String> },
    /// Denied, and why ("no statement allows …", "statement X: condition … not met").
    Denied { reason: String },
}

/// Every policy of the template's roles, by the logical id of the function
/// or role (`ValidateFunction`, `SchedulerRole`, `DeploymentStateMachine`).
#[derive(Debug, Clone, Default)]
pub struct Policies {
    by_owner: BTreeMap<String, Vec<IAMPolicy>>,
    /// The role each owner's policies belong to, by owner.
    roles: BTreeMap<String, String>,
}

impl Policies {
    pub fn load(names: &Names) -> Result<Self, String> {
        Self::from_yaml(TEMPLATE, names)
    }

    pub fn from_yaml(yaml: &str, names: &Names) -> Result<Self, String> {
        let t: Y = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        let resources = t["Resources"]
            .as_mapping()
            .ok_or("the template has no Resources")?;
        let values = values(&t, names)?;
        let mut policies = Self::default();
        let mut iam_roles = BTreeSet::new();
        for (id, resource) in resources {
            let id = id.as_str().ok_or("a resource id that is not a string")?;
            let properties = &resource["Properties"];
            let context = |e: String| format!("{id}: {e}");
            match resource["Type"].as_str() {
                Some("AWS::Serverless::Function") | Some("AWS::Serverless::StateMachine") => {
                    if !properties["Role"].is_null() {
                        // Its policies would be those of a role SAM does not
                        // generate: not read here, so refused, not ignored.
                        return Err(format!("{id}: a Role of its own is not supported"));
                    }
                    let docs = sam_policies(&properties["Policies"], &values).map_err(context)?;
                    policies.add(id, format!("{}-{id}Role", names.stack), docs);
                }
                Some("AWS::IAM::Role") => {
                    iam_roles.insert(id);
                    let mut docs = vec![];
                    for p in properties["Policies"].as_sequence().into_iter().flatten() {
                        docs.push(
                            document(&values.resolve(&p["PolicyDocument"]).map_err(context)?)
                                .map_err(context)?,
                        );
                    }
                    let role = values
                        .attr(id, "Arn")
                        .and_then(|arn| arn.rsplit('/').next())
                        .ok_or_else(|| format!("{id}: no ARN for the role"))?
                        .to_string();
                    policies.add(id, role, docs);
                }
                _ => {}
            }
        }
        // AWS::IAM::Policy resources, on each role they name.
        for (id, resource) in resources {
            if resource["Type"].as_str() != Some("AWS::IAM::Policy") {
                continue;
            }
            let id = id.as_str().unwrap_or_default();
            let properties = &resource["Properties"];
            let doc = document(
                &values
                    .resolve(&properties["PolicyDocument"])
                    .map_err(|e| format!("{id}: {e}"))?,
            )
            .map_err(|e| format!("{id}: {e}"))?;
            let mut attached = false;
            for role in properties["Roles"].as_sequence().into_iter().flatten() {
                let target = match role {
                    Y::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
                    Y::Mapping(m) if m.len() == 1 => m.get("Ref").and_then(Y::as_str),
                    _ => None,
                }
                .ok_or_else(|| format!("{id}: a role that is not a !Ref to a role"))?;
                // A role of the template (`!Ref SchedulerRole`), or the one
                // SAM generates for a function or state machine.
                let owner = if iam_roles.contains(target) {
                    Some(target)
                } else {
                    target
                        .strip_suffix("Role")
                        .filter(|o| policies.by_owner.contains_key(*o) && !iam_roles.contains(*o))
                }
                .ok_or_else(|| format!("{id}: role {target} is no role of the template"))?;
                policies
                    .by_owner
                    .get_mut(owner)
                    .expect("checked above")
                    .push(doc.clone());
                attached = true;
            }
            if !attached {
                return Err(format!("{id}: attached to no role"));
            }
        }
        Ok(policies)
    }

    fn add(&mut self, owner: &str, role: String, docs: Vec<IAMPolicy>) {
        self.by_owner.insert(owner.to_string(), docs);
        self.roles.insert(owner.to_string(), role);
    }

    /// The number of policy documents (what `IAM: enforced (N policies)` counts).
    pub fn count(&self) -> usize {
        self.by_owner.values().map(Vec::len).sum()
    }

    /// The functions and roles that have policies, by logical id.
    pub fn owners(&self) -> impl Iterator<Item = &str> {
        self.by_owner.keys().map(String::as_str)
    }

    /// The owner's policy documents, as iam-rs reads them.
    pub fn documents(&self, owner: &str) -> &[IAMPolicy] {
        self.by_owner.get(owner).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The caller as AWS names it in a denial: the role's session, which
    /// Lambda names after the function.
    pub fn principal_arn(&self, owner: &str) -> String {
        let role = self
            .roles
            .get(owner)
            .cloned()
            .unwrap_or_else(|| format!("{owner}Role"));
        let session = role.strip_suffix("Role").unwrap_or(&role);
        format!("arn:{PARTITION}:sts::{ACCOUNT}:assumed-role/{role}/{session}")
    }

    pub fn evaluate(&self, function: &str, check: &Check) -> Verdict {
        let Some(docs) = self.by_owner.get(function) else {
            return Verdict::Denied {
                reason: format!("no policy for {function}"),
            };
        };
        let request = match self.request(function, check) {
            Ok(r) => r,
            Err(reason) => return Verdict::Denied { reason },
        };
        let result = match evaluator(docs.clone()).evaluate(&request) {
            Ok(r) => r,
            Err(e) => {
                return Verdict::Denied {
                    reason: format!("cannot evaluate {}: {e}", check.action),
                }
            }
        };
        let statements: Vec<&IAMStatement> = docs.iter().flat_map(|d| &d.statement).collect();
        match result.decision {
            Decision::Allow => Verdict::Allowed {
                sid: result
                    .statement_details
                    .iter()
                    .find(|m| m.conditions_satisfied && m.effect == IAMEffect::Allow)
                    .and_then(|m| m.sid.clone()),
            },
            Decision::Deny => Verdict::Denied {
                reason: format!(
                    "explicitly denied by {}",
                    result
                        .statement_details
                        .iter()
                        .find(|m| m.conditions_satisfied && m.effect == IAMEffect::Deny)
                        .map(|m| sid_of(m.sid.as_deref()))
                        .unwrap_or_else(|| "a statement".into())
                ),
            },
            Decision::NotApplicable => {
                // The details come in statement order, one per statement.
                let unmet: Vec<String> = result
                    .statement_details
                    .iter()
                    .zip(&statements)
                    .filter(|(m, _)| {
                        m.effect == IAMEffect::Allow && m.reason == "Conditions not satisfied"
                    })
                    .map(|(_, s)| unmet_condition(s, &request, check))
                    .collect();
                let reason = if unmet.is_empty() {
                    format!("no statement allows {} on {}", check.action, check.resource)
                } else {
                    unmet.join("; ")
                };
                Verdict::Denied { reason }
            }
        }
    }

    fn request(&self, function: &str, check: &Check) -> Result<IAMRequest, String> {
        let resource = if check.resource == "*" {
            NO_RESOURCE
        } else {
            &check.resource
        };
        let resource =
            Arn::parse(resource).map_err(|e| format!("resource {}: {e}", check.resource))?;
        let mut context = iam_rs::Context::new();
        for (k, v) in &check.context {
            context.insert(k.clone(), v.clone());
        }
        Ok(IAMRequest::new_with_context(
            Principal::Aws(PrincipalId::String(self.principal_arn(function))),
            check.action.clone(),
            resource,
            context,
        ))
    }

    /// The actions the function's policies grant (as the template names them).
    pub fn granted_actions(&self, function: &str) -> BTreeSet<String> {
        self.documents(function)
            .iter()
            .flat_map(|d| &d.statement)
            .filter(|s| s.effect == IAMEffect::Allow)
            .flat_map(|s| match &s.action {
                Some(IAMAction::Single(a)) => vec![a.clone()],
                Some(IAMAction::Multiple(a)) => a.clone(),
                None => vec![],
            })
            .collect()
    }

    /// A copy with one statement of one function's policies removed.
    pub fn without_statement(&self, function: &str, sid: &str) -> Result<Self, String> {
        let mut copy = self.clone();
        let docs = copy
            .by_owner
            .get_mut(function)
            .ok_or_else(|| format!("no policy for {function}"))?;
        let mut removed = 0;
        for doc in docs.iter_mut() {
            let before = doc.statement.len();
            doc.statement.retain(|s| s.sid.as_deref() != Some(sid));
            removed += before - doc.statement.len();
        }
        if removed == 0 {
            return Err(format!("{function} has no statement {sid}"));
        }
        // A document left without statements is no policy any more.
        docs.retain(|d| !d.statement.is_empty());
        Ok(copy)
    }
}

fn evaluator(docs: Vec<IAMPolicy>) -> PolicyEvaluator {
    PolicyEvaluator::with_policies(docs).with_options(EvaluationOptions {
        collect_match_details: true,
        ..EvaluationOptions::default()
    })
}

fn sid_of(sid: Option<&str>) -> String {
    sid.map(str::to_string)
        .unwrap_or_else(|| "(no Sid)".to_string())
}

/// Which condition of a statement that matched the action and the resource
/// the request does not meet: each condition evaluated alone.
fn unmet_condition(statement: &IAMStatement, request: &IAMRequest, check: &Check) -> String {
    let sid = sid_of(statement.sid.as_deref());
    let Some(block) = &statement.condition else {
        return format!("statement {sid}: conditions not met");
    };
    let mut conditions: Vec<_> = block
        .conditions
        .iter()
        .flat_map(|(op, keys)| keys.iter().map(move |(k, v)| (op, k, v)))
        .collect();
    conditions.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
    for (op, key, value) in conditions {
        let mut alone = statement.clone();
        let mut only = iam_rs::ConditionBlock::new();
        only.add_condition(iam_rs::Condition::new(
            op.clone(),
            key.clone(),
            value.clone(),
        ));
        alone.condition = Some(only);
        let single = IAMPolicy::new().add_statement(alone);
        let met = matches!(
            evaluator(vec![single])
                .evaluate(request)
                .map(|r| r.decision),
            Ok(Decision::Allow)
        );
        if !met {
            let has = check
                .context
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(k, v)| format!("request has {k}={}", show(v)))
                .unwrap_or_else(|| format!("no {key}"));
            return format!("statement {sid}: condition {op} {key} not met ({has})");
        }
    }
    format!("statement {sid}: conditions not met")
}

fn show(v: &ContextValue) -> String {
    match v {
        ContextValue::String(s) => s.clone(),
        ContextValue::Boolean(b) => b.to_string(),
        ContextValue::Number(n) => n.to_string(),
        ContextValue::DateTime(d) => d.to_rfc3339(),
        ContextValue::StringList(l) => l.join(","),
        ContextValue::BooleanList(l) => l.iter().map(bool::to_string).collect::<Vec<_>>().join(","),
    }
}

/// What `!Ref` and `!GetAtt` give for the template's parameters, pseudo
/// parameters and the resources its policies name.
fn values(t: &Y, names: &Names) -> Result<Intrinsics, String> {
    let mut v = Intrinsics::new()
        .with_ref("AWS::Partition", PARTITION)
        .with_ref("AWS::Region", REGION)
        .with_ref("AWS::AccountId", ACCOUNT)
        .with_ref("AWS::URLSuffix", URL_SUFFIX)
        .with_ref("AWS::StackName", names.stack.as_str());
    for (name, p) in t["Parameters"].as_mapping().into_iter().flatten() {
        let name = name
            .as_str()
            .ok_or("a parameter name that is not a string")?;
        let list = p["Type"].as_str() == Some("CommaDelimitedList");
        let default = match &p["Default"] {
            Y::String(s) => Some(s.clone()),
            Y::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if let Some(d) = default {
            if list {
                let items: Vec<Value> = d.split(',').map(|s| json!(s)).collect();
                v.set_ref(name, items);
            } else {
                v.set_ref(name, d);
            }
        }
    }
    // The sandbox's values, whether or not the template declares them yet.
    v.set_ref("SenderEmail", names.sender.as_str());
    v.set_ref("InstanceRoleArns", json!(names.instance_role_arns));
    let stack = &names.stack;
    let resources = t["Resources"].as_mapping().into_iter().flatten();
    for (id, resource) in resources {
        let id = id.as_str().unwrap_or_default();
        let arn = |service: &str, rest: &str| {
            format!("arn:{PARTITION}:{service}:{REGION}:{ACCOUNT}:{rest}")
        };
        match resource["Type"].as_str().unwrap_or_default() {
            "AWS::Serverless::Function" => {
                let name = format!("{stack}-{id}");
                v.set_ref(id, name.as_str());
                v.set_attr(id, "Arn", &arn("lambda", &format!("function:{name}")));
                // The execution role SAM generates for the function.
                let role = format!("{stack}-{id}Role");
                v.set_ref(&format!("{id}Role"), role.as_str());
                v.set_attr(
                    &format!("{id}Role"),
                    "Arn",
                    &format!("arn:{PARTITION}:iam::{ACCOUNT}:role/{role}"),
                );
            }
            "AWS::DynamoDB::Table" => {
                v.set_ref(id, names.table.as_str());
                v.set_attr(
                    id,
                    "Arn",
                    &arn("dynamodb", &format!("table/{}", names.table)),
                );
            }
            "AWS::Serverless::StateMachine" => {
                v.set_ref(id, names.state_machine_arn.as_str());
                v.set_attr(id, "Arn", &names.state_machine_arn);
            }
            "AWS::Scheduler::ScheduleGroup" => {
                v.set_ref(id, names.schedule_group.as_str());
                v.set_attr(
                    id,
                    "Arn",
                    &arn(
                        "scheduler",
                        &format!("schedule-group/{}", names.schedule_group),
                    ),
                );
            }
            "AWS::IAM::Role" => {
                let arn = if id == "SchedulerRole" {
                    names.scheduler_role_arn.clone()
                } else {
                    format!("arn:{PARTITION}:iam::{ACCOUNT}:role/{stack}-{id}")
                };
                let arn = &arn;
                v.set_ref(id, arn.rsplit('/').next().unwrap_or(arn));
                v.set_attr(id, "Arn", arn);
            }
            "AWS::SQS::Queue" => {
                let name = format!("{stack}-{id}");
                v.set_ref(
                    id,
                    format!("https://sqs.{REGION}.{URL_SUFFIX}/{ACCOUNT}/{name}"),
                );
                v.set_attr(id, "Arn", &arn("sqs", &name));
                v.set_attr(id, "QueueName", &name);
            }
            _ => {}
        }
    }
    Ok(v)
}

/// A SAM `Policies` property: inline documents and policy templates, one
/// policy document each (SAM attaches each as an inline policy of the role).
fn sam_policies(policies: &Y, values: &Intrinsics) -> Result<Vec<IAMPolicy>, String> {
    // SAM takes a list, or one policy on its own.
    let list = match policies {
        Y::Null => vec![],
        Y::Sequence(s) => s.clone(),
        one => vec![one.clone()],
    };
    let mut docs = vec![];
    for p in &list {
        let Some(m) = p.as_mapping() else {
            return Err(format!(
                "managed policy {p:?} is not supported (its statements are not in the template)"
            ));
        };
        if m.contains_key("Statement") {
            docs.push(document(&values.resolve(p)?)?);
            continue;
        }
        let [(name, parameters)] = m.iter().collect::<Vec<_>>()[..] else {
            return Err(format!("unreadable policy {p:?}"));
        };
        let name = name.as_str().unwrap_or_default();
        docs.push(policy_template(name, &values.resolve(parameters)?)?);
    }
    Ok(docs)
}

/// A SAM policy template expanded as SAM's definition of it does. Only the
/// template the product uses is known; any other is an error, not a guess.
fn policy_template(name: &str, parameters: &Value) -> Result<IAMPolicy, String> {
    match name {
        // "Gives permission to invoke a Lambda Function, Alias or Version":
        // the trailing `*` covers the qualified ARNs.
        "LambdaInvokePolicy" => {
            let function = parameters["FunctionName"]
                .as_str()
                .ok_or("LambdaInvokePolicy without FunctionName")?;
            document(&json!({
                "Statement": [{
                    "Effect": "Allow",
                    "Action": ["lambda:InvokeFunction"],
                    "Resource": format!(
                        "arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{function}*"
                    ),
                }]
            }))
        }
        other => Err(format!("SAM policy template {other} is not supported")),
    }
}

/// One policy document as IAM stores it.
fn document(doc: &Value) -> Result<IAMPolicy, String> {
    let mut doc = doc.clone();
    let o = doc
        .as_object_mut()
        .ok_or("a policy document that is not a mapping")?;
    // SAM writes Version 2012-10-17 into the documents it generates.
    o.entry("Version").or_insert(json!("2012-10-17"));
    serde_json::from_value(doc).map_err(|e| format!("policy document: {e}"))
}

#[cfg(test)]
mod tests;
