//! An unexpected failure inside the server, kept with its cause.
//!
//! Services wrap what should not happen (a sealed value that does not open, the random number
//! generator failing, a stored key that does not parse) in an [`InternalError`]: a short
//! context and the original error as its `source`, so the one place that logs internal errors
//! (`ApiError::internal`) writes the whole chain. Clients only ever see `internal_error`.

use std::error::Error;

#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct InternalError {
    context: &'static str,
    #[source]
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl InternalError {
    /// A failure with no underlying error (a broken invariant).
    pub fn new(context: &'static str) -> Self {
        Self { context, source: None }
    }

    /// A failure caused by `source`; `context` says what the server was doing.
    pub fn caused_by(context: &'static str, source: impl Error + Send + Sync + 'static) -> Self {
        Self { context, source: Some(Box::new(source)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_stays_attached() {
        let cause = String::from_utf8(vec![0xff]).unwrap_err();
        let error = InternalError::caused_by("reading the sealed number", cause);
        assert_eq!(error.to_string(), "reading the sealed number");
        let source = error.source().map(ToString::to_string).unwrap_or_default();
        assert!(source.contains("invalid utf-8"), "{source}");
        assert!(InternalError::new("refused while available").source().is_none());
    }
}
