use crate::{Error, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct SandboxArgs {}

pub fn run(_args: SandboxArgs) -> Result<Exit> {
    Err(Error::Usage("'sandbox' is not built yet".into()))
}
