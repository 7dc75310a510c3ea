//! Enrollment, devices, heartbeats and the bundle serial.

use sqlx::Row;

use crate::admin::write_audit;
use crate::rows::DEVICE_COLUMNS;
use crate::sql::{rows_per_statement, values};
use crate::{
    Audit, BundleSource, DeviceAuth, DeviceRow, Enrolled, NewDevice, Refusal, Result, Store,
    StoreError,
};

impl Store {
    /// Spends one use of the enrollment token with this hash and inserts the device into the
    /// token's group, in one transaction. The token must exist, be unrevoked, unexpired
    /// (`expires_ms > now_ms`) and have a use left; otherwise [`Enrolled::Refused`] says
    /// which (checked in that order) and nothing is written. Safe across replicas: the use is
    /// spent by one conditional `UPDATE`, which PostgreSQL re-checks after waiting for a
    /// concurrent one, so of two enrollments on a token's last use exactly one succeeds.
    pub async fn enroll(
        &self,
        token_hash: &str,
        d: &NewDevice<'_>,
        now_ms: i64,
    ) -> Result<Enrolled> {
        let mut tx = self.write().await?;
        let spent = sqlx::query(
            "UPDATE enrollment_tokens SET uses_left = uses_left - 1 \
             WHERE hash = $1 AND revoked_ms IS NULL AND expires_ms > $2 AND uses_left > 0 \
             RETURNING group_name",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = spent else {
            let why =
                sqlx::query("SELECT revoked_ms, expires_ms FROM enrollment_tokens WHERE hash = $1")
                    .bind(token_hash)
                    .fetch_optional(tx.conn())
                    .await?;
            let refusal = match why {
                None => Refusal::Unknown,
                Some(r) if r.get::<Option<i64>, _>(0).is_some() => Refusal::Revoked,
                Some(r) if r.get::<i64, _>(1) <= now_ms => Refusal::Expired,
                Some(_) => Refusal::UsedUp,
            };
            return Ok(Enrolled::Refused(refusal));
        };
        let group: String = row.get(0);
        sqlx::query(
            "INSERT INTO devices (id, credential_hash, group_name, hostname, os, agent_version, \
             users, enrolled_ms, last_seen_ms, retired_ms, serial, fingerprint, issued_ms, \
             applied_serial, applied_profile_id, applied_profile_version, last_report_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, NULL, 0, NULL, $8, NULL, NULL, NULL, \
             NULL)",
        )
        .bind(d.id)
        .bind(d.credential_hash)
        .bind(&group)
        .bind(d.hostname)
        .bind(d.os)
        .bind(d.agent_version)
        .bind(users_json(d.users))
        .bind(now_ms)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Enrolled::Yes { group })
    }

    /// The device a credential hash belongs to, retired or not (the caller refuses retired
    /// ones with their own message).
    pub async fn device_by_credential(&self, hash: &str) -> Result<Option<DeviceAuth>> {
        let row = sqlx::query(
            "SELECT id, group_name, retired_ms FROM devices WHERE credential_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| DeviceAuth {
            id: r.get(0),
            group: r.get(1),
            retired: r.get::<Option<i64>, _>(2).is_some(),
        }))
    }

    /// One device, retired or not.
    pub async fn get_device(&self, id: &str) -> Result<Option<DeviceRow>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(DeviceRow::from_row).transpose()
    }

    /// Devices, optionally of one group, ordered by host name then id.
    pub async fn list_devices(
        &self,
        group: Option<&str>,
        include_retired: bool,
    ) -> Result<Vec<DeviceRow>> {
        let mut sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE 1 = 1");
        if group.is_some() {
            sql.push_str(" AND group_name = $1");
        }
        if !include_retired {
            sql.push_str(" AND retired_ms IS NULL");
        }
        sql.push_str(" ORDER BY hostname, id");
        let mut q = sqlx::query(&sql);
        if let Some(g) = group {
            q = q.bind(g);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(DeviceRow::from_row)
            .collect()
    }

    /// Retires a device: from the commit on, [`Store::device_by_credential`] says `retired`
    /// and [`Store::bundle_source`] has nothing for it; its history stays. `false` (no audit
    /// row) when there is no live device with that id.
    pub async fn retire_device(&self, id: &str, audit: &Audit<'_>) -> Result<bool> {
        let mut tx = self.write().await?;
        let n =
            sqlx::query("UPDATE devices SET retired_ms = $1 WHERE id = $2 AND retired_ms IS NULL")
                .bind(audit.at_ms)
                .bind(id)
                .execute(tx.conn())
                .await?
                .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces the device's users (its bundle then carries their variables); counts as a
    /// heartbeat at `now_ms`.
    pub async fn set_device_users(&self, id: &str, users: &[String], now_ms: i64) -> Result<()> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE devices SET users = $1, \
             last_seen_ms = CASE WHEN last_seen_ms < $2 THEN $2 ELSE last_seen_ms END \
             WHERE id = $3",
        )
        .bind(users_json(users))
        .bind(now_ms)
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::UnknownDevice(id.to_owned()));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Heartbeats, batched: for each `(device, at_ms, serial)`, `last_seen_ms` becomes
    /// `max(last_seen_ms, at_ms)` and `applied_serial` the serial the device said it has, when
    /// it said one. A device listed twice counts with its latest time and last serial; unknown
    /// ids are ignored. One transaction of multi-row `UPDATE … FROM (VALUES …)` statements,
    /// in id order so two replicas' batches cannot deadlock on each other's rows; the same
    /// transaction records each device's last contact of the day (`device_seen`, for the
    /// history's stale devices).
    pub async fn touch_devices(&self, seen: &[(String, i64, Option<i64>)]) -> Result<()> {
        let mut merged: std::collections::BTreeMap<&str, (i64, Option<i64>)> =
            std::collections::BTreeMap::new();
        for (id, at_ms, serial) in seen {
            let entry = merged.entry(id.as_str()).or_insert((*at_ms, *serial));
            entry.0 = entry.0.max(*at_ms);
            if serial.is_some() {
                entry.1 = *serial;
            }
        }
        if merged.is_empty() {
            return Ok(());
        }
        let rows: Vec<(&str, (i64, Option<i64>))> = merged.into_iter().collect();
        let mut tx = self.write().await?;
        for chunk in rows.chunks(rows_per_statement(3)) {
            // VALUES columns are named column1.. on both databases.
            let sql = format!(
                "UPDATE devices SET \
                 last_seen_ms = CASE WHEN devices.last_seen_ms < v.column2 THEN v.column2 \
                                ELSE devices.last_seen_ms END, \
                 applied_serial = COALESCE(v.column3, devices.applied_serial) \
                 FROM (VALUES {}) AS v WHERE devices.id = v.column1",
                values(self.backend, chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for (id, (at_ms, serial)) in chunk {
                q = q.bind(*id).bind(*at_ms).bind(*serial);
            }
            q.execute(tx.conn()).await?;
        }
        crate::history::record_seen(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(())
    }

    // --- bundles ---------------------------------------------------------------------------

    /// Everything the device's bundle is made of — its group's profile version, its users and
    /// their variables — and the serial state stored for it. `None` for an unknown or retired
    /// device.
    pub async fn bundle_source(&self, device: &str) -> Result<Option<BundleSource>> {
        // The group's active rollout counts only while the group still runs the version it
        // started from: a reassignment by hand supersedes it (see `rollouts`).
        let row = sqlx::query(
            "SELECT d.group_name, d.users, d.serial, d.fingerprint, d.issued_ms, \
             g.profile_id, g.profile_version, p.toml, \
             r.id, r.state, r.rings, r.ring, r.to_version, c.toml \
             FROM devices d \
             JOIN device_groups g ON g.name = d.group_name \
             JOIN profiles p ON p.id = g.profile_id AND p.version = g.profile_version \
             LEFT JOIN rollouts r ON r.group_name = g.name \
                 AND r.state IN ('previewing', 'rolling', 'halted') \
                 AND r.profile_id = g.profile_id AND r.from_version = g.profile_version \
             LEFT JOIN profiles c ON c.id = r.profile_id AND c.version = r.to_version \
             WHERE d.id = $1 AND d.retired_ms IS NULL",
        )
        .bind(device)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let users = parse_users(&r.get::<String, _>(1))?;
        let variables = self.variables_for(&users).await?;
        Ok(Some(BundleSource {
            device: device.to_owned(),
            group: r.get(0),
            users,
            serial: r.get(2),
            fingerprint: r.get(3),
            issued_ms: r.get(4),
            profile_id: r.get(5),
            profile_version: r.get(6),
            profile_toml: r.get(7),
            variables,
            rollout: crate::rollouts::bundle_rollout(&r, 8)?,
        }))
    }

    /// Compare-and-set of the device's bundle serial: when the stored fingerprint is `old`
    /// (`None`: none issued yet), the serial advances by one, with fingerprint `new` and
    /// `issued_ms = now_ms`. Returns `(serial, fingerprint, issued_ms)` as stored afterwards —
    /// another replica's advance when it was first, in which case the caller re-reads.
    /// [`StoreError::UnknownDevice`] for an id that was never enrolled.
    pub async fn advance_serial(
        &self,
        device: &str,
        old: Option<&str>,
        new: &str,
        now_ms: i64,
    ) -> Result<(i64, String, i64)> {
        let mut tx = self.write().await?;
        // One conditional UPDATE: PostgreSQL re-evaluates the condition after waiting for a
        // concurrent advance of the same row, so two replicas cannot both advance from `old`.
        sqlx::query(
            "UPDATE devices SET serial = serial + 1, fingerprint = $1, issued_ms = $2 \
             WHERE id = $3 AND COALESCE(fingerprint, '') = $4",
        )
        .bind(new)
        .bind(now_ms)
        .bind(device)
        .bind(old.unwrap_or(""))
        .execute(tx.conn())
        .await?;
        let row = sqlx::query("SELECT serial, fingerprint, issued_ms FROM devices WHERE id = $1")
            .bind(device)
            .fetch_optional(tx.conn())
            .await?;
        tx.commit().await?;
        let r = row.ok_or_else(|| StoreError::UnknownDevice(device.to_owned()))?;
        Ok((
            r.get(0),
            r.get::<Option<String>, _>(1).unwrap_or_default(),
            r.get(2),
        ))
    }
}

pub(crate) fn users_json(users: &[String]) -> String {
    serde_json::Value::from(users.to_vec()).to_string()
}

pub(crate) fn parse_users(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("devices.users: {e}")))
}
