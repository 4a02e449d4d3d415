use crate::{Error, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ValidateArgs {}

pub fn run(_args: ValidateArgs) -> Result<Exit> {
    Err(Error::Usage("'validate' is not built yet".into()))
}
