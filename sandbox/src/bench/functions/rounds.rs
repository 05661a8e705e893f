//! The cold-start rounds: per round, the six step functions on one seeded
//! deployment in pipeline order, then the API's two functions on their
//! sample requests and the resume function on its sample event, the floor
//! and the Python reference; and the marked
//! rounds that break each start into its stages.

use super::cold_start::{cold_start, python_reference, Stage};
use super::samples::{finish_in_process, http_sample_event, sample_event, seed_deployment};
use super::{FunctionResult, Options, FLOOR, FUNCTIONS};
use crate::{harness, Clients};
use autosky_core::domain::StepName;
use serde_json::json;
use std::collections::BTreeMap;

/// The six steps' cold starts, `opts.runs` rounds on environment `env`; a
/// step that answered "not done yet" is finished in-process before the next.
pub async fn steps(
    c: &Clients,
    opts: &Options,
    env: &str,
    functions: &mut BTreeMap<&str, FunctionResult>,
) -> Result<(), String> {
    for round in 0..opts.runs {
        let id = seed_deployment(c, env).await?;
        for (i, step) in StepName::ALL.iter().enumerate() {
            let f = FUNCTIONS[i];
            let event = sample_event(&opts.events, f, env, &id)?;
            let cs = cold_start(
                std::process::Command::new(opts.bootstrap(f)),
                f,
                Some(event.clone()),
                false,
            )
            .await?;
            let r = functions.get_mut(f).ok_or("unknown function")?;
            r.record(&cs);
            match cs.output {
                Some(Ok(output)) => {
                    finish_in_process(&harness::deps(c, *step), *step, event, output).await?
                }
                Some(Err(e)) => {
                    r.errors.push(format!("round {round}: {e}"));
                    return Err(format!("{f} answered an error to its sample event: {e}"));
                }
                None => {}
            }
        }
        eprint!("\rbench: cold starts, round {}/{}", round + 1, opts.runs);
    }
    eprintln!();

    Ok(())
}

/// The API's two functions on their sample HTTP API requests, and the
/// resume function on its sample event.
pub async fn api_functions(
    c: &Clients,
    opts: &Options,
    env: &str,
    functions: &mut BTreeMap<&str, FunctionResult>,
) -> Result<(), String> {
    // Their sample HTTP API (payload v2) requests, the
    // history page for `api` and a new schedule for `schedules`.
    for run in 0..opts.runs {
        for (f, file, expected) in [
            ("api", "api-history.json", 200),
            ("schedules", "schedules-create.json", 201),
        ] {
            let event = http_sample_event(&opts.events, file, env, run)?;
            let cs = cold_start(command(c, opts, f), f, Some(event), false).await?;
            functions.get_mut(f).ok_or("unknown function")?.record(&cs);
            match cs.output {
                Some(Ok(v)) if v.get("statusCode") == Some(&json!(expected)) => {}
                other => return Err(format!("{f} answered {other:?} to its request")),
            }
        }
        // The resume function on its sample event: an instance no wait is
        // registered under, so it looks and wakes nothing.
        let event = super::samples::resume_sample_event(&opts.events)?;
        let cs = cold_start(command(c, opts, "resume"), "resume", Some(event), false).await?;
        functions
            .get_mut("resume")
            .ok_or("unknown function")?
            .record(&cs);
        match cs.output {
            Some(Ok(v)) if v["woke"].is_null() && v["key"].is_string() => {}
            other => return Err(format!("resume answered {other:?} to its event")),
        }
    }

    Ok(())
}

/// `runs` spawn→ready times of the Python reference.
pub async fn python(runs: usize) -> Result<Vec<f64>, String> {
    let mut python = Vec::new();
    for _ in 0..runs {
        python.push(
            cold_start(python_reference(), "python-boto3", None, false)
                .await?
                .ready_ms,
        );
    }
    Ok(python)
}

/// `runs` cold starts of the floor (`sandbox/floor`) answering an event.
pub async fn floor(opts: &Options) -> Result<FunctionResult, String> {
    let mut floor = FunctionResult::default();
    for _ in 0..opts.runs {
        let cs = cold_start(
            std::process::Command::new(opts.bootstrap(FLOOR)),
            FLOOR,
            Some(json!({"floor": true})),
            false,
        )
        .await?;
        match &cs.output {
            Some(Ok(v)) if v == &json!({"floor": true}) => floor.record(&cs),
            other => return Err(format!("the floor answered {other:?}")),
        }
    }
    Ok(floor)
}

/// The bootstrap of `f` as it runs on AWS: the API functions get their own
/// configuration (template.yaml sets it there).
fn command(c: &Clients, opts: &Options, f: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(opts.bootstrap(f));
    if f == "api" || f == "schedules" {
        cmd.env("STATE_MACHINE_ARN", &c.endpoints.state_machine_arn)
            .env("SCHEDULE_GROUP", crate::provision::SCHEDULE_GROUP)
            .env("SCHEDULER_ROLE_ARN", crate::provision::SCHEDULER_ROLE);
    }
    cmd
}

/// `runs` marked cold starts (spawn→ready, no event) of every function and
/// the floor, in rounds of their own: what each start is made of.
pub async fn stages(
    c: &Clients,
    opts: &Options,
) -> Result<BTreeMap<&'static str, Vec<Vec<Stage>>>, String> {
    let mut stages: BTreeMap<&'static str, Vec<Vec<Stage>>> = BTreeMap::new();
    let runs = FUNCTIONS
        .iter()
        .map(|f| (*f, *f, &[][..]))
        .chain(ROOT_VARIANTS)
        .chain([(FLOOR, FLOOR, &[][..])]);
    for _ in 0..opts.runs {
        for (row, f, vars) in runs.clone() {
            let mut cmd = command(c, opts, f);
            cmd.envs(vars.iter().copied());
            let cs = cold_start(cmd, f, None, true).await?;
            let mut marks = cs.stages;
            marks.push(Stage {
                name: READY.into(),
                at_ms: cs.ready_ms,
                peak_rss: cs.peak_rss,
            });
            stages.entry(row).or_default().push(marks);
        }
    }
    Ok(stages)
}

/// A marked round's row: its name, the function, the variables it adds.
pub type Variant = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// `validate` again with fewer native root certificates to load (rustls'
/// native roots are read while the clients are built: the file named by
/// `SSL_CERT_FILE` and every file of `SSL_CERT_DIR`, each found by
/// openssl-probe when unset): what the root certificates cost.
pub const ROOT_VARIANTS: [Variant; 2] = [
    (
        "validate, CA bundle file only",
        "validate",
        &[("SSL_CERT_DIR", "/nonexistent")],
    ),
    (
        "validate, no root certificate",
        "validate",
        &[
            ("SSL_CERT_DIR", "/nonexistent"),
            ("SSL_CERT_FILE", "/nonexistent"),
        ],
    ),
];

/// The last stage of a start: its first `GET …/next`.
pub const READY: &str = "ready";
