//! `template init`'s work below the command line: read the sample file, ask the CRM (when one
//! is named) what the proposal needs — its `fields` for a starter template, its users for a
//! linked one — and propose. The command only writes, prints and runs the proposal over the
//! file.

use super::Target;
use crate::crm::{CrmClient, Entity, RetryPolicy};
use crate::source::{self, SourceOverrides};
use crate::template::fields::{known_fields, live_fields};
use crate::template::init::linked::{propose, Options, Proposal};
use crate::template::init::presets::Preset;
use crate::template::init::starter_template;
use crate::Result;
use std::future::Future;
use std::path::PathBuf;

/// One `template init`.
#[derive(Debug, Clone)]
pub struct TemplateInitJob {
    /// The sample file the template is for.
    pub file: PathBuf,
    pub source: SourceOverrides,
    /// The CRM to ask, when one was named.
    pub target: Option<Target>,
}

impl TemplateInitJob {
    fn file_name(&self) -> String {
        self.file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// One read-only call to the named CRM (started for it when it is the sandbox), or `None`
    /// when none is named.
    fn ask<T, F: Future<Output = std::result::Result<T, crate::crm::CrmError>>>(
        &self,
        call: impl FnOnce(CrmClient, RetryPolicy) -> F,
    ) -> Result<Option<T>> {
        let Some(target) = &self.target else {
            return Ok(None);
        };
        let (_sandbox, conn) = target.connect()?;
        let rt = super::runtime(None)?;
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        Ok(Some(rt.block_on(call(CrmClient::new(&conn)?, policy))?))
    }

    /// A starter template for one entity from the file's columns, matched against the CRM's
    /// field titles when one is named (its disabled fields left out).
    pub fn starter(&self, entity: Entity) -> Result<String> {
        let src = source::open(&self.file, &self.source.options(None)?)?;
        let table = match self.ask(|c, p| async move { c.fields(entity, &p).await })? {
            Some(live) => live_fields(entity, &live),
            None => known_fields(entity).to_vec(),
        };
        Ok(starter_template(
            entity,
            src.headers(),
            &self.file_name(),
            &table,
        ))
    }

    /// A linked template from the whole file, owners matched to the CRM's users when one is
    /// named.
    pub fn linked(&self, preset: Option<Preset>) -> Result<Proposal> {
        let src = source::open(&self.file, &self.source.options(None)?)?;
        let headers = src.headers().to_vec();
        let mut rows = Vec::new();
        for row in src {
            let row = row?;
            if !row.is_blank() {
                rows.push((row.pos.row, row.cells));
            }
        }
        let users = self.ask(|c, p| async move { c.users(&p).await })?;
        Ok(propose(
            &headers,
            &rows,
            &Options {
                file: &self.file_name(),
                preset,
                users: users.as_deref(),
            },
        ))
    }
}
