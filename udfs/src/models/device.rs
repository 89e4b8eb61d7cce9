//! Where models run: `cpu` (the default and the tested path), `cuda[:N]` or `metal[:N]`.
//! The accelerators need hqflow built with the `cuda` or `metal` feature, which passes
//! through to candle.

use std::fmt;

use candle_core::Device;

use super::{ModelError, ModelResult};

/// A device as the user names it (`hqflow.device`, `--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    /// The CPU, all cores.
    #[default]
    Cpu,
    /// CUDA GPU number N.
    Cuda(usize),
    /// Metal GPU number N.
    Metal(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Parses `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim().to_ascii_lowercase();
        let (kind, ordinal) = match value.split_once(':') {
            Some((kind, n)) => match n.parse::<usize>() {
                Ok(n) => (kind.to_string(), Some(n)),
                Err(_) => return Err(format!("device '{value}': '{n}' is not a device number")),
            },
            None => (value.clone(), None),
        };
        match (kind.as_str(), ordinal) {
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("cuda", n) => Ok(DeviceSpec::Cuda(n.unwrap_or(0))),
            ("metal", n) => Ok(DeviceSpec::Metal(n.unwrap_or(0))),
            _ => Err(format!(
                "unknown device '{value}' (use cpu, cuda, cuda:N, metal or metal:N)"
            )),
        }
    }

    /// Opens the device, or says why it cannot be used by this build or on this machine.
    pub fn open(self) -> ModelResult<Device> {
        let unsupported = |feature: &str| {
            ModelError(format!(
                "device '{self}': this hqflow was built without GPU support; \
                 rebuild with `cargo build --release --features {feature}`"
            ))
        };
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(_) if !candle_core::utils::cuda_is_available() => {
                Err(unsupported("cuda"))
            }
            DeviceSpec::Metal(_) if !candle_core::utils::metal_is_available() => {
                Err(unsupported("metal"))
            }
            DeviceSpec::Cuda(n) => Device::new_cuda(n)
                .map_err(|e| ModelError(format!("device '{self}' cannot be opened: {e}"))),
            DeviceSpec::Metal(n) => Device::new_metal(n)
                .map_err(|e| ModelError(format!("device '{self}' cannot be opened: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_device_names() {
        assert_eq!(DeviceSpec::parse("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(DeviceSpec::parse(" CUDA "), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(DeviceSpec::parse("cuda:3"), Ok(DeviceSpec::Cuda(3)));
        assert_eq!(DeviceSpec::parse("metal"), Ok(DeviceSpec::Metal(0)));
        assert!(DeviceSpec::parse("cuda:x").is_err());
        assert!(DeviceSpec::parse("cpu:1").is_err());
        assert!(DeviceSpec::parse("tpu").is_err());
        assert_eq!(
            DeviceSpec::parse("cuda:1").map(|d| d.to_string()),
            Ok("cuda:1".into())
        );
    }
}
