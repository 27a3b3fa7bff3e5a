//! `GET /api/models`: the served model versions' manifests, oldest first.

use serde::{Deserialize, Serialize};

use crate::ModelManifest;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelList {
    pub versions: Vec<ModelManifest>,
}
