//! The kernels' PTX (built by `cargo xtask ptx` from `kernels/*.cu`, committed under
//! `kernels/ptx/`) embedded at compile time, and the table of its entry points that the same
//! command generates from the PTX (`kernels/ptx/kernels.rs`): names, parameter kinds, launch
//! bounds. `cargo xtask ptx --check` (CI) fails when either is stale, so nothing here is kept
//! in line by hand.
//!
//! Launchers pick a kernel by its naming convention, `{op}_{dtype}_v{pack}` ([`select`]); the
//! dtypes an op supports are the ones the table has a kernel for.

use stk_core::{DType, Error, Result};

/// The kind of one kernel parameter as PTX declares it: pointers and 64-bit integers (`U64`),
/// 32-bit integers (`U32`), floats (`F32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A pointer or a 64-bit integer.
    U64,
    /// A 32-bit integer.
    U32,
    /// A 32-bit float.
    F32,
}

/// One kernel entry of the embedded PTX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// The `kernels/<family>.cu` it comes from.
    pub family: &'static str,
    /// The entry point's name, `{op}_{dtype}_v{pack}`.
    pub name: &'static str,
    /// The kinds of its parameters, in order, as the PTX declares them.
    pub params: &'static [ParamKind],
    /// `.maxntid`: the largest block it was compiled for.
    pub max_threads: Option<u32>,
}

mod generated {
    use super::{Kernel, ParamKind as P};
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../kernels/ptx/kernels.rs"
    ));
}
pub use generated::{KERNELS, PTX_ISA};

/// One `kernels/<name>.cu` file: its PTX text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The family's name (`pool`, `embedding_bag`, `normalize`, `layer_pool`).
    pub name: &'static str,
    /// The committed PTX text (`kernels/ptx/<name>.ptx`).
    pub ptx: &'static str,
}

macro_rules! family {
    ($name:literal) => {
        Family {
            name: $name,
            ptx: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../kernels/ptx/",
                $name,
                ".ptx"
            )),
        }
    };
}

/// Every family, in the order the device loads them.
pub const FAMILIES: [Family; 4] = [
    family!("embedding_bag"),
    family!("layer_pool"),
    family!("normalize"),
    family!("pool"),
];

/// The driver version (`cuDriverGetVersion`: `major * 1000 + minor * 10`) that JIT-compiles
/// PTX ISA `isa`, with its Linux driver branch. From the PTX ISA release history: ISA 7.x is
/// CUDA 11.x, 8.0 to 8.5 are CUDA 12.0 to 12.5 (12.6 also emits 8.5), 8.6 to 8.8 are CUDA 12.7
/// to 12.9, 9.0 is CUDA 13.0.
pub fn required_driver(isa: (u32, u32)) -> Option<(i32, u32)> {
    const TABLE: [((u32, u32), i32, u32); 19] = [
        ((7, 0), 11000, 450),
        ((7, 1), 11010, 455),
        ((7, 2), 11020, 460),
        ((7, 3), 11030, 465),
        ((7, 4), 11040, 470),
        ((7, 5), 11050, 495),
        ((7, 6), 11060, 510),
        ((7, 7), 11070, 515),
        ((7, 8), 11080, 520),
        ((8, 0), 12000, 525),
        ((8, 1), 12010, 530),
        ((8, 2), 12020, 535),
        ((8, 3), 12030, 545),
        ((8, 4), 12040, 550),
        ((8, 5), 12050, 555),
        ((8, 6), 12070, 565),
        ((8, 7), 12080, 570),
        ((8, 8), 12090, 575),
        ((9, 0), 13000, 580),
    ];
    TABLE
        .iter()
        .find(|(i, _, _)| *i == isa)
        .map(|&(_, version, branch)| (version, branch))
}

/// `Ok` when a driver reporting `driver_version` can load the embedded PTX; otherwise the
/// error names the driver needed.
pub fn check_driver(driver_version: i32) -> Result<()> {
    let isa = format!("{}.{}", PTX_ISA.0, PTX_ISA.1);
    let (needed, branch) = required_driver(PTX_ISA).ok_or_else(|| {
        Error::Cuda(format!(
            "the embedded PTX declares ISA {isa}, which stk does not know"
        ))
    })?;
    if driver_version >= needed {
        return Ok(());
    }
    let cuda = |v: i32| format!("{}.{}", v / 1000, (v % 1000) / 10);
    Err(Error::DriverTooOld {
        found: cuda(driver_version),
        needed: cuda(needed),
        ptx_isa: isa,
        min_branch: branch,
    })
}

/// Elements per 16-byte pack of a dtype: the `N` of the `_vN` kernels, which the launchers
/// select when a row's length is a multiple of it.
pub fn pack_width(dtype: DType) -> usize {
    16 / dtype.size_in_bytes()
}

/// The kernel `{op}_{dtype}_v{pack}` (`pack`: [`pack_width`] when `packed`, else 1), or a
/// dtype error listing the dtypes `op` has kernels for.
pub fn select(op: &str, dtype: DType, packed: bool) -> Result<&'static Kernel> {
    let v = if packed { pack_width(dtype) } else { 1 };
    let name = format!("{op}_{}_v{v}", dtype.as_str());
    if let Some(k) = find(&name) {
        return Ok(k);
    }
    let prefix = format!("{op}_");
    let mut supported: Vec<&str> = KERNELS
        .iter()
        .filter_map(|k| k.name.strip_prefix(&prefix)?.split("_v").next())
        .collect();
    supported.dedup();
    Err(Error::dtype(
        format!("{op} on cuda"),
        if supported.is_empty() {
            "(no kernel of that name in the embedded PTX)".to_string()
        } else {
            supported.join(", ")
        },
        dtype,
    ))
}

/// The kernel named `name`.
pub fn find(name: &str) -> Option<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_names_an_entry_of_its_family() {
        for k in KERNELS {
            let family = FAMILIES.iter().find(|f| f.name == k.family).unwrap();
            assert!(
                family.ptx.contains(&format!(".visible .entry {}(", k.name)),
                "{}",
                k.name
            );
        }
    }

    #[test]
    fn selection_follows_the_naming_convention() {
        assert_eq!(
            select("normalize", DType::F16, true).unwrap().name,
            "normalize_f16_v8"
        );
        assert_eq!(
            select("embedding_bag", DType::I8, false).unwrap().name,
            "embedding_bag_i8_v1"
        );
        let e = select("normalize", DType::I8, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("f32") && e.contains("i8"), "{e}");
    }

    #[test]
    fn driver_requirement() {
        assert_eq!(required_driver((8, 2)), Some((12020, 535)));
        assert!(check_driver(12020).is_ok() && check_driver(13000).is_ok());
        let e = check_driver(12000).unwrap_err();
        assert!(matches!(e, Error::DriverTooOld { .. }), "{e}");
        assert!(e.to_string().contains("R535"), "{e}");
        assert_eq!(
            PTX_ISA,
            (8, 2),
            "the committed PTX must load on CUDA 12.2 drivers"
        );
    }
}
