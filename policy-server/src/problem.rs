//! Every error answer is RFC 9457 problem details (`application/problem+json`), naming what was
//! wrong; nothing a client sends is echoed back beyond the field it got wrong.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use postwarden_wire::v1::{FieldError, Problem, PROBLEM_CONTENT_TYPE};

/// An error answer. Build it with the constructors; it renders as problem+json.
#[derive(Debug)]
pub struct ApiError {
    /// Boxed: handlers return `Result<_, ApiError>` everywhere, and the Ok path stays small.
    pub problem: Box<Problem>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` challenge for 401.
    pub challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            problem: Box::new(Problem::new(
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error"),
                detail,
            )),
            retry_after: None,
            challenge: false,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError {
            challenge: true,
            ..ApiError::new(StatusCode::UNAUTHORIZED, detail)
        }
    }

    pub fn too_many(detail: impl Into<String>, retry_after_s: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_s.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, detail)
        }
    }

    /// 422 with located errors (a profile, a CSV body).
    pub fn unprocessable(detail: impl Into<String>, errors: Vec<FieldError>) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail);
        e.problem.errors = Some(errors);
        e
    }

    /// 400 naming one field of the request.
    pub fn field(error: FieldError) -> ApiError {
        let detail = match &error.field {
            Some(field) => format!("field `{field}`: {}", error.message),
            None => error.message.clone(),
        };
        let mut e = ApiError::bad_request(detail);
        e.problem.errors = Some(vec![error]);
        e
    }

    /// 400 for a bad path or query parameter.
    pub fn param(name: &str, message: impl Into<String>) -> ApiError {
        ApiError::field(FieldError {
            line: 0,
            column: 0,
            field: Some(name.to_owned()),
            message: message.into(),
        })
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        // The cause goes to the log, not to the client.
        tracing::error!(%error, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{context} failed; the server log has the cause"),
        )
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.problem).expect("a problem serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"postwarden\""),
            );
        }
        response
    }
}

impl From<postwarden_server_store::StoreError> for ApiError {
    fn from(e: postwarden_server_store::StoreError) -> ApiError {
        ApiError::internal("the database request", e)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than the server accepts",
            )
        } else {
            ApiError::new(
                r.status(),
                format!("reading the request body: {}", r.body_text()),
            )
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request(format!("query string: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::bad_request(format!("path: {}", r.body_text()))
    }
}

/// `Result` of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
