//! Threat intelligence: indicators of compromise from feeds, kept in SQLite and matched in
//! memory against every event before the rules run.
//!
//! - [`indicator`]: the indicator model and the one normalization indicators and event values
//!   share.
//! - [`formats`]: importers for STIX, MISP, abuse.ch, OTX, AbuseIPDB and plain lists.
//! - [`store`]: the durable table, written in one transaction per import.
//! - [`warninglist`]: MISP warninglists of benign infrastructure.
//! - [`matcher`]: the in-memory snapshot and the handle that swaps it.

pub mod formats;
pub mod indicator;
pub mod matcher;
pub mod store;
pub mod warninglist;

pub use indicator::{Indicator, IndicatorKind};
pub use matcher::{IntelHandle, IntelHit, Matcher};
pub use store::IntelStore;
pub use warninglist::Warninglists;

/// Builds a matcher from the store's live indicators.
pub async fn load_matcher(
    store: &IntelStore,
    warninglists: &Warninglists,
) -> Result<Matcher, crate::state::StateError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let live = store.live(now).await?;
    Ok(Matcher::build(live, warninglists, now))
}

/// The intel a command runs with: the live indicators in the content's state database (when it
/// exists; nothing is created) marked against the content's warninglists.
pub async fn for_content(content: &crate::content::Content) -> Result<IntelHandle, String> {
    let path = content.resolve(&content.config.state.path);
    if !path.exists() {
        return Ok(IntelHandle::default());
    }
    let state = crate::state::StateStore::open(&path)
        .await
        .map_err(|e| e.to_string())?;
    let matcher = load_matcher(&IntelStore::new(&state), &content.warninglists)
        .await
        .map_err(|e| e.to_string())?;
    if !matcher.is_empty() {
        tracing::info!(indicators = matcher.len(), "loaded threat intelligence");
    }
    state.close().await;
    Ok(IntelHandle::new(matcher))
}
