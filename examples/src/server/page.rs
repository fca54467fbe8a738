//! The static page (owned by the page's authors): `GET /` and `GET /page/{file}`, compiled in
//! with `include_str!`. The page holds no data; it reads the API with the key the user gives it
//! (`/#key=…`) and follows `/api/events`. Its ES modules: `api.js` (key, fetch, event stream),
//! `dom.js` (elements from text, never from markup), `format.js`, `dag.js` (the task graph as
//! SVG), `panels.js` (one render function per panel) and `app.js` (state, refresh, wiring).

use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};

use super::error::{ApiError, ApiPath};

const INDEX: &str = include_str!("page/index.html");
const STYLE_CSS: &str = include_str!("page/style.css");

/// The page's ES modules, by file name (no build step: the browser loads them as they are).
const MODULES: &[(&str, &str)] = &[
    ("app.js", include_str!("page/app.js")),
    ("api.js", include_str!("page/api.js")),
    ("dag.js", include_str!("page/dag.js")),
    ("dom.js", include_str!("page/dom.js")),
    ("format.js", include_str!("page/format.js")),
    ("panels.js", include_str!("page/panels.js")),
];

/// `GET /`.
pub(crate) async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// `GET /page/{file}`.
pub(crate) async fn asset(ApiPath(file): ApiPath<String>) -> Result<Response, ApiError> {
    let (body, mime) = match MODULES.iter().find(|(name, _)| *name == file) {
        Some((_, js)) => (*js, "text/javascript; charset=utf-8"),
        None if file == "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        None => return Err(ApiError::not_found("page file", file)),
    };
    Ok(([(CONTENT_TYPE, mime)], body).into_response())
}
