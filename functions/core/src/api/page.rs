//! The Deployments page: three static assets embedded in the binary (no CDN,
//! works offline), served without authentication because they hold no data —
//! every call the page makes goes to the protected API routes with the
//! caller's credentials.

use super::ApiResponse;

/// The page's routes (method, path, content type, body).
pub const PAGE_ROUTES: [(&str, &str, &str, &str); 3] = [
    (
        "GET",
        "/",
        "text/html; charset=utf-8",
        include_str!("../../../../web/index.html"),
    ),
    (
        "GET",
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../../web/app.js"),
    ),
    (
        "GET",
        "/app.css",
        "text/css; charset=utf-8",
        include_str!("../../../../web/app.css"),
    ),
];

/// Only our own files, no inline code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The asset at `path` (also `/index.html`), if any.
pub fn serve(method: &str, path: &str) -> Option<ApiResponse> {
    let path = if path == "/index.html" { "/" } else { path };
    let (_, _, content_type, body) = PAGE_ROUTES
        .iter()
        .find(|(m, p, _, _)| *m == method && *p == path)?;
    Some(ApiResponse {
        status: 200,
        headers: vec![
            ("content-type".into(), (*content_type).into()),
            ("cache-control".into(), "no-cache".into()),
            ("content-security-policy".into(), CSP.into()),
            ("x-content-type-options".into(), "nosniff".into()),
            ("referrer-policy".into(), "no-referrer".into()),
        ],
        body: body.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_small_self_contained_and_locked_down() {
        let total: usize = PAGE_ROUTES.iter().map(|(_, _, _, b)| b.len()).sum();
        assert!(total <= 150 * 1024, "page is {total} bytes");
        for (_, path, _, body) in PAGE_ROUTES {
            // Offline: nothing loaded from another origin.
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path} refers to another origin"
            );
        }
        let html = serve("GET", "/").unwrap();
        assert!(html
            .header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'"));
        let body = String::from_utf8(html.body).unwrap();
        assert!(!body.contains("<script>"), "no inline script (CSP)");
        assert!(body.contains("Deploy new version") && body.contains("Deployment history"));
        assert!(serve("GET", "/app.js").is_some() && serve("POST", "/").is_none());
        assert!(serve("GET", "/secret").is_none());
    }
}
