//! Upload: chunking, bounded concurrency, retries, the journal and resume.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("{0}")]
    Other(String),
}
