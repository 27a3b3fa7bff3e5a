//! Which vector instructions the CPU engine's block products use, picked at run time so one
//! binary uses what the CPU it runs on has: AVX-512 VNNI, else AVX2, else the portable code
//! (which the compiler vectorizes for the build's baseline, SSE2 on x86-64 or SIMD128 in
//! wasm32 builds with `+simd128`). Every level gives the same bits (`block_dot`).

use std::fmt;
use std::sync::OnceLock;

/// A set of block-product kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Plain Rust, vectorized by the compiler for the build's baseline.
    Portable,
    /// WebAssembly SIMD (wasm32 builds with `+simd128`): blocks multiplied without unpacking.
    Simd128,
    /// x86-64 AVX2 (with FMA and F16C, as every AVX2 CPU has): bytes multiplied and summed
    /// pairwise (`vpmaddubsw`), 32 weights at a time.
    Avx2,
    /// x86-64 AVX-512 VNNI on 256-bit registers: four bytes multiplied and summed into 32 bits
    /// in one instruction (`vpdpbusd`).
    Avx512Vnni,
}

impl SimdLevel {
    /// The fastest level this CPU runs.
    pub fn detected() -> Self {
        *Self::available()
            .last()
            .expect("Portable is always available")
    }

    /// Every level this CPU runs, slowest first (`Portable` always); looked up once.
    pub fn available() -> &'static [Self] {
        static AVAILABLE: OnceLock<Vec<SimdLevel>> = OnceLock::new();
        AVAILABLE.get_or_init(Self::look_up)
    }

    fn look_up() -> Vec<Self> {
        let mut levels = vec![Self::Portable];
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            levels.push(Self::Simd128);
        }
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            if avx2 {
                levels.push(Self::Avx2);
            }
            if avx2
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                levels.push(Self::Avx512Vnni);
            }
        }
        levels
    }

    /// The name logs and benchmarks print.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Simd128 => "wasm-simd128",
            Self::Avx2 => "avx2",
            Self::Avx512Vnni => "avx512-vnni",
        }
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
