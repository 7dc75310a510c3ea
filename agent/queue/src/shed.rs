//! Shedding a full queue, inside the push's transaction: fold first, then drop the oldest.

use std::collections::BTreeSet;
use std::path::Path;

use postwarden_wire::v1::{BatchItem, BatchItemKind, DriftEvent, Notice, NoticeKind};
use rusqlite::{params, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{self, Counts};
use crate::error::sql;
use crate::{Kind, Limits, QueueError, Row};

/// When the queue must drop, it drops down to this fraction below each limit (1/64: 1,562
/// items of the default 100,000), not just below it. Otherwise every push into a full queue
/// would drop one item and add one shed notice, and notices, which are never dropped, would
/// crowd out everything else.
pub(crate) const SHED_MARGIN_DIVISOR: u64 = 64;

/// The longest RFC 3339 time `time` writes: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn+HH:MM`.
const LONGEST_TIME: &str = "0000-00-00T00:00:00.000000000+00:00";

/// Folds, for each (kind, key), the items that are not in flight into the newest of them.
/// Returns how many items it removed; `counts` follows.
///
/// `since`: the seq through which no two items that are not in flight share a kind and key
/// (the previous fold's); only the keys of newer items are then looked at. `None`: all keys.
pub(crate) fn fold(
    tx: &Transaction<'_>,
    path: &Path,
    in_flight: i64,
    since: Option<i64>,
    counts: &mut Counts,
) -> Result<u64, QueueError> {
    let groups: BTreeSet<(String, String)> = match since {
        None => tx.prepare_cached(db::FOLD_GROUPS).and_then(|mut s| {
            s.query_map([in_flight], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        }),
        Some(since) => tx.prepare_cached(db::FOLD_GROUPS_SINCE).and_then(|mut s| {
            s.query_map([since.max(in_flight)], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        }),
    }
    .map_err(sql(path, "fold items"))?;
    let mut merged = 0u64;
    for (kind, key) in groups {
        let members: Vec<(i64, i64)> = tx
            .prepare_cached(db::FOLD_MEMBERS)
            .and_then(|mut s| {
                s.query_map(params![kind, key, in_flight], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            })
            .map_err(sql(path, "fold items"))?;
        let Some((&(survivor, survivor_bytes), folded)) = members.split_last() else {
            continue;
        };
        if folded.is_empty() {
            continue;
        }
        let count = folded.len() as u64;
        if kind == Kind::Event.as_str() {
            let new_bytes = fold_events(tx, path, folded, survivor)?;
            counts.bytes = counts
                .bytes
                .saturating_sub(db::non_negative(path, "byte count", survivor_bytes)?)
                .saturating_add(new_bytes);
        }
        let deleted = tx
            .prepare_cached(db::FOLD_DELETE)
            .and_then(|mut s| s.execute(params![kind, key, in_flight, survivor]))
            .map_err(sql(path, "fold items"))?;
        if deleted as u64 != count {
            return Err(QueueError::Corrupt {
                path: path.to_owned(),
                detail: format!("folding {kind} items of key {key:?} deleted {deleted} of {count}"),
            });
        }
        let folded_bytes = folded.iter().try_fold(0u64, |sum, &(_, bytes)| {
            Ok::<_, QueueError>(sum.saturating_add(db::non_negative(path, "byte count", bytes)?))
        })?;
        counts.items = counts.items.saturating_sub(count);
        counts.bytes = counts.bytes.saturating_sub(folded_bytes);
        merged += count;
    }
    Ok(merged)
}

/// Rewrites the newest event of a group: its `old` becomes the oldest folded event's, and its
/// `merged` counts every event folded into it, with the ones they had absorbed. Returns its
/// new size.
fn fold_events(
    tx: &Transaction<'_>,
    path: &Path,
    folded: &[(i64, i64)],
    survivor: i64,
) -> Result<u64, QueueError> {
    let mut oldest_old = None;
    let mut absorbed = 0u64;
    for &(seq, _) in folded {
        let item = load(tx, path, seq)?;
        let event = event_of(path, seq, item)?;
        absorbed = absorbed
            .saturating_add(1)
            .saturating_add(event.merged.unwrap_or(0));
        if oldest_old.is_none() {
            oldest_old = Some(event.old);
        }
    }
    let mut item = load(tx, path, survivor)?;
    let BatchItemKind::Event { event } = &mut item.kind else {
        return Err(not_an_event(path, survivor));
    };
    if let Some(old) = oldest_old {
        event.old = old;
    }
    event.merged = Some(event.merged.unwrap_or(0).saturating_add(absorbed));
    let body = serde_json::to_vec(&item).map_err(|e| QueueError::Serialize {
        path: path.to_owned(),
        id: item.id,
        detail: e.to_string(),
    })?;
    let bytes = body.len() as u64;
    tx.prepare_cached(db::UPDATE_BODY)
        .and_then(|mut s| s.execute(params![survivor, body, bytes as i64]))
        .map_err(sql(path, "fold items"))?;
    Ok(bytes)
}

fn load(tx: &Transaction<'_>, path: &Path, seq: i64) -> Result<BatchItem, QueueError> {
    let body: Vec<u8> = tx
        .prepare_cached(db::BODY)
        .and_then(|mut s| s.query_row([seq], |r| r.get(0)))
        .map_err(sql(path, "read an item"))?;
    crate::decode(path, seq, &body)
}

fn event_of(path: &Path, seq: i64, item: BatchItem) -> Result<DriftEvent, QueueError> {
    match item.kind {
        BatchItemKind::Event { event } => Ok(event),
        _ => Err(not_an_event(path, seq)),
    }
}

fn not_an_event(path: &Path, seq: i64) -> QueueError {
    QueueError::Corrupt {
        path: path.to_owned(),
        detail: format!("item {seq} is stored as an event but is not one"),
    }
}

/// Drops the oldest items that are neither notices nor in flight, down to the shed margin
/// below both limits, leaving room for the shed notice, and appends that notice. Returns how
/// many it dropped; `counts` follows.
pub(crate) fn drop_oldest(
    tx: &Transaction<'_>,
    path: &Path,
    in_flight: i64,
    limits: Limits,
    now: OffsetDateTime,
    counts: &mut Counts,
) -> Result<u64, QueueError> {
    let target_items = limits.max_items - limits.max_items / SHED_MARGIN_DIVISOR;
    let target_bytes = limits.max_bytes - limits.max_bytes / SHED_MARGIN_DIVISOR;
    // An upper bound of the notice's size: its count and time at their longest.
    let reserve = notice_row(path, limits, now, Uuid::nil(), u64::MAX, LONGEST_TIME)?
        .body
        .len() as u64;
    let fits =
        |c: &Counts| c.items < target_items && c.bytes.saturating_add(reserve) <= target_bytes;

    let mut dropped = 0u64;
    let mut last = None;
    let mut oldest: Option<(i64, String)> = None;
    {
        let mut stmt = tx
            .prepare_cached(db::DROP_CANDIDATES)
            .map_err(sql(path, "drop items"))?;
        let mut rows = stmt.query([in_flight]).map_err(sql(path, "drop items"))?;
        while !fits(counts) {
            let Some(row) = rows.next().map_err(sql(path, "drop items"))? else {
                // Only notices and items in flight are left: the queue stays over its limits
                // until the sender's acknowledgement frees them.
                break;
            };
            let (seq, bytes, at_ms, at): (i64, i64, i64, String) =
                (|| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))()
                    .map_err(sql(path, "drop items"))?;
            counts.items = counts.items.saturating_sub(1);
            counts.bytes =
                counts
                    .bytes
                    .saturating_sub(db::non_negative(path, "byte count", bytes)?);
            dropped += 1;
            last = Some(seq);
            if oldest.as_ref().is_none_or(|(ms, _)| at_ms < *ms) {
                oldest = Some((at_ms, at));
            }
        }
    }
    let (Some(last), Some((_, oldest))) = (last, oldest) else {
        return Ok(0);
    };
    let deleted = tx
        .prepare_cached(db::DROP_DELETE)
        .and_then(|mut s| s.execute(params![in_flight, last]))
        .map_err(sql(path, "drop items"))?;
    if deleted as u64 != dropped {
        return Err(QueueError::Corrupt {
            path: path.to_owned(),
            detail: format!("dropping deleted {deleted} items of {dropped}"),
        });
    }
    let notice = notice_row(path, limits, now, Uuid::new_v4(), dropped, &oldest)?;
    crate::insert(tx, path, &notice)?;
    counts.items += 1;
    counts.bytes = counts.bytes.saturating_add(notice.body.len() as u64);
    Ok(dropped)
}

/// The shed notice, as the row to insert.
fn notice_row(
    path: &Path,
    limits: Limits,
    now: OffsetDateTime,
    id: Uuid,
    dropped: u64,
    oldest: &str,
) -> Result<Row, QueueError> {
    let item = BatchItem {
        id,
        at: now,
        kind: BatchItemKind::Notice {
            notice: Notice {
                kind: NoticeKind::QueueShed,
                detail: shed_detail(dropped, limits, oldest),
                serial: None,
            },
        },
    };
    let key = crate::derived_key(&item);
    Row::encode(path, &item, &key)
}

/// The words of a shed notice.
pub(crate) fn shed_detail(dropped: u64, limits: Limits, oldest: &str) -> String {
    format!(
        "{dropped} queued items were dropped: the queue was full ({limits}); \
         oldest dropped from {oldest}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;
    use time::macros::datetime;

    #[test]
    fn the_notice_reserve_bounds_every_real_notice() {
        let path = Path::new("q.db");
        let limits = Limits {
            max_items: u64::MAX,
            max_bytes: u64::MAX,
        };
        for now in [
            datetime!(2026-05-04 09:31:00 UTC),
            datetime!(9999-12-31 23:59:59.999_999_999 -23:59),
        ] {
            let bound = notice_row(path, limits, now, Uuid::nil(), u64::MAX, LONGEST_TIME)
                .unwrap()
                .body
                .len();
            let oldest = now.format(&Rfc3339).unwrap();
            let real = notice_row(path, limits, now, Uuid::new_v4(), 12_345, &oldest)
                .unwrap()
                .body
                .len();
            assert!(real <= bound, "{real} > {bound}");
            assert!(oldest.len() <= LONGEST_TIME.len(), "{oldest}");
        }
    }
}
