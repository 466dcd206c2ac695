//! Architectures, named as Go (and so OCI platforms) name them, with the
//! byte order eBPF objects for them must have.

use std::fmt;
use std::str::FromStr;

/// Byte order of an eBPF object: `bpfel` or `bpfeb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endianness {
    Little,
    Big,
}

impl Endianness {
    /// The clang target that produces objects of this byte order.
    pub fn clang_target(self) -> &'static str {
        match self {
            Self::Little => "bpfel",
            Self::Big => "bpfeb",
        }
    }

    /// The suffix of bpfman's build-arg names (`BC_AMD64_EL`).
    pub fn build_arg_suffix(self) -> &'static str {
        match self {
            Self::Little => "EL",
            Self::Big => "EB",
        }
    }

    /// The byte order of the machine this code runs on.
    pub fn host() -> Self {
        if cfg!(target_endian = "big") {
            Self::Big
        } else {
            Self::Little
        }
    }
}

impl fmt::Display for Endianness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Little => "little-endian",
            Self::Big => "big-endian",
        })
    }
}

/// A Linux architecture an image can carry an object for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X386,
    Amd64,
    Arm,
    Arm64,
    Loong64,
    Mips,
    Mipsle,
    Mips64,
    Mips64le,
    Ppc64,
    Ppc64le,
    Riscv64,
    S390x,
}

/// An architecture name that is not one of [`Arch::ALL`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown architecture '{name}'; known: {known}", known = Arch::known_names())]
pub struct UnknownArch {
    pub name: String,
}

impl Arch {
    pub const ALL: [Arch; 13] = [
        Self::X386,
        Self::Amd64,
        Self::Arm,
        Self::Arm64,
        Self::Loong64,
        Self::Mips,
        Self::Mipsle,
        Self::Mips64,
        Self::Mips64le,
        Self::Ppc64,
        Self::Ppc64le,
        Self::Riscv64,
        Self::S390x,
    ];

    /// The GOARCH / OCI platform name.
    pub fn name(self) -> &'static str {
        match self {
            Self::X386 => "386",
            Self::Amd64 => "amd64",
            Self::Arm => "arm",
            Self::Arm64 => "arm64",
            Self::Loong64 => "loong64",
            Self::Mips => "mips",
            Self::Mipsle => "mipsle",
            Self::Mips64 => "mips64",
            Self::Mips64le => "mips64le",
            Self::Ppc64 => "ppc64",
            Self::Ppc64le => "ppc64le",
            Self::Riscv64 => "riscv64",
            Self::S390x => "s390x",
        }
    }

    /// The byte order the kernel of this architecture runs eBPF in.
    pub fn endianness(self) -> Endianness {
        match self {
            Self::Mips | Self::Mips64 | Self::Ppc64 | Self::S390x => Endianness::Big,
            _ => Endianness::Little,
        }
    }

    /// bpfman's build-arg name for an object of this arch, e.g. `BC_S390X_EB`.
    pub fn build_arg(self) -> String {
        format!(
            "BC_{}_{}",
            self.name().to_ascii_uppercase(),
            self.endianness().build_arg_suffix()
        )
    }

    /// The architecture this binary was compiled for, if it is one we know.
    pub fn host() -> Option<Self> {
        Some(match std::env::consts::ARCH {
            "x86" => Self::X386,
            "x86_64" => Self::Amd64,
            "arm" => Self::Arm,
            "aarch64" => Self::Arm64,
            "loongarch64" => Self::Loong64,
            "mips" if cfg!(target_endian = "big") => Self::Mips,
            "mips" => Self::Mipsle,
            "mips64" if cfg!(target_endian = "big") => Self::Mips64,
            "mips64" => Self::Mips64le,
            "powerpc64" if cfg!(target_endian = "big") => Self::Ppc64,
            "powerpc64" => Self::Ppc64le,
            "riscv64" => Self::Riscv64,
            "s390x" => Self::S390x,
            _ => return None,
        })
    }

    fn known_names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Accept the kernel/uname spellings users often type, too.
        let canonical = match s {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "i386" | "i686" => "386",
            other => other,
        };
        Self::ALL
            .into_iter()
            .find(|a| a.name() == canonical)
            .ok_or_else(|| UnknownArch { name: s.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_match_bpfman() {
        assert_eq!(Arch::Amd64.build_arg(), "BC_AMD64_EL");
        assert_eq!(Arch::S390x.build_arg(), "BC_S390X_EB");
        assert_eq!(Arch::X386.build_arg(), "BC_386_EL");
        assert_eq!(Arch::Mips64le.build_arg(), "BC_MIPS64LE_EL");
    }

    #[test]
    fn names_round_trip_and_aliases_parse() {
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>(), Ok(a));
        }
        assert_eq!("x86_64".parse::<Arch>(), Ok(Arch::Amd64));
        let err = "sparc".parse::<Arch>().expect_err("unknown");
        assert!(err.to_string().contains("s390x"), "{err}");
    }
}
