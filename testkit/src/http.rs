//! HTTP GET for monitoring endpoints, through reqwest. Every answer carries its status code,
//! and the `*_json`/`*_ok` helpers fail unless it is 200.

use serde_json::Value;

/// One answer.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header, empty when absent.
    pub content_type: String,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The body, after asserting the status is 200.
    pub fn ok(self, url: &str) -> String {
        assert_eq!(self.status, 200, "GET {url}: {}", self.body);
        self.body
    }

    /// The body as JSON, after asserting the status is 200.
    pub fn json(self, url: &str) -> Value {
        let body = self.ok(url);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
    }
}

fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// GET `url`; panics only when there is no HTTP answer at all.
pub async fn get(url: &str) -> Response {
    let resp = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let content_type = content_type(resp.headers());
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
    Response {
        status,
        content_type,
        body,
    }
}

/// GET `url`, or the transport error (a monitor port that is not up yet, a closed server).
pub async fn try_get(url: &str) -> Result<Response, reqwest::Error> {
    let resp = reqwest::get(url).await?;
    let status = resp.status().as_u16();
    let content_type = content_type(resp.headers());
    let body = resp.text().await?;
    Ok(Response {
        status,
        content_type,
        body,
    })
}

/// GET `url`, assert 200, parse the JSON body.
pub async fn get_json(url: &str) -> Value {
    get(url).await.json(url)
}

/// GET from a test without a runtime.
pub fn get_blocking(url: &str) -> Response {
    let resp = reqwest::blocking::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let content_type = content_type(resp.headers());
    let body = resp
        .text()
        .unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
    Response {
        status,
        content_type,
        body,
    }
}

/// [`get_json`] from a test without a runtime.
pub fn get_json_blocking(url: &str) -> Value {
    get_blocking(url).json(url)
}
