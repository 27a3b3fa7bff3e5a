//! `GET /api/admin/dashboard`: the figures the admin dashboard draws — labels per day and per
//! annotator, prompt-set progress, agreement, each version's standing in round order, each
//! round's training curves, and the versions' history (rounds started and failed, candidates,
//! promotions and retirements with the figures behind them).

use serde::{Deserialize, Serialize};

use super::{AgreementReport, PromptProgress, VersionChange, VersionStanding};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dashboard {
    pub labels: u64,
    pub labels_per_day: Vec<DayLabels>,
    pub labels_per_annotator: Vec<AnnotatorLabels>,
    pub prompts: PromptProgress,
    pub agreement: AgreementReport,
    pub versions: Vec<VersionStanding>,
    pub training: Vec<TrainingCurve>,
    /// Every recorded change of a version, oldest first.
    pub history: Vec<VersionChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayLabels {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub labels: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotatorLabels {
    pub annotator: String,
    pub labels: u64,
}

/// One published round's logged training steps, from the `metrics.jsonl` its export carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrainingCurve {
    pub version: String,
    pub points: Vec<CurvePoint>,
}

/// One logged step under TRL's metric names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurvePoint {
    pub step: u64,
    pub loss: Option<f64>,
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curve_point_uses_trls_metric_names() {
        let point: CurvePoint =
            serde_json::from_str(r#"{"step":3,"loss":0.69,"rewards/accuracies":null}"#).unwrap();
        assert_eq!(point.step, 3);
        assert_eq!(point.loss, Some(0.69));
        assert_eq!(point.rewards_accuracies, None);
        let back = serde_json::to_value(&point).unwrap();
        assert!(back.get("rewards/accuracies").is_some(), "{back}");
    }
}
