//! Templates: mapping source columns to CRM fields, transforms and validation.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("{0}")]
    Other(String),
}
