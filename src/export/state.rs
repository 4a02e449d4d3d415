//! `--state FILE`: what a nightly job remembers between runs. Per entity the newest change date
//! seen in the CRM's own clock (so our clock and time zone never matter); the next run exports
//! records changed at or after it. Records changed in that same second are exported again rather
//! than missed.

use super::ExportError;
use crate::crm::Entity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EntityState {
    /// Newest change date seen, `YYYY-MM-DD HH:MM:SS` in the CRM's time zone.
    pub changed_up_to: Option<String>,
    /// Ids of the records changed exactly at `changed_up_to`, already exported: the next run
    /// takes records changed at that second too (they may have changed after we read), except
    /// these, so nothing is missed and nothing repeated.
    #[serde(default)]
    pub ids_at_mark: Vec<String>,
    /// When that export ran (local clock, for people reading the file).
    pub exported_at: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportState {
    #[serde(default)]
    pub entities: BTreeMap<Entity, EntityState>,
}

impl ExportState {
    /// A missing file is an empty state (first run: everything is exported).
    pub fn load(path: &Path) -> Result<ExportState, ExportError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ExportError::State {
                path: path.to_path_buf(),
                message: format!("not a valid state file: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExportState::default()),
            Err(e) => Err(state_err(path, e)),
        }
    }

    /// Written to a temporary file and renamed, so a crash never leaves half a state file.
    pub fn save(&self, path: &Path) -> Result<(), ExportError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ExportError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut tmp = PathBuf::from(path);
        tmp.as_mut_os_string().push(".tmp");
        std::fs::write(&tmp, text).map_err(|e| state_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| state_err(path, e))
    }
}

fn state_err(path: &Path, e: std::io::Error) -> ExportError {
    ExportError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(ExportState::load(&path).unwrap(), ExportState::default());
        let mut s = ExportState::default();
        s.entities.insert(
            Entity::Person,
            EntityState {
                changed_up_to: Some("2026-11-22 10:00:00".into()),
                ids_at_mark: vec!["7".into()],
                exported_at: "2026-11-22 23:00:00".into(),
                rows: 3,
            },
        );
        s.save(&path).unwrap();
        assert_eq!(ExportState::load(&path).unwrap(), s);
        std::fs::write(&path, "{not json").unwrap();
        assert!(ExportState::load(&path).is_err());
    }
}
