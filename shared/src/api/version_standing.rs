//! Where a served version stands after its battles, as `dpo rounds`, `GET /api/stats` and the
//! dashboard show it: its Bradley–Terry rating with the 95% interval and the battles behind
//! it, and its win rate against the version it was trained from with the exact 95% interval.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionStanding {
    pub version: String,
    pub parent_version: Option<String>,
    /// `None` until the version has fought a battle. The posterior mode under a 350-point
    /// prior; the interval is ±1.96 posterior standard deviations.
    pub rating: Option<f64>,
    pub rating_low: Option<f64>,
    pub rating_high: Option<f64>,
    pub battles: usize,
    /// Points per battle against the parent (ties half).
    pub win_rate_vs_parent: Option<f64>,
    /// The exact (Clopper–Pearson) 95% interval on the win rate against the parent.
    pub win_rate_low: Option<f64>,
    pub win_rate_high: Option<f64>,
    pub battles_vs_parent: usize,
}
