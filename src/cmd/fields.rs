use crate::{Error, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct FieldsArgs {}

pub fn run(_args: FieldsArgs) -> Result<Exit> {
    Err(Error::Usage("'fields' is not built yet".into()))
}
