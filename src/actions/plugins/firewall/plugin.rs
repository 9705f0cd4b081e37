//! The `firewall.block` and `firewall.unblock` actions: read the step's checked parameters,
//! hand the address to the backend off the async threads, and keep the block records. The
//! executor checks the address against the policy (protected ranges, the widest block) before
//! it calls these.

use std::net::IpAddr;
use std::time::Duration;

use sqlx::SqlitePool;

use super::nftables::sets;
use super::records::{record_block, record_removed};
use super::{Backend, block_with, unblock_with};
use crate::actions::ParamValue;
use crate::actions::plugins::{Action, ActionCall, ActionError, ActionFuture};

/// The step's checked address parameter, as the address and prefix the backends take.
fn address(call: &ActionCall) -> Result<(IpAddr, u8), ActionError> {
    match call.params.get("address") {
        Some(ParamValue::Address { ip, prefix }) => Ok((*ip, *prefix)),
        _ => Err(ActionError::new("no address")),
    }
}

pub(in crate::actions::plugins) struct Block {
    pub(in crate::actions::plugins) blocks: Option<SqlitePool>,
    pub(in crate::actions::plugins) backend: Backend,
}

impl Action for Block {
    fn name(&self) -> &'static str {
        "firewall.block"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let (ip, prefix) = address(call)?;
            let direction = call.text("direction").unwrap_or_else(|| "both".into());
            let ttl = match call.params.get("ttl") {
                Some(ParamValue::Duration(d)) => *d,
                _ => Duration::from_secs(3600),
            };
            let shown = ParamValue::Address { ip, prefix }.to_string();
            let dir = direction.clone();
            let backend = self.backend;
            let covered =
                tokio::task::spawn_blocking(move || block_with(backend, ip, prefix, &dir, ttl))
                    .await
                    .map_err(|e| ActionError::new(e.to_string()))?
                    .map_err(|e| {
                        ActionError::new(format!("the firewall refused the block: {e}"))
                    })?;
            // Every set already covered it: the traffic is dropped, which is what was asked, so
            // this is no failure; nothing was placed, so there is nothing to record or expire.
            if !covered.is_empty() && covered.len() == sets(ip, &direction).len() {
                return Ok(format!(
                    "{shown} is already blocked by {}",
                    covered.join(", ")
                ));
            }
            if let Some(pool) = &self.blocks {
                record_block(pool, &shown, &direction, ttl, call.text("reason"))
                    .await
                    .map_err(|e| {
                        ActionError::new(format!("blocked, but cannot record the block: {e}"))
                    })?;
            }
            let also = if covered.is_empty() {
                String::new()
            } else {
                format!("; already blocked by {}", covered.join(", "))
            };
            Ok(format!(
                "blocked {shown} ({direction}) for {}s{also}",
                ttl.as_secs()
            ))
        })
    }
}

pub(in crate::actions::plugins) struct Unblock {
    pub(in crate::actions::plugins) blocks: Option<SqlitePool>,
    pub(in crate::actions::plugins) backend: Backend,
}

impl Action for Unblock {
    fn name(&self) -> &'static str {
        "firewall.unblock"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let (ip, prefix) = address(call)?;
            let shown = ParamValue::Address { ip, prefix }.to_string();
            let backend = self.backend;
            tokio::task::spawn_blocking(move || unblock_with(backend, ip, prefix))
                .await
                .map_err(|e| ActionError::new(e.to_string()))?
                .map_err(|e| ActionError::new(format!("the firewall refused the unblock: {e}")))?;
            if let Some(pool) = &self.blocks {
                record_removed(pool, &shown)
                    .await
                    .map_err(|e| ActionError::new(e.to_string()))?;
            }
            Ok(format!("unblocked {shown}"))
        })
    }
}
