//! `GET /api/models`: the served model versions' manifests, oldest first, and their roles:
//! the default (what the app loads) and the candidates (battled against the default).

use serde::{Deserialize, Serialize};

use crate::ModelManifest;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelList {
    pub versions: Vec<ModelManifest>,
    /// The version a labeller's app loads unless they choose another; `None` without versions.
    pub default_version: Option<String>,
    /// Versions served for blind battles against the default, oldest first.
    pub candidates: Vec<String>,
}
