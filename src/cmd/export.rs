use crate::{Error, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ExportArgs {}

pub fn run(_args: ExportArgs) -> Result<Exit> {
    Err(Error::Usage("'export' is not built yet".into()))
}
