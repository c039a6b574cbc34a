//! Runtime device selection: `cpu` (burn's flex backend); with the `gpu` cargo feature,
//! `vulkan` / `vulkan:N` (the N-th discrete GPU through wgpu's Vulkan backend); with the `cuda`
//! cargo feature, `cuda` / `cuda:N` (burn's CUDA backend; its build downloads an LLVM bundle, so
//! it cannot be built offline and is untested here).

use burn::prelude::Device;

/// A device named on the command line or in an experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    /// `None`: wgpu's preferred adapter; `Some(n)`: the n-th discrete GPU.
    Vulkan(Option<usize>),
    /// `None`: the backend's default device; `Some(n)`: CUDA device n.
    Cuda(Option<usize>),
}

impl DeviceSpec {
    /// Parses `cpu`, `vulkan`, `vulkan:N`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let index = |n: &str, kind: &str| n.parse::<usize>().map_err(|_| format!("device '{s}': expected {kind}:N with N an integer"));
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "vulkan" | "gpu" => Ok(DeviceSpec::Vulkan(None)),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            other => {
                if let Some(n) = other.strip_prefix("vulkan:") {
                    index(n, "vulkan").map(|n| DeviceSpec::Vulkan(Some(n)))
                } else if let Some(n) = other.strip_prefix("cuda:") {
                    index(n, "cuda").map(|n| DeviceSpec::Cuda(Some(n)))
                } else {
                    Err(format!("unknown device '{s}' (expected cpu, vulkan, vulkan:N, cuda or cuda:N)"))
                }
            }
        }
    }

    /// The burn device; a Vulkan device without the `gpu` feature is an error saying so.
    pub fn device(self) -> Result<Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            #[cfg(feature = "gpu")]
            DeviceSpec::Vulkan(idx) => Ok(Device::vulkan(match idx {
                None => burn::prelude::DeviceKind::DefaultDevice,
                Some(n) => burn::prelude::DeviceKind::DiscreteGpu(n),
            })),
            #[cfg(not(feature = "gpu"))]
            DeviceSpec::Vulkan(_) => Err("this build has no Vulkan support: rebuild with `--features gpu`".into()),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(idx) => Ok(Device::cuda(match idx {
                None => burn::tensor::DeviceIndex::Default,
                Some(n) => burn::tensor::DeviceIndex::from(n),
            })),
            #[cfg(not(feature = "cuda"))]
            DeviceSpec::Cuda(_) => {
                Err("this build has no CUDA support: rebuild with `--features cuda` (needs network at build time; untested)".into())
            }
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Vulkan(None) => f.write_str("vulkan"),
            DeviceSpec::Vulkan(Some(n)) => write!(f, "vulkan:{n}"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceSpec;

    #[test]
    fn parses_and_prints_every_device() {
        for s in ["cpu", "vulkan", "vulkan:1", "cuda", "cuda:0"] {
            assert_eq!(DeviceSpec::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(DeviceSpec::parse("GPU").unwrap(), DeviceSpec::Vulkan(None));
        assert!(DeviceSpec::parse("cuda:x").unwrap_err().contains("cuda:N"));
        assert!(DeviceSpec::parse("tpu").unwrap_err().contains("unknown device 'tpu'"));
        assert!(DeviceSpec::Cpu.device().is_ok());
        #[cfg(not(feature = "cuda"))]
        assert!(DeviceSpec::Cuda(None).device().unwrap_err().contains("--features cuda"));
    }
}
