//! Who is calling: each function of `template.yaml` whose calls pass the
//! gateway signs with an access key of its own, so the gateway reads the
//! caller from the SigV4 `Authorization` header, as AWS reads the role
//! session from the key. Any other key (the sandbox's own `test` clients:
//! provisioning, seeding, the harness, the activity polling that the Lambda
//! service does on AWS) is not a function and is not authorized here.

use autosky_core::api::Function;
use autosky_core::domain::StepName;

const KEY_PREFIX: &str = "AKIASANDBOX";

/// The function that runs a step, by its logical id in `template.yaml`:
/// the state machine's substitution key without `Arn`
/// (`ValidateFunctionArn` → `ValidateFunction`).
pub fn of_step(step: StepName) -> String {
    let key = step.substitution_key();
    key.strip_suffix("Arn").unwrap_or(&key).to_string()
}

/// The function that serves an API route (`api` → `ApiFunction`).
pub fn of_route(function: Function) -> String {
    let binary = function.binary();
    let mut name = binary[..1].to_ascii_uppercase();
    name.push_str(&binary[1..]);
    name + "Function"
}

/// The function EventBridge invokes with the EC2 and Auto Scaling events
/// that wake a waiting deployment.
pub const RESUME: &str = "ResumeFunction";

/// Every function whose calls pass the gateway.
pub fn functions() -> Vec<String> {
    let mut all: Vec<String> = StepName::ALL.into_iter().map(of_step).collect();
    all.extend([Function::Api, Function::Schedules].map(of_route));
    all.push(RESUME.into());
    all
}

/// The access key id a function signs with (`AKIASANDBOXVALIDATEFUNCTION`).
pub fn access_key(function: &str) -> String {
    format!("{KEY_PREFIX}{}", function.to_ascii_uppercase())
}

/// The function an access key belongs to; None for any other key.
pub fn function_of(access_key: &str) -> Option<String> {
    let name = access_key.strip_prefix(KEY_PREFIX)?;
    functions()
        .into_iter()
        .find(|f| f.eq_ignore_ascii_case(name))
}

/// The access key id of a request, from its SigV4 credential
/// (`Credential=AKID/date/region/service/aws4_request`).
pub fn access_key_of(headers: &hyper::HeaderMap) -> Option<&str> {
    headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split("Credential=")
        .nth(1)?
        .split('/')
        .next()
}

/// An SDK config that signs as `function`, aimed where `base` aims.
pub fn config_as(base: &aws_config::SdkConfig, function: &str) -> aws_config::SdkConfig {
    let key = aws_sdk_ec2::config::Credentials::new(
        access_key(function),
        "sandbox",
        None,
        None,
        "sandbox-function",
    );
    base.to_builder()
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(key))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_has_a_key_that_names_it_back() {
        for f in functions() {
            assert_eq!(function_of(&access_key(&f)), Some(f));
        }
        assert_eq!(function_of("test"), None);
        assert_eq!(function_of("AKIASANDBOXNOSUCHFUNCTION"), None);
    }

    #[test]
    fn steps_routes_and_the_resume_function_map_to_the_template_functions() {
        assert_eq!(
            functions(),
            [
                "ValidateFunction",
                "StopPreparationServerFunction",
                "CreateImageFunction",
                "CreateModelsFunction",
                "ReplaceInstancesFunction",
                "FinalizeFunction",
                "ApiFunction",
                "SchedulesFunction",
                "ResumeFunction",
            ]
        );
    }

    #[test]
    fn reads_the_key_from_the_authorization_header() {
        let mut h = hyper::HeaderMap::new();
        h.insert(
            hyper::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AKIASANDBOXAPIFUNCTION/20261130/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0"
                .parse()
                .unwrap(),
        );
        assert_eq!(access_key_of(&h), Some("AKIASANDBOXAPIFUNCTION"));
        assert_eq!(
            function_of(access_key_of(&h).unwrap()).as_deref(),
            Some("ApiFunction")
        );
    }
}
