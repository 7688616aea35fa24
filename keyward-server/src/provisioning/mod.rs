//! The provisioning API (`/v1`): partner applications create real PostgreSQL databases in
//! their own workspace, and users claim them into theirs.
//!
//! - `caller`: who is calling — a partner's integration token, or a workspace admin's
//!   user token — and which workspace they act in.
//! - `service`: creating and dropping databases (with clean-up on failure).
//! - `api`: the thin handlers; `reaper`: the background task that drops expired and
//!   deleted projects, scheduled in the store.

pub mod api;
pub mod caller;
pub mod reaper;
pub mod service;

use keyward_provision::{Cluster, Region};

/// The configured regions, in configuration order (the first is the default).
#[derive(Debug, Default)]
pub struct Regions {
    clusters: Vec<Cluster>,
}

impl Regions {
    /// Regions with an unusable admin URL are logged and left out; `validate` at start-up
    /// refuses them first.
    pub fn from_settings(regions: &[Region]) -> Self {
        let clusters = regions
            .iter()
            .filter_map(|region| match Cluster::new(region.clone()) {
                Ok(cluster) => Some(cluster),
                Err(e) => {
                    tracing::error!(error = %e, "region left out");
                    None
                }
            })
            .collect();
        Self { clusters }
    }

    /// Start-up check: every region parses and ids are unique.
    pub fn validate(regions: &[Region]) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for region in regions {
            if !seen.insert(region.id.as_str()) {
                return Err(format!("region {:?} is configured twice", region.id));
            }
            Cluster::new(region.clone()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.region().id == id)
    }

    pub fn default_region(&self) -> Option<&Cluster> {
        self.clusters.first()
    }

    pub fn all(&self) -> &[Cluster] {
        &self.clusters
    }
}

/// Development convenience: with no region configured and a loopback issuer, a local
/// PostgreSQL that answers at `url` becomes region `local`.
pub async fn probe_local_region(url: &str) -> Option<Region> {
    let region = Region {
        id: "local".into(),
        name: Some("Local PostgreSQL".into()),
        admin_url: url.to_owned(),
        public_host: None,
        public_port: None,
        connection_limit: 10,
        connection_options: None,
    };
    let cluster = Cluster::new(region.clone()).ok()?;
    let answered = tokio::time::timeout(std::time::Duration::from_secs(3), cluster.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    cluster.close().await;
    answered.then_some(region)
}
