//! The sample events in events/ (used with `cargo lambda invoke --data-file`)
//! stay valid inputs of their function: one per function at least, each
//! parsing as the type that step reads, or for the API's functions as an HTTP
//! API request for one of that function's routes, from an authenticated caller.

use autosky_core::domain::StepName;
use autosky_core::steps::{cleanup, StateWithExecution, StepInput};
use std::path::PathBuf;

#[test]
fn every_step_has_a_sample_event_that_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    for step in StepName::ALL {
        let mine: Vec<_> = files
            .iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(step.function())
            })
            .collect();
        assert!(!mine.is_empty(), "no sample event for {}", step.function());
        for path in mine {
            let text = std::fs::read_to_string(path).unwrap();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let ok = match step {
                StepName::InitialValidation => serde_json::from_value::<StateWithExecution>(value)
                    .map(|e| e.state.deployment_id),
                // The safety net's EventBridge event: the deployment is in the execution input.
                StepName::Finalization if cleanup::is_status_change(&value) => {
                    serde_json::from_value::<cleanup::StatusChangeEvent>(value).map(|e| {
                        let input: StepInput =
                            serde_json::from_str(e.detail.input.as_deref().unwrap()).unwrap();
                        input.deployment_id
                    })
                }
                // A waiting state's callback payload: the state, the token, the keys.
                _ if autosky_core::steps::wake::is_wait(&value) => {
                    assert!(value["taskToken"].is_string() && value["wakeOn"].is_array());
                    serde_json::from_value::<StepInput>(value["state"].clone())
                        .map(|i| i.deployment_id)
                }
                _ => serde_json::from_value::<StepInput>(value).map(|i| i.deployment_id),
            };
            let id = ok.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                autosky_core::domain::valid_deployment_id(&id),
                "{}",
                path.display()
            );
        }
    }
}

#[cfg(feature = "http")]
#[test]
fn every_api_function_has_a_sample_request_for_one_of_its_routes() {
    use autosky_core::api::{lambda::to_api_request, route_of, Function};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events");
    for function in [Function::Api, Function::Schedules] {
        let prefix = format!("{}-", function.binary());
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if !name.starts_with(&prefix) || !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let req = lambda_http::request::from_str(&text)
                .unwrap_or_else(|e| panic!("{name}: not an HTTP API request: {e}"));
            let r = to_api_request(&req, autosky_core::api::DEFAULT_GROUPS_CLAIM);
            assert_eq!(
                route_of(&r.method, &r.path).map(|route| route.function()),
                Some(function),
                "{name}"
            );
            assert!(r.identity.is_some(), "{name}: no authenticated caller");
            seen += 1;
        }
        assert!(seen > 0, "no sample request for {}", function.binary());
    }
}

/// The resume function's samples are the events AWS sends: each names the
/// key of the resource a wait is registered under.
#[test]
fn the_resume_functions_samples_name_a_wake_up_key() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut keys = vec![];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.starts_with("resume-") || !name.ends_with(".json") {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let key = autosky_core::steps::wake::key_of_event(&value)
            .unwrap_or_else(|| panic!("{name}: names no wake-up key"));
        keys.push(key.split(':').next().unwrap().to_string());
    }
    keys.sort();
    assert_eq!(
        keys,
        ["group", "image", "instance"],
        "one sample per kind of wait"
    );
}
