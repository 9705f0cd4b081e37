//! The Sigma correlation windows in the state database. The state writer stores each batch's
//! changed windows in the batch's transaction (so an acknowledged event's count is stored with
//! it); `load_windows` reads them back at start. (`sigma::correlation::store` names this
//! module, where the correlations look for it.)

use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::StateError;
use super::rows::WindowRow;

/// Every stored window, for `sigma::correlation::CorrelationHandle::restore`.
pub async fn load_windows(pool: &SqlitePool) -> Result<Vec<WindowRow>, StateError> {
    let rows =
        sqlx::query("SELECT correlation, group_key, fingerprint, state FROM correlation_windows")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|row| WindowRow {
            correlation: row.get(0),
            key: row.get(1),
            fingerprint: row.get(2),
            state: Some(row.get(3)),
        })
        .collect())
}

/// Applies changed windows in order (a later change to the same window wins).
pub(crate) async fn write_windows(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[WindowRow],
) -> Result<(), StateError> {
    for row in rows {
        match &row.state {
            Some(state) => {
                sqlx::query(
                    "INSERT OR REPLACE INTO correlation_windows (correlation, group_key, fingerprint, state) VALUES (?, ?, ?, ?)",
                )
                .bind(&row.correlation)
                .bind(&row.key)
                .bind(&row.fingerprint)
                .bind(state)
                .execute(&mut **tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "DELETE FROM correlation_windows WHERE correlation = ? AND group_key = ?",
                )
                .bind(&row.correlation)
                .bind(&row.key)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}
