//! Admin changes — tokens, profiles, groups, enrollment tokens, user variables — each written
//! in one transaction with its audit-log row, and the audit log itself.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::sql::{placeholders, rows_per_statement, values};
use crate::{
    Audit, AuditRow, Created, GroupInfo, NewEnrollmentToken, NewProfile, ProfileInfo, PutGroup,
    PutProfile, Result, Store, StoredProfile, WriteTx,
};

impl Store {
    // --- admin tokens ----------------------------------------------------------------------

    /// Stores a new admin token's hash (`domain::secret::hash`) under `name`.
    /// [`Created::Conflict`] when a live (not revoked) token has that name; a revoked name
    /// may be used again.
    pub async fn create_admin_token(
        &self,
        name: &str,
        hash: &str,
        audit: &Audit<'_>,
    ) -> Result<Created> {
        let mut tx = self.write().await?;
        // The partial unique index on live names decides, also between replicas.
        let done = sqlx::query(
            "INSERT INTO admin_tokens (hash, name, created_ms, revoked_ms) \
             VALUES ($1, $2, $3, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(hash)
        .bind(name)
        .bind(audit.at_ms)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Created::Conflict);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Created::Yes)
    }

    /// Revokes the live admin token `name`; `false` when there is none.
    pub async fn revoke_admin_token(&self, name: &str, audit: &Audit<'_>) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE admin_tokens SET revoked_ms = $1 WHERE name = $2 AND revoked_ms IS NULL",
        )
        .bind(audit.at_ms)
        .bind(name)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The name of the live admin token with this hash; `None` for unknown or revoked.
    pub async fn admin_by_hash(&self, hash: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT name FROM admin_tokens WHERE hash = $1 AND revoked_ms IS NULL")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    // --- profiles --------------------------------------------------------------------------

    /// Stores a profile version. The same id and version again is [`PutProfile::Identical`]
    /// when the sha256 is the same (nothing written, no audit row) and
    /// [`PutProfile::Conflict`] otherwise: a stored version never changes.
    pub async fn put_profile(&self, p: &NewProfile<'_>, audit: &Audit<'_>) -> Result<PutProfile> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO profiles (id, version, title, sha256, toml, uploaded_ms, uploaded_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(p.id)
        .bind(p.version)
        .bind(p.title)
        .bind(p.sha256)
        .bind(p.toml)
        .bind(audit.at_ms)
        .bind(audit.actor)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 1 {
            write_audit(&mut tx, audit).await?;
            tx.commit().await?;
            return Ok(PutProfile::Created);
        }
        let existing: String =
            sqlx::query("SELECT sha256 FROM profiles WHERE id = $1 AND version = $2")
                .bind(p.id)
                .bind(p.version)
                .fetch_one(tx.conn())
                .await?
                .get(0);
        Ok(if existing == p.sha256 {
            PutProfile::Identical
        } else {
            PutProfile::Conflict {
                existing_sha256: existing,
            }
        })
    }

    /// Every stored profile version, ordered by id and version.
    pub async fn list_profiles(&self) -> Result<Vec<ProfileInfo>> {
        let rows = sqlx::query(
            "SELECT id, version, title, sha256, uploaded_ms, uploaded_by FROM profiles \
             ORDER BY id, version",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(ProfileInfo::from_row).collect())
    }

    /// One profile version with its TOML.
    pub async fn get_profile(&self, id: &str, version: i64) -> Result<Option<StoredProfile>> {
        let row = sqlx::query(
            "SELECT id, version, title, sha256, uploaded_ms, uploaded_by, toml FROM profiles \
             WHERE id = $1 AND version = $2",
        )
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredProfile {
            info: ProfileInfo::from_row(&r),
            toml: r.get(6),
        }))
    }

    // --- groups ----------------------------------------------------------------------------

    /// Creates group `name` assigned to the profile version, or assigns the existing group
    /// that version (a rollback is assigning an older one). [`PutGroup::UnknownProfile`]
    /// (nothing written) when the version is not stored. Assigning the version a group
    /// already has is [`PutGroup::Updated`] and audited too.
    pub async fn put_group(
        &self,
        name: &str,
        profile_id: &str,
        version: i64,
        audit: &Audit<'_>,
    ) -> Result<PutGroup> {
        let mut tx = self.write().await?;
        // Profiles are never deleted, so a version seen here stays.
        let exists = sqlx::query("SELECT 1 FROM profiles WHERE id = $1 AND version = $2")
            .bind(profile_id)
            .bind(version)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if !exists {
            return Ok(PutGroup::UnknownProfile);
        }
        // Insert first: of two replicas creating the same group, the second one's INSERT waits
        // for the first to commit and then does nothing, so exactly one says `Created`.
        let inserted = sqlx::query(
            "INSERT INTO device_groups (name, profile_id, profile_version, updated_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(profile_id)
        .bind(version)
        .bind(audit.at_ms)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            sqlx::query(
                "UPDATE device_groups SET profile_id = $1, profile_version = $2, updated_ms = $3 \
                 WHERE name = $4",
            )
            .bind(profile_id)
            .bind(version)
            .bind(audit.at_ms)
            .bind(name)
            .execute(tx.conn())
            .await?;
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(if inserted {
            PutGroup::Created
        } else {
            PutGroup::Updated
        })
    }

    /// The groups, by name, with their assignment and number of live (not retired) devices.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        let rows = sqlx::query(
            "SELECT g.name, g.profile_id, g.profile_version, g.updated_ms, \
             (SELECT COUNT(*) FROM devices d WHERE d.group_name = g.name AND d.retired_ms IS NULL) \
             FROM device_groups g ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| GroupInfo {
                name: r.get(0),
                profile_id: r.get(1),
                profile_version: r.get(2),
                updated_ms: r.get(3),
                devices: r.get(4),
            })
            .collect())
    }

    pub async fn group_exists(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM device_groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    // --- enrollment tokens -----------------------------------------------------------------

    /// Stores an enrollment token (its hash) for `t.uses` enrollments until `t.expires_ms`;
    /// `false` (nothing written) when the group does not exist.
    pub async fn create_enrollment_token(
        &self,
        t: &NewEnrollmentToken<'_>,
        audit: &Audit<'_>,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        // Groups are never deleted, so a group seen here stays (the foreign key checks too).
        let group = sqlx::query("SELECT 1 FROM device_groups WHERE name = $1")
            .bind(t.group)
            .fetch_optional(tx.conn())
            .await?;
        if group.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, hash, group_name, uses_total, uses_left, \
             expires_ms, revoked_ms, created_ms, created_by) \
             VALUES ($1, $2, $3, $4, $4, $5, NULL, $6, $7)",
        )
        .bind(t.id)
        .bind(t.hash)
        .bind(t.group)
        .bind(t.uses)
        .bind(t.expires_ms)
        .bind(audit.at_ms)
        .bind(audit.actor)
        .execute(tx.conn())
        .await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes an enrollment token; `false` when there is no unrevoked token with that id.
    pub async fn revoke_enrollment_token(&self, id: &str, audit: &Audit<'_>) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE enrollment_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
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

    // --- per-user variables ----------------------------------------------------------------

    /// Replaces one user's variables with `vars` (an empty map removes them all).
    pub async fn put_user_variables(
        &self,
        user: &str,
        vars: &BTreeMap<String, String>,
        audit: &Audit<'_>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        replace_variables(&mut tx, &[(user, vars)]).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the variables of every user in `rows` (a user listed twice: the last row
    /// wins), in one transaction with one audit row: all rows or none.
    pub async fn put_many_user_variables(
        &self,
        rows: &[(String, BTreeMap<String, String>)],
        audit: &Audit<'_>,
    ) -> Result<()> {
        let by_user: BTreeMap<&str, &BTreeMap<String, String>> =
            rows.iter().map(|(u, v)| (u.as_str(), v)).collect();
        let by_user: Vec<(&str, &BTreeMap<String, String>)> = by_user.into_iter().collect();
        let mut tx = self.write().await?;
        replace_variables(&mut tx, &by_user).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The variables of these users; users without any are absent from the map.
    pub async fn variables_for(
        &self,
        users: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for chunk in users.chunks(rows_per_statement(1)) {
            let sql = format!(
                "SELECT user_key, name, value FROM user_variables WHERE user_key IN ({})",
                placeholders(self.backend, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.entry(r.get(0)).or_default().insert(r.get(1), r.get(2));
            }
        }
        Ok(out)
    }

    // --- audit log -------------------------------------------------------------------------

    /// Audit entries, newest first, at most `limit` (1..=1000); `before_seq` pages back to
    /// entries older than that sequence number.
    pub async fn audit_log(&self, limit: i64, before_seq: Option<i64>) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, actor, source, action, target, detail FROM audit_log \
             WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                seq: r.get(0),
                at_ms: r.get(1),
                actor: r.get(2),
                source: r.get(3),
                action: r.get(4),
                target: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }

    /// An audit entry for an action that writes nothing else (a failed authentication is not
    /// audited here: it is a log line and a rate limit).
    pub async fn record_audit(&self, audit: &Audit<'_>) -> Result<()> {
        let mut tx = self.write().await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

pub(crate) async fn write_audit(tx: &mut WriteTx, a: &Audit<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at_ms, actor, source, action, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(a.at_ms)
    .bind(a.actor)
    .bind(a.source)
    .bind(a.action)
    .bind(a.target)
    .bind(a.detail.to_string())
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Deletes these users' variables and inserts the new sets, in multi-row statements. The
/// users must be distinct.
async fn replace_variables(
    tx: &mut WriteTx,
    users: &[(&str, &BTreeMap<String, String>)],
) -> Result<()> {
    for chunk in users.chunks(rows_per_statement(1)) {
        let sql = format!(
            "DELETE FROM user_variables WHERE user_key IN ({})",
            placeholders(tx.backend, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for (user, _) in chunk {
            q = q.bind(*user);
        }
        q.execute(tx.conn()).await?;
    }
    let rows: Vec<(&str, &String, &String)> = users
        .iter()
        .flat_map(|(user, vars)| vars.iter().map(move |(k, v)| (*user, k, v)))
        .collect();
    for chunk in rows.chunks(rows_per_statement(3)) {
        let sql = format!(
            "INSERT INTO user_variables (user_key, name, value) VALUES {}",
            values(tx.backend, chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for (user, name, value) in chunk {
            q = q.bind(*user).bind(*name).bind(*value);
        }
        q.execute(tx.conn()).await?;
    }
    Ok(())
}
