//! The API client: JSON over HTTP(S) to the Deployments API. Requests to an
//! AWS endpoint (https) are SigV4-signed for `execute-api` with the standard
//! AWS credential chain, or carry a bearer token (`--token`, JWT authorizer);
//! plain http (the local sandbox) is sent as is. API errors come back as
//! `ApiError` with the problem's detail and field.

use aws_credential_types::provider::ProvideCredentials;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// How requests are authenticated.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    Bearer(String),
    SigV4 { region: String },
}

#[derive(Debug)]
pub enum ApiError {
    /// The API answered with an error (problem+json).
    Problem {
        status: u16,
        detail: String,
        field: Option<String>,
        body: Value,
    },
    /// The API could not be reached or answered something unreadable.
    Transport(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Problem {
                status,
                detail,
                field,
                ..
            } => {
                write!(f, "{detail} (HTTP {status}")?;
                if let Some(field) = field {
                    write!(f, ", field {field}")?;
                }
                write!(f, ")")
            }
            Self::Transport(m) => write!(f, "{m}"),
        }
    }
}

pub struct ApiClient {
    base: String,
    auth: Auth,
    http: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl ApiClient {
    pub fn new(base: &str, auth: Auth) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "the API URL must start with http:// or https:// (got '{base}')"
            ));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base,
            auth,
            http: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// The authentication that suits `base`: SigV4 for https unless a token is given.
    pub fn auth_for(base: &str, token: Option<String>, region: Option<String>) -> Auth {
        match token {
            Some(t) => Auth::Bearer(t),
            None if base.starts_with("https://") => Auth::SigV4 {
                region: region
                    .or_else(|| region_of(base))
                    .unwrap_or_else(|| "us-east-1".into()),
            },
            None => Auth::None,
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.call("GET", path, None).await
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("accept", "application/json")
            .header(
                "user-agent",
                concat!("autosky-cli/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(Full::new(Bytes::from(bytes.clone())))
            .map_err(|e| ApiError::Transport(format!("bad request {method} {url}: {e}")))?;
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(t) => {
                let v = format!("Bearer {t}").parse().map_err(|_| {
                    ApiError::Transport("the token has characters a header cannot carry".into())
                })?;
                req.headers_mut().insert("authorization", v);
            }
            Auth::SigV4 { region } => sign(&mut req, region, bytes.as_bytes())
                .await
                .map_err(ApiError::Transport)?,
        }
        let res = tokio::time::timeout(Duration::from_secs(35), self.http.request(req))
            .await
            .map_err(|_| ApiError::Transport(format!("{method} {url}: no answer within 35 s")))?
            .map_err(|e| {
                ApiError::Transport(format!(
                    "cannot reach the API at {}: {e}{}",
                    self.base,
                    std::error::Error::source(&e)
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                ))
            })?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::Transport(format!("reading the answer: {e}")))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let detail = value["detail"]
            .as_str()
            .map(str::to_string)
            .or_else(|| value["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&body);
                if text.trim().is_empty() {
                    format!("HTTP {status}")
                } else {
                    text.chars().take(300).collect()
                }
            });
        Err(ApiError::Problem {
            status,
            detail,
            field: value["field"].as_str().map(str::to_string),
            body: value,
        })
    }
}

/// `https://{id}.execute-api.{region}.amazonaws.com` → region.
fn region_of(base: &str) -> Option<String> {
    let host = base
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()?;
    let mut parts = host.split('.');
    let (_, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "execute-api").then(|| region.to_string())
}

async fn sign(
    req: &mut hyper::Request<Full<Bytes>>,
    region: &str,
    body: &[u8],
) -> Result<(), String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .load()
        .await;
    let creds = config
        .credentials_provider()
        .ok_or("no AWS credentials provider: set AWS_PROFILE or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")?
        .provide_credentials()
        .await
        .map_err(|e| format!("no AWS credentials to sign the request: {e}"))?;
    let identity = creds.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("signing: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_follows_the_url_and_the_token() {
        assert_eq!(
            ApiClient::auth_for("http://127.0.0.1:8080", None, None),
            Auth::None
        );
        assert_eq!(
            ApiClient::auth_for(
                "https://abc.execute-api.eu-west-3.amazonaws.com",
                None,
                None
            ),
            Auth::SigV4 {
                region: "eu-west-3".into()
            }
        );
        assert_eq!(
            ApiClient::auth_for("https://deploy.example.com", Some("t".into()), None),
            Auth::Bearer("t".into())
        );
    }

    #[tokio::test]
    async fn a_signed_request_carries_a_sigv4_authorization() {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
        let mut req = hyper::Request::builder()
            .method("GET")
            .uri("https://abc.execute-api.eu-west-3.amazonaws.com/environments")
            .header("host", "abc.execute-api.eu-west-3.amazonaws.com")
            .body(Full::new(Bytes::new()))
            .unwrap();
        sign(&mut req, "eu-west-3", b"").await.unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(
            auth.contains("/eu-west-3/execute-api/aws4_request"),
            "{auth}"
        );
        assert!(req.headers().contains_key("x-amz-date"));
    }
}
