//! `smbatch fields ENTITY`: the fields an entity has on this CRM (name and title), for choosing
//! `--fields` and mapping columns.

use super::args::{CrmArgs, OutputMode};
use crate::crm::{CrmClient, Entity, RetryPolicy};
use crate::{Exit, Result};
use clap::Args;

pub const EXAMPLES: &str = "\
Examples:
  smbatch fields person --sandbox                   # the sandbox's person fields
  smbatch fields deal --url https://crm.example.ru --login admin@example.ru
  smbatch fields client --profile prod -q           # names only, one a line";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
#[command(mut_arg("quiet", |a| a.help("Print only the field names, one a line")))]
#[command(mut_arg("json", |a| a.help("Print JSON ([{\"name\":..,\"title\":..}]) instead of a table")))]
pub struct FieldsArgs {
    /// client, person, deal, task or history
    pub entity: Entity,
    #[command(flatten)]
    pub mode: OutputMode,
    #[command(flatten)]
    pub crm: CrmArgs,
}

pub fn run(args: FieldsArgs) -> Result<Exit> {
    let (_sandbox, conn) = args.crm.connect()?;
    let client = CrmClient::new(&conn)?;
    let runtime = crate::job::runtime(None)?;
    let fields = runtime.block_on(client.fields(args.entity, &RetryPolicy::default()))?;
    if args.mode.json {
        let list: Vec<_> = fields
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "title": f.title}))
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else if args.mode.quiet {
        for f in &fields {
            println!("{}", f.name);
        }
    } else {
        let width = fields.iter().map(|f| f.name.len()).max().unwrap_or(4);
        for f in &fields {
            println!("{:width$}  {}", f.name, f.title);
        }
    }
    Ok(Exit::Clean)
}
