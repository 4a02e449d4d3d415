//! `smbatch fields ENTITY`: the fields an entity has on this CRM (name and title), for choosing
//! `--fields` and mapping columns.

use super::args::ConnectionArgs;
use crate::crm::{CrmClient, Entity, RetryPolicy};
use crate::{Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct FieldsArgs {
    /// client, person, deal, task or history
    pub entity: Entity,
    /// Print JSON ([{"name":..,"title":..}]) instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

pub fn run(args: FieldsArgs) -> Result<Exit> {
    let conn = args.conn.resolve()?;
    let client = CrmClient::new(&conn)?;
    let runtime = crate::job::runtime(None)?;
    let fields = runtime.block_on(client.fields(args.entity, &RetryPolicy::default()))?;
    if args.json {
        let list: Vec<_> = fields
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "title": f.title}))
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        let width = fields.iter().map(|f| f.name.len()).max().unwrap_or(4);
        for f in &fields {
            println!("{:width$}  {}", f.name, f.title);
        }
    }
    Ok(Exit::Clean)
}
