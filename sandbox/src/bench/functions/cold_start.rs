//! One cold start of a bootstrap (or of the Python reference) against the
//! runtime-API stub: spawn→ready, spawn→response, the answer, the peak RSS
//! read from /proc before the process is killed, and the stages the
//! bootstrap marks on stderr when asked (`autosky_core::stage`).

use super::stub::{Stub, StubEvent};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One cold start: spawn→ready, spawn→response (when there was an event to
/// answer), the response, the peak RSS in bytes, and the stages the
/// bootstrap marked (with `marks`).
#[derive(Debug)]
pub struct ColdStart {
    pub ready_ms: f64,
    pub response_ms: Option<f64>,
    pub output: Option<Result<Value, String>>,
    pub peak_rss: u64,
    pub stages: Vec<Stage>,
}

/// A stage the bootstrap passed (`autosky_core::stage`): when, after the
/// spawn, and its peak RSS then.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub at_ms: f64,
    pub peak_rss: u64,
}

/// The stage of one `autosky-stage <stage> <unix µs> <peak RSS kB>` line,
/// timed from `spawned` (µs since the epoch).
pub fn parse_stage(line: &str, spawned: u128) -> Option<Stage> {
    let mut w = line.strip_prefix("autosky-stage ")?.split(' ');
    let (name, micros, kb) = (w.next()?, w.next()?, w.next()?);
    let micros: u128 = micros.parse().ok()?;
    Some(Stage {
        name: name.to_string(),
        at_ms: micros.saturating_sub(spawned) as f64 / 1000.0,
        peak_rss: kb.parse::<u64>().ok()? * 1024,
    })
}

/// Reads the child's stderr to its end: the stage marks, each line echoed
/// with BENCH_VERBOSE=1.
fn read_stages(
    stderr: std::process::ChildStderr,
    spawned: u128,
) -> std::thread::JoinHandle<Vec<Stage>> {
    std::thread::spawn(move || {
        use std::io::BufRead;
        let verbose = std::env::var_os("BENCH_VERBOSE").is_some();
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| {
                if verbose {
                    eprintln!("{line}");
                }
                parse_stage(&line, spawned)
            })
            .collect()
    })
}

/// The process's peak resident set (`VmHWM`, of its own address space
/// since exec). Not `ru_maxrss` from `wait4`: Linux carries the forking
/// parent's peak over exec into it, so a child of this (large) process
/// would report ours.
fn peak_rss(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("process {pid} exited early (BENCH_VERBOSE=1 shows its log)"))
}

/// Reads the child's peak RSS, then kills and reaps it.
async fn kill_and_reap(mut child: std::process::Child) -> Result<u64, String> {
    let peak = peak_rss(child.id());
    let _ = child.kill();
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    peak
}

/// Spawns `cmd` with the runtime API pointed at a fresh stub; when `event`
/// is given, serves it once and waits for the answer. With `marks` the
/// bootstrap marks its stages (a few /proc reads and stderr lines: kept
/// out of the rounds whose times the report budgets).
pub async fn cold_start(
    mut cmd: std::process::Command,
    function: &str,
    event: Option<Value>,
    marks: bool,
) -> Result<ColdStart, String> {
    if marks {
        cmd.env("AUTOSKY_STAGE_MARKS", "1");
    }
    let has_event = event.is_some();
    let mut stub = Stub::start(event.unwrap_or(Value::Null)).await?;
    cmd.env("AWS_LAMBDA_RUNTIME_API", stub.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        // Read for the stage marks; BENCH_VERBOSE=1 shows the functions' own
        // logs (diagnosis).
        .stderr(std::process::Stdio::piped());
    let spawned = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_micros();
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {function}: {e}"))?;
    let stages = child.stderr.take().map(|e| read_stages(e, spawned));
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    let outcome = async {
        let ready_ms = match stub
            .next_event(Duration::from_secs(30))
            .await
            .map_err(|e| format!("{function}: {e} (BENCH_VERBOSE=1 shows its log)"))?
        {
            StubEvent::Next(t) => ms(t),
            StubEvent::Done(_, _, body) => {
                return Err(format!(
                    "{function} failed to start: {}",
                    String::from_utf8_lossy(&body)
                ))
            }
        };
        if !has_event {
            return Ok((ready_ms, None, None));
        }
        loop {
            match stub.next_event(Duration::from_secs(60)).await? {
                StubEvent::Done(t, ok, body) => {
                    let output = if ok {
                        serde_json::from_slice(&body).map_err(|e| e.to_string())
                    } else {
                        Err(String::from_utf8_lossy(&body).into_owned())
                    };
                    // Let it get back to waiting for the next event (all the
                    // work of the invocation is then in its peak RSS).
                    let _ = stub.next_event(Duration::from_secs(5)).await;
                    return Ok((ready_ms, Some(ms(t)), Some(output)));
                }
                StubEvent::Next(_) => continue,
            }
        }
    }
    .await;
    let peak_rss = kill_and_reap(child).await?;
    let stages = match stages {
        // The pipe closed with the process: the reader ends.
        Some(reader) => tokio::task::spawn_blocking(move || reader.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "the stage reader panicked".to_string())?,
        None => vec![],
    };
    let (ready_ms, response_ms, output) = outcome?;
    Ok(ColdStart {
        ready_ms,
        response_ms,
        output,
        peak_rss,
        stages,
    })
}

/// Python's equivalent init: boto3 imported, an EC2 client created, then the
/// first `GET …/next` (urllib, as a minimal runtime loop would).
pub fn python_reference() -> std::process::Command {
    let mut cmd = std::process::Command::new("python3");
    // botocore reads the region from AWS_DEFAULT_REGION (the Lambda runtime sets both).
    cmd.env("AWS_DEFAULT_REGION", "us-east-1").args([
        "-c",
        "import os, urllib.request, boto3\n\
         boto3.client('ec2')\n\
         urllib.request.urlopen('http://' + os.environ['AWS_LAMBDA_RUNTIME_API'] + '/2018-06-01/runtime/invocation/next').read()\n",
    ]);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_mark_is_timed_from_the_spawn() {
        assert_eq!(
            parse_stage("autosky-stage logging 1000002500 3300", 1_000_000_000),
            Some(Stage {
                name: "logging".into(),
                at_ms: 2.5,
                peak_rss: 3300 * 1024
            })
        );
        for other in [
            "INFO action",
            "autosky-stage main x 1",
            "autosky-stage main 1",
        ] {
            assert_eq!(parse_stage(other, 0), None, "{other}");
        }
    }
}
