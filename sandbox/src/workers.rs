//! Activity workers: one polling loop per step that runs exactly the handler
//! the Lambda binary runs (`steps::run`) and reports a failure with the same
//! stable error name (`SendTaskFailure`), with the cause shaped like a Lambda
//! error (`{"errorType", "errorMessage"}`), so Retry/Catch behave as on AWS.

use autosky_core::domain::StepName;
use autosky_core::steps;
use autosky_core::Deps;
use std::sync::Arc;
use std::time::Duration;

pub fn spawn(deps: Arc<Deps>, sfn: aws_sdk_sfn::Client, activities: Vec<(StepName, String)>) {
    for (step, arn) in activities {
        let (deps, sfn) = (deps.clone(), sfn.clone());
        tokio::spawn(async move {
            loop {
                match sfn
                    .get_activity_task()
                    .activity_arn(&arn)
                    .worker_name(step.function())
                    .send()
                    .await
                {
                    Ok(task) => match task.task_token() {
                        Some(token) if !token.is_empty() => {
                            let input = task.input().unwrap_or("{}").to_string();
                            let (deps, sfn, token) = (deps.clone(), sfn.clone(), token.to_string());
                            tokio::spawn(
                                async move { work(step, &deps, &sfn, token, input).await },
                            );
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    },
                    Err(e) => {
                        tracing::debug!(error = ?e, "GetActivityTask");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        });
    }
}

async fn work(
    step: StepName,
    deps: &Deps,
    sfn: &aws_sdk_sfn::Client,
    token: String,
    input: String,
) {
    let payload = serde_json::from_str(&input).unwrap_or(serde_json::Value::Null);
    let sent = match steps::run(step, deps, payload).await {
        Ok(output) => sfn
            .send_task_success()
            .task_token(&token)
            .output(output.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}")),
        Err(e) => {
            let cause = serde_json::json!({"errorType": e.name(), "errorMessage": e.message()});
            sfn.send_task_failure()
                .task_token(&token)
                .error(e.name())
                .cause(cause.to_string())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }
    };
    if let Err(e) = sent {
        tracing::warn!(step = step.function(), error = %e, "could not report the task result");
    }
}
