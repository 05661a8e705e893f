//! Forwarding a request to the emulator as it came (but for its Host), and
//! its answer back (but for the hop-by-hop headers).

use super::{xml, Bridge};
use crate::http;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};

impl Bridge {
    pub(super) async fn forward(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let uri = format!(
            "{}{}",
            self.emulator,
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        );
        let mut req = Request::builder().method(parts.method).uri(uri);
        for (k, v) in parts
            .headers
            .iter()
            .filter(|(k, _)| *k != hyper::header::HOST)
        {
            req = req.header(k, v);
        }
        let Ok(req) = req.body(Full::new(body)) else {
            return xml::error(500, "InternalFailure", "bridge could not build the request");
        };
        match http::send_with(http::pooled(), req).await {
            Ok((status, headers, body)) => {
                let mut res = Response::builder().status(status);
                // All but hop-by-hop headers: JSON protocols carry the error
                // type in x-amzn-errortype.
                for (k, v) in headers.iter().filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "connection" | "transfer-encoding" | "content-length" | "keep-alive"
                    )
                }) {
                    res = res.header(k, v);
                }
                res.body(Full::new(body)).expect("copied response parts")
            }
            Err(e) => xml::error(
                502,
                "ServiceUnavailable",
                &format!("emulator unreachable: {e}"),
            ),
        }
    }
}
