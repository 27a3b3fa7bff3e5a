//! Sampling parameters: what a generation used, recorded with every candidate answer.

use serde::{Deserialize, Serialize};

use crate::json_integer::whole_number;

/// How tokens were (or will be) drawn. `temperature == 0` means greedy decoding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// In [0, 10].
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10))]
    pub temperature: f32,
    /// Nucleus sampling threshold in (0, 1]; 1 disables it.
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 1))]
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 disables it.
    #[serde(deserialize_with = "whole_number")]
    pub top_k: u32,
    /// llama.cpp-style repetition penalty; 1 disables it. Above 0, at most f32's largest.
    #[cfg_attr(
        feature = "openapi",
        schema(exclusive_minimum = 0, maximum = 3.4028234663852886e38)
    )]
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    #[serde(deserialize_with = "whole_number")]
    pub repeat_last_n: u32,
    /// At least 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[serde(deserialize_with = "whole_number")]
    pub max_new_tokens: u32,
}

impl Default for SamplingParams {
    /// Greedy decoding with the model card's 128-token budget.
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            max_new_tokens: 128,
        }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 || self.temperature > 10.0 {
            return Err(format!(
                "temperature must be in [0, 10], got {}",
                self.temperature
            ));
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return Err(format!(
                "repeat_penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        if self.max_new_tokens == 0 {
            return Err("max_new_tokens must be at least 1".into());
        }
        Ok(())
    }
}
