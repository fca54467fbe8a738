//! The static page (owned by the page's authors): `GET /` and `GET /page/{file}`, compiled in
//! with `include_str!`. The page holds no data; it reads the API with the key the user gives it.

use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};

use super::error::{ApiError, ApiPath};

const INDEX: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// `GET /`.
pub(crate) async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// `GET /page/{file}`.
pub(crate) async fn asset(ApiPath(file): ApiPath<String>) -> Result<Response, ApiError> {
    let (body, mime) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return Err(ApiError::not_found("page file", file)),
    };
    Ok(([(CONTENT_TYPE, mime)], body).into_response())
}
