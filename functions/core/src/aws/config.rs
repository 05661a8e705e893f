//! The functions' one `SdkConfig`, built from the variables the Lambda
//! runtime sets rather than by `aws_config::load_from_env`.
//!
//! Why: the default loader's credential and region chains (profile files,
//! SSO, web identity through STS, ECS and IMDS) are reachable from its code
//! whatever the environment holds, so every binary linked them although a
//! Lambda function always gets its region and role credentials as
//! environment variables. Building the config from those variables alone
//! made each bootstrap smaller (BENCHMARKS.md, lever 6). Retries, timeouts,
//! the sleep and the HTTPS client are the service clients' own defaults for
//! the latest behavior version, as with the default loader.
//!
//! Honoured: `AWS_REGION` (else `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_AUTO_SCALING`) and
//! `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` — what the sandbox and Lambda use.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use std::collections::HashMap;

const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// The config from the process environment (variables that are not UTF-8
/// are none of ours, and skipped).
pub fn from_env() -> Result<SdkConfig, String> {
    from_vars(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
}

/// The config from `vars` (the environment, or a table in tests).
pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<SdkConfig, String> {
    let vars: HashMap<String, String> = vars
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let set = |k: &str| vars.get(k).cloned();
    let region = set("AWS_REGION")
        .or_else(|| set("AWS_DEFAULT_REGION"))
        .ok_or("AWS_REGION is not set: the Lambda runtime sets it; set it to run elsewhere")?;
    let ignore_endpoints =
        set("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    // Every AWS_ENDPOINT_URL_<SERVICE>, looked up when a client is built.
    let service_prefix = format!("{ENDPOINT_URL}_");
    let endpoints: HashMap<String, String> = if ignore_endpoints {
        HashMap::new()
    } else {
        vars.iter()
            .filter(|(k, _)| k.starts_with(&service_prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    // The execution role's credentials, valid for the execution environment's life.
    let (Some(key), Some(secret)) = (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) else {
        return Err(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set: the Lambda runtime \
                    sets them from the execution role; set them to run elsewhere"
                .into(),
        );
    };
    let credentials = Credentials::new(key, secret, set("AWS_SESSION_TOKEN"), None, "Environment");
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .service_config(ServiceEndpoints(endpoints));
    if !ignore_endpoints {
        if let Some(url) = set(ENDPOINT_URL) {
            b = b.endpoint_url(url);
        }
    }
    Ok(b.build())
}

/// `AWS_ENDPOINT_URL_<SERVICE>`, the service id upper-cased with `_` for
/// spaces, as the SDK names them; nothing else is read from here.
#[derive(Debug)]
struct ServiceEndpoints(HashMap<String, String>);

impl LoadServiceConfig for ServiceEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != ENDPOINT_URL {
            return None;
        }
        let service = key.service_id().to_ascii_uppercase().replace(' ', "_");
        self.0.get(&format!("{ENDPOINT_URL}_{service}")).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::ProvideCredentials;

    fn config(vars: &[(&str, &str)]) -> Result<SdkConfig, String> {
        from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn endpoint(c: &SdkConfig, service_id: &str) -> Option<String> {
        let key = ServiceConfigKey::builder()
            .service_id(service_id)
            .env(ENDPOINT_URL)
            .profile("endpoint_url")
            .build()
            .unwrap();
        c.service_config()
            .and_then(|s| s.load_config(key))
            .or_else(|| c.endpoint_url().map(str::to_string))
    }

    const KEYS: [(&str, &str); 2] = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")];

    #[test]
    fn without_a_region_or_credentials_the_start_fails_clearly() {
        let err = config(&KEYS).unwrap_err();
        assert!(err.contains("AWS_REGION"), "{err}");
        let err = config(&[("AWS_REGION", "eu-west-1"), KEYS[0]]).unwrap_err();
        assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
        let c = config(&[("AWS_DEFAULT_REGION", "eu-west-3"), KEYS[0], KEYS[1]]).unwrap();
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-3"));
        let c = config(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "x"),
            KEYS[0],
            KEYS[1],
        ])
        .unwrap();
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-1"));
    }

    #[tokio::test]
    async fn credentials_are_the_role_credentials_of_the_environment() {
        let c = config(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ])
        .unwrap();
        let creds = c
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(creds.session_token(), Some("token"));
        assert_eq!(c.behavior_version(), Some(BehaviorVersion::latest()));
    }

    #[test]
    fn service_endpoints_override_the_general_one_unless_ignored() {
        let vars = [
            ("AWS_REGION", "us-east-1"),
            KEYS[0],
            KEYS[1],
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_AUTO_SCALING", "http://127.0.0.1:2"),
            ("AWS_ENDPOINT_URL_SCHEDULER", "http://127.0.0.1:3"),
            ("AWS_ENDPOINT_URL_SES", " "),
        ];
        let c = config(&vars).unwrap();
        assert_eq!(
            endpoint(&c, "Scheduler").as_deref(),
            Some("http://127.0.0.1:3")
        );
        // A blank one is unset.
        assert_eq!(endpoint(&c, "SES").as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(
            endpoint(&c, "Auto Scaling").as_deref(),
            Some("http://127.0.0.1:2")
        );
        assert_eq!(
            endpoint(&c, "DynamoDB").as_deref(),
            Some("http://127.0.0.1:1")
        );
        let c = config(&[("AWS_REGION", "us-east-1"), KEYS[0], KEYS[1]]).unwrap();
        assert_eq!(endpoint(&c, "EC2"), None);
        let mut ignored = vars.to_vec();
        ignored.push(("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"));
        let c = config(&ignored).unwrap();
        assert_eq!(endpoint(&c, "Auto Scaling"), None);
        assert_eq!(endpoint(&c, "DynamoDB"), None);
    }

    #[tokio::test]
    async fn a_client_sends_to_the_configured_endpoint() {
        // A real request through a client built from this config reaches the
        // service-specific endpoint (a loopback listener), signed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            let body = "{}";
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        let url = format!("http://127.0.0.1:{port}");
        let c = config(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_ENDPOINT_URL_DYNAMODB", &url),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ])
        .unwrap();
        let client = aws_sdk_dynamodb::Client::new(&c);
        client.list_tables().send().await.unwrap();
        let request = seen.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("post / http/1.1"), "{request}");
        assert!(request.contains("x-amz-target: dynamodb_20120810.listtables"));
        assert!(request.contains("credential=akidexample/"));
        assert!(request.contains("/eu-west-1/dynamodb/aws4_request"));
    }
}
