//! `delete`: one `ENTITY/delete` per matched record, by the CRM id the match found (never by
//! `uid`: a deal/delete with only a uid wipes every history row with did=0, NOTES §11).
//!
//! Deletes do not answer alike twice (a second person/delete answers success, a second
//! client/delete 403 "Не найдена запись"), so the journal says `sent` before each request, and
//! when an answer is lost the record's existence is checked with `info` before anything is
//! resent: gone after our send means deleted. A refusal (a client with deals 408, a deal with
//! invoices 407) is the record's failure, with the server's words.

use super::journal::{State, Update};
use super::{Ctx, UploadError};
use crate::crm::{CrmError, Entity, RetryClass};
use crate::report::Progress;
use std::sync::atomic::Ordering;

/// Delete every matched record of `entity` the journal holds as pending (with its CRM id).
pub(super) async fn delete_entity(
    ctx: &Ctx,
    entity: Entity,
    progress: &Progress,
) -> Result<(), UploadError> {
    for page in ctx.plan_pages(entity) {
        let page = page?;
        for rec in page {
            if ctx.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let (Some(State::Pending), Some(id)) = (rec.state, rec.crm_id) else {
                continue;
            };
            let up = delete_one(ctx, entity, &rec.key, id).await?;
            let finished = !matches!(up.state, State::Pending | State::Sent);
            ctx.journal_record(std::slice::from_ref(&up))?;
            if finished {
                progress.inc(1);
            }
        }
    }
    Ok(())
}

/// Is the record `id` still in the CRM? `None`: cannot tell (the lookup failed too).
async fn exists(ctx: &Ctx, entity: Entity, id: i64) -> Result<Option<bool>, UploadError> {
    match ctx
        .client
        .info(entity, id, &[], &ctx.opts.lookup_retry)
        .await
    {
        Ok(answer) => Ok(Some(
            crate::reconcile::run::info_owner(entity, id, &answer).is_some(),
        )),
        // 403/404 "not found" (person: an object of nulls, above).
        Err(CrmError::Api { .. }) => Ok(Some(false)),
        Err(e) if e.is_fatal() => Err(UploadError::Fatal(e)),
        Err(_) => Ok(None),
    }
}

/// Whether an error envelope of `ENTITY/delete` says there is no such record.
fn says_not_found(e: &CrmError) -> bool {
    matches!(e, CrmError::Api { code, .. } if code == "403")
}

/// One record: journal `sent`, delete, and settle it (deleted / failed), checking existence
/// after a lost answer. Returns its final update (already journaled except the last).
async fn delete_one(ctx: &Ctx, entity: Entity, key: &str, id: i64) -> Result<Update, UploadError> {
    let up = |state: State, error: Option<String>, resolved: bool| Update {
        entity,
        key: key.to_string(),
        state,
        crm_id: Some(id),
        error,
        resolved,
    };
    if id <= 0 {
        // Never sent: a delete without a real id deletes what is linked to "id 0".
        return Ok(up(
            State::Failed,
            Some(format!("no CRM id to delete {entity} '{key}' by")),
            false,
        ));
    }
    let mut tries = ctx.opts.retry.tries();
    let mut lost = false;
    loop {
        if lost {
            match exists(ctx, entity, id).await? {
                Some(false) => return Ok(up(State::Deleted, None, true)),
                Some(true) => {}
                None if tries.exhausted() || ctx.stop.load(Ordering::SeqCst) => {
                    return Ok(up(
                        State::Ambiguous,
                        Some("the delete's answer was lost and the CRM could not be asked whether the record is still there; run again to check".into()),
                        false,
                    ));
                }
                None => {
                    tries.back_off().await;
                    continue;
                }
            }
        }
        if tries.attempt() > 0 && ctx.stop.load(Ordering::SeqCst) {
            return Ok(up(State::Pending, None, false));
        }
        tries.begin();
        ctx.journal_record(&[up(State::Sent, None, false)])?;
        let started = std::time::Instant::now();
        let result = ctx.observed(ctx.client.delete(entity, id)).await;
        match result {
            Ok(_) => return Ok(up(State::Deleted, None, lost)),
            // Gone: deleted by our earlier attempt, or by someone since the match.
            Err(e) if says_not_found(&e) => return Ok(up(State::Deleted, None, lost)),
            Err(e) if e.is_fatal() => {
                ctx.journal_record(&[up(State::Pending, None, false)])?;
                return Err(UploadError::Fatal(e));
            }
            Err(CrmError::Api { code, text, .. }) => {
                let why = refusal(entity, &code);
                return Ok(up(
                    State::Failed,
                    Some(format!(
                        "the CRM refused to delete it: {text} (code {code}){why}"
                    )),
                    false,
                ));
            }
            Err(e) if e.retry_class() == RetryClass::Stop => {
                return Ok(up(State::Failed, Some(e.to_string()), false));
            }
            Err(e) => {
                let since = tries.failed(started);
                lost = e.may_have_applied();
                if tries.exhausted() {
                    if e.is_server_trouble() {
                        ctx.journal_record(&[up(
                            if lost {
                                State::Ambiguous
                            } else {
                                State::Pending
                            },
                            Some(e.to_string()),
                            false,
                        )])?;
                        return Err(UploadError::Unreachable {
                            seconds: since.as_secs().max(1),
                            source: e,
                        });
                    }
                    if !lost {
                        return Ok(up(State::Failed, Some(format!("gave up: {e}")), false));
                    }
                    // One last look: the delete may have gone through.
                    return Ok(match exists(ctx, entity, id).await? {
                        Some(false) => up(State::Deleted, None, true),
                        _ => up(
                            State::Ambiguous,
                            Some(format!("gave up, the answer was lost: {e}")),
                            false,
                        ),
                    });
                }
                if !lost {
                    tries.back_off().await;
                }
            }
        }
    }
}

/// What a refusal means, for the codes the real server answers (NOTES §11).
fn refusal(entity: Entity, code: &str) -> &'static str {
    match (entity, code) {
        (Entity::Client, "408") => {
            "; a client with deals cannot be deleted: delete its deals first (put them in the file)"
        }
        (Entity::Deal, "407") => "; a deal with invoices cannot be deleted",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_403_counts_as_already_gone() {
        let api = |code: &str| CrmError::Api {
            url: "u".into(),
            code: code.into(),
            text: "t".into(),
        };
        assert!(says_not_found(&api("403")));
        assert!(!says_not_found(&api("408")));
        assert_eq!(refusal(Entity::Person, "408"), "");
        assert!(refusal(Entity::Client, "408").contains("deals"));
    }
}
