//! Every error answer of the API: `{"error": {"field": …, "reason": …}}`, the field at fault
//! named as a path into the request (`candidate_a.model.version`, `$` for the whole body,
//! `authorization` for the token) and the reason in words.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub field: String,
    pub reason: String,
}

impl ApiError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                field: field.into(),
                reason: reason.into(),
            },
        }
    }

    /// `field: reason` from an error body, or the body itself when it is not one.
    pub fn describe(body: &str) -> String {
        serde_json::from_str::<Self>(body)
            .map(|e| e.to_string())
            .unwrap_or_else(|_| body.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error.field, self.error.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_read_back_and_other_bodies_pass_through() {
        let body = serde_json::to_string(&ApiError::new("prompt_id", "taken")).unwrap();
        assert_eq!(body, r#"{"error":{"field":"prompt_id","reason":"taken"}}"#);
        assert_eq!(ApiError::describe(&body), "prompt_id: taken");
        assert_eq!(ApiError::describe("Bad Gateway"), "Bad Gateway");
    }
}
