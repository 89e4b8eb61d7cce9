//! The number format CLIP models compute in (`hqflow.precision`): `f32` (the default, what
//! the reference implementations compute, to 1e-4), or `bf16`: dense layers in bfloat16 on
//! CPUs with AVX512-BF16 ([`super::bf16_matmul`]), about twice the matrix throughput, with
//! embeddings within about 1e-3 of f32's.

use std::fmt;

use super::bf16_matmul;
use super::blocks::Mode;
use super::device::DeviceSpec;
use super::{ModelError, ModelResult};

/// A number format, as the user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Dense layers in bfloat16 with f32 sums; the rest in f32.
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl Precision {
    /// Parses `f32` or `bf16`; `bf16` only where this CPU can run it.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" if bf16_matmul::available() => Ok(Precision::Bf16),
            "bf16" => {
                Err("bf16 needs a CPU with AVX512-BF16 and this one lacks it; use f32".into())
            }
            other => Err(format!("unknown precision '{other}' (use f32 or bf16)")),
        }
    }

    /// How a model runs on `device` in this precision, or why it cannot.
    pub fn mode(self, device: DeviceSpec) -> ModelResult<Mode> {
        match (self, device) {
            (Precision::F32, _) => Ok(Mode::Inference),
            (Precision::Bf16, DeviceSpec::Cpu) => Ok(Mode::InferenceBf16),
            (Precision::Bf16, other) => Err(ModelError(format!(
                "precision bf16 runs on the CPU only, not on device '{other}'; use f32 there"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DeviceSpec, Precision};
    use crate::models::bf16_matmul;

    #[test]
    fn parses_names_and_refuses_others() {
        assert_eq!(Precision::parse(" F32 "), Ok(Precision::F32));
        let err = Precision::parse("fp8").err().unwrap_or_default();
        assert!(
            err.contains("'fp8'") && err.contains("f32 or bf16"),
            "{err}"
        );
        assert_eq!(Precision::parse("bf16").is_ok(), bf16_matmul::available());
    }

    #[test]
    fn bf16_is_cpu_only() {
        assert!(Precision::Bf16.mode(DeviceSpec::Cpu).is_ok());
        let err = Precision::Bf16
            .mode(DeviceSpec::Cuda(0))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("CPU only")));
    }
}
