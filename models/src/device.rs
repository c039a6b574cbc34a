//! Runtime device selection: `cpu` (burn's flex backend) or, with the `gpu` cargo feature,
//! `vulkan` / `vulkan:N` (the N-th discrete GPU through wgpu's Vulkan backend).

use burn::prelude::Device;

/// A device named on the command line or in an experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    /// `None`: wgpu's preferred adapter; `Some(n)`: the n-th discrete GPU.
    Vulkan(Option<usize>),
}

impl DeviceSpec {
    /// Parses `cpu`, `vulkan` or `vulkan:N`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "vulkan" | "gpu" => Ok(DeviceSpec::Vulkan(None)),
            other => match other.strip_prefix("vulkan:") {
                Some(n) => n.parse().map(|n| DeviceSpec::Vulkan(Some(n))).map_err(|_| format!("device '{s}': expected vulkan:N with N an integer")),
                None => Err(format!("unknown device '{s}' (expected cpu, vulkan or vulkan:N)")),
            },
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
            DeviceSpec::Vulkan(_) => Err("this build has no GPU support: rebuild with `--features gpu`".into()),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Vulkan(None) => f.write_str("vulkan"),
            DeviceSpec::Vulkan(Some(n)) => write!(f, "vulkan:{n}"),
        }
    }
}
