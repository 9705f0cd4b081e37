//! The block records in the state database (table `blocks`): what was blocked, in which
//! direction, until when and why. They let a block be undone by hand, expire on backends
//! without kernel timeouts, and be put back after a reboot or a flushed ruleset.

use std::time::Duration;

use sqlx::SqlitePool;

use super::Backend;
use crate::actions::ParamValue;

/// Records the block of `address` in `direction` until `ttl` from now, with the step's `reason`.
/// Blocking the same address in the same direction again renews the record (and reopens it if
/// it was removed), as the firewall renews the timeout.
pub(super) async fn record_block(
    pool: &SqlitePool,
    address: &str,
    direction: &str,
    ttl: Duration,
    reason: Option<String>,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO blocks (address, direction, created_ms, expires_ms, reason, removed_ms) VALUES (?, ?, ?, ?, ?, NULL) \
         ON CONFLICT (address, direction) DO UPDATE SET created_ms = excluded.created_ms, expires_ms = excluded.expires_ms, reason = excluded.reason, removed_ms = NULL",
    )
    .bind(address)
    .bind(direction)
    .bind(now)
    .bind(now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes recorded blocks whose time is up, for backends without kernel timeouts; with
/// nftables it only closes the records (the kernel already dropped the elements). Returns how
/// many expired.
pub async fn expire(pool: &SqlitePool, backend: Backend) -> Result<usize, String> {
    let now = now_ms();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT address FROM blocks WHERE removed_ms IS NULL AND expires_ms <= ?",
    )
    .bind(now)
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    for (address,) in &rows {
        if let Ok(ParamValue::Address { ip, prefix }) =
            crate::actions::ParamType::Address.parse(address)
            && backend.resolve() == Backend::Iptables
        {
            let (ip, prefix) = (ip, prefix);
            tokio::task::spawn_blocking(move || super::iptables::unblock(ip, prefix))
                .await
                .map_err(|e| e.to_string())??;
        }
        sqlx::query("UPDATE blocks SET removed_ms = ? WHERE address = ? AND removed_ms IS NULL AND expires_ms <= ?")
            .bind(now)
            .bind(address)
            .bind(now)
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(rows.len())
}

/// Marks every block of `address` as removed.
pub async fn record_removed(pool: &SqlitePool, address: &str) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("UPDATE blocks SET removed_ms = ? WHERE address = ? AND removed_ms IS NULL")
            .bind(now_ms())
            .bind(address)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Puts every recorded, unexpired block back (after a reboot or a flushed ruleset), with the
/// time it has left. Returns how many were re-asserted. A recorded block of a protected range
/// (written by an older version, or by hand) is not put back: it is closed and logged, since
/// re-asserting it would cut the host off at every start.
pub async fn reassert(
    pool: &SqlitePool,
    backend: Backend,
    policy: &crate::actions::Policy,
) -> Result<usize, String> {
    let now = now_ms();
    let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT address, direction, expires_ms FROM blocks WHERE removed_ms IS NULL AND expires_ms > ?")
        .bind(now)
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    let mut done = 0;
    for (address, direction, expires_ms) in rows {
        let Ok(ParamValue::Address { ip, prefix }) =
            crate::actions::ParamType::Address.parse(&address)
        else {
            continue;
        };
        if let Some(reason) = crate::actions::policy::protected_address(policy, ip, prefix) {
            tracing::error!(
                "recorded block `{address}` is not re-asserted and is closed: {reason}"
            );
            record_removed(pool, &address)
                .await
                .map_err(|e| e.to_string())?;
            continue;
        }
        let left = Duration::from_millis(u64::try_from(expires_ms - now).unwrap_or(1000));
        tokio::task::spawn_blocking(move || {
            super::block_with(backend, ip, prefix, &direction, left)
        })
        .await
        .map_err(|e| e.to_string())??;
        done += 1;
    }
    Ok(done)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
