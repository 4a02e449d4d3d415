//! Speaking to SalesMan CRM over HTTP: auth headers, JSON, the error envelope, retry classification.

mod entity;

pub use entity::{Entity, UnknownEntity};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CrmError {
    #[error("{0}")]
    Other(String),
}
