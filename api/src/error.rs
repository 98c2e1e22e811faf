//! What a caller is told when a call fails: its own mistakes are 4xx with
//! a message naming the field and what was wrong; the server's are 500
//! with the detail in the log only.

use dropshot::{ClientErrorStatusCode, HttpError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a field of the request is wrong.
    #[error("{field}: {problem}")]
    BadField { field: String, problem: String },
    /// 404: the named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request contradicts what exists (a duplicate, a full table).
    #[error("{0}")]
    Conflict(String),
    /// 401: a mutating call without the right token.
    #[error("{0}")]
    Unauthorized(String),
    /// 503: the change could not be saved, so it was undone: nothing
    /// changed, and the same call may be retried.
    #[error("{0}")]
    NotSaved(String),
    /// 500: the server failed; the caller did nothing wrong.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> ApiError {
        ApiError::BadField {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> HttpError {
        let msg = e.to_string();
        match e {
            ApiError::BadField { .. } => {
                HttpError::for_bad_request(Some("InvalidField".into()), msg)
            }
            ApiError::NotFound(_) => HttpError::for_client_error(
                Some("NotFound".into()),
                ClientErrorStatusCode::NOT_FOUND,
                msg,
            ),
            ApiError::Conflict(_) => HttpError::for_client_error(
                Some("Conflict".into()),
                ClientErrorStatusCode::CONFLICT,
                msg,
            ),
            ApiError::Unauthorized(_) => HttpError::for_client_error(
                Some("Unauthorized".into()),
                ClientErrorStatusCode::UNAUTHORIZED,
                msg,
            ),
            // Not `for_unavail`: it hides the message, and the caller needs
            // to know that nothing changed.
            ApiError::NotSaved(_) => HttpError {
                status_code: dropshot::ErrorStatusCode::SERVICE_UNAVAILABLE,
                error_code: Some("NotSaved".into()),
                external_message: msg.clone(),
                internal_message: msg,
                headers: None,
            },
            ApiError::Internal(m) => HttpError::for_internal_error(m),
        }
    }
}
