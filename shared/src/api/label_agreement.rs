//! How far annotators agree, as `dpo pairs quality` and the dashboard report it: Cohen's kappa
//! per annotator pair, Fleiss' kappa over every comparison with two or more labels, and each
//! annotator's agreement with the majority of the others.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgreementReport {
    pub cohen: Vec<CohenKappa>,
    /// Comparisons with two or more labels.
    pub fleiss_comparisons: usize,
    pub fleiss_kappa: Option<f64>,
    pub majority: BTreeMap<String, MajorityAgreement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CohenKappa {
    pub first: String,
    pub second: String,
    pub shared_comparisons: usize,
    pub kappa: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MajorityAgreement {
    /// Labels compared with a strict majority of the others.
    pub compared: usize,
    pub agreeing: usize,
}

impl MajorityAgreement {
    pub fn share(&self) -> Option<f64> {
        (self.compared > 0).then(|| self.agreeing as f64 / self.compared as f64)
    }
}
