//! The local AWS emulator (fakecloud 0.51.0): found or installed, started on
//! a free loopback port, health-checked, and killed with us (it is a child
//! that receives SIGKILL when this process dies, so nothing is left behind);
//! and its IAM, reached without an IAM SDK ([`iam`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub const FAKECLOUD_VERSION: &str = "0.51.0";

pub struct Emulator {
    child: Child,
    pub port: u16,
}

impl Emulator {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn start(port: u16) -> Result<Self, String> {
        let bin = find_or_install().await?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            // The account the template's policies are resolved in: the ARNs
            // the emulator hands out (groups, roles, state machines) must
            // name it, and fakecloud's default account is another one.
            .args(["--account-id", crate::iam::ACCOUNT])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(port))
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill
        // the emulator when this process dies, even by SIGKILL.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut emu = Self { child, port };
        emu.wait_healthy(Duration::from_secs(30)).await?;
        Ok(emu)
    }

    async fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "fakecloud exited during start ({status}); see {}",
                    log_path(self.port).display()
                ));
            }
            if let Ok((200, _)) =
                crate::http::get(&format!("{}/_fakecloud/health", self.url())).await
            {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!("fakecloud not healthy after {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn log_path(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("autosky-fakecloud-{port}.log"))
}

fn log_file(port: u16) -> Stdio {
    std::fs::File::create(log_path(port))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// `FAKECLOUD_BIN`, then `fakecloud` on PATH or in ~/.cargo/bin at the pinned
/// version; otherwise installs it with scripts/install-emulator.sh (the
/// one-time build).
pub async fn find_or_install() -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("FAKECLOUD_BIN") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from("fakecloud"));
    if let Ok(home) = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
    {
        candidates.push(PathBuf::from(home).join("bin/fakecloud"));
    }
    for c in &candidates {
        if version_of(c)
            .await
            .as_deref()
            .is_some_and(|v| v.contains(FAKECLOUD_VERSION))
        {
            return Ok(c.clone());
        }
    }
    // One install procedure for every command (the same profile, progress and
    // messages as `make emulator`): the script in scripts/.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/install-emulator.sh"
    );
    let status = Command::new("bash")
        .arg(script)
        .status()
        .await
        .map_err(|e| format!("{script}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "installing fakecloud {FAKECLOUD_VERSION} failed ({status})"
        ));
    }
    for c in &candidates {
        if version_of(c).await.is_some() {
            return Ok(c.clone());
        }
    }
    Err("fakecloud installed but not found on PATH or in ~/.cargo/bin".into())
}

async fn version_of(bin: &PathBuf) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().await.ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One IAM query-protocol request to the emulator; its status and body. The
/// sandbox links no IAM SDK for its two uses (the seed's instance profile,
/// the enforcement's look-up of a profile's role): the emulator routes a form
/// request by the Authorization header's credential scope and does not check
/// the signature, so the header only names the service.
pub async fn iam(
    emulator: &str,
    action: &str,
    params: &[(&str, &str)],
) -> Result<(u16, String), String> {
    // Built before any await: the serializer is not Send.
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action);
        form.append_pair("Version", "2010-05-08");
        for (k, v) in params {
            form.append_pair(k, v);
        }
        form.finish()
    };
    let req = hyper::Request::post(format!("{}/", emulator.trim_end_matches('/')))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host, Signature=0",
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let (status, _, body) = crate::http::send(req).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
