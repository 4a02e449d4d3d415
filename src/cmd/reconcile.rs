use crate::{Error, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ReconcileArgs {}

pub fn run(_args: ReconcileArgs) -> Result<Exit> {
    Err(Error::Usage("'reconcile' is not built yet".into()))
}
