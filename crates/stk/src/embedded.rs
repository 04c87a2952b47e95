//! The default model compiled into the program (cargo feature `embedded-model`): the files of
//! `models/potion-base-8M-f16`, read with the same checks as that folder ([`crate::Model::load_default`]).
//!
//! `include_bytes!` places bytes at any address, but the f16 table is read in place only when it
//! is 2-byte aligned (otherwise `SafetensorsFile` copies it once). The safetensors file is
//! therefore wrapped in an 8-byte-aligned static: safetensors writers pad the header to a
//! multiple of 8 bytes, so every tensor of the embedded file is borrowed without a copy (a test
//! checks it), and an odd file would still load, through the copy.

// Without the feature the files are never built (`files` says why), but the code that reads
// them is compiled all the same, so that both builds check it.
#![cfg_attr(not(feature = "embedded-model"), allow(dead_code))]

use std::path::{Path, PathBuf};

use stk_core::{Result, SafetensorsFile};
use stk_cpu::StaticEmbedding;

/// The name the embedded model goes by in messages and [`crate::Model::dir`].
pub const EMBEDDED_MODEL_NAME: &str = "<embedded potion-base-8M-f16>";

/// The files of the embedded model folder.
pub(crate) struct EmbeddedFiles {
    pub(crate) table: &'static [u8],
    pub(crate) tokenizer: &'static [u8],
    pub(crate) config: &'static [u8],
    pub(crate) modules: &'static [u8],
}

impl EmbeddedFiles {
    /// The folder's name in messages.
    pub(crate) fn dir() -> PathBuf {
        PathBuf::from(EMBEDDED_MODEL_NAME)
    }

    /// The bytes of `name` (a file at the folder root), if the embedded folder has it.
    pub(crate) fn file(&self, name: &str) -> Option<&'static [u8]> {
        match name {
            "model.safetensors" => Some(self.table),
            "tokenizer.json" => Some(self.tokenizer),
            "config.json" => Some(self.config),
            "modules.json" => Some(self.modules),
            _ => None,
        }
    }

    /// The StaticEmbedding of the folder, through the checks a folder on disk gets.
    pub(crate) fn static_embedding(&self, dir: &Path) -> Result<StaticEmbedding> {
        let table = SafetensorsFile::from_static(dir.join("model.safetensors"), self.table)?;
        StaticEmbedding::from_files(&table, self.tokenizer, dir)
    }
}

#[cfg(feature = "embedded-model")]
mod bytes {
    /// Bytes at an address aligned to 8 (what `include_bytes!` alone does not promise).
    #[repr(C, align(8))]
    struct Align8<Bytes: ?Sized>(Bytes);

    static TABLE: &Align8<[u8]> = &Align8(*include_bytes!(
        "../../../models/potion-base-8M-f16/model.safetensors"
    ));

    pub(super) static FILES: super::EmbeddedFiles = super::EmbeddedFiles {
        table: &TABLE.0,
        tokenizer: include_bytes!("../../../models/potion-base-8M-f16/tokenizer.json"),
        config: include_bytes!("../../../models/potion-base-8M-f16/config.json"),
        modules: include_bytes!("../../../models/potion-base-8M-f16/modules.json"),
    };
}

/// The embedded files, or an error naming the feature that embeds them.
pub(crate) fn files() -> Result<&'static EmbeddedFiles> {
    #[cfg(feature = "embedded-model")]
    {
        Ok(&bytes::FILES)
    }
    #[cfg(not(feature = "embedded-model"))]
    {
        Err(stk_core::Error::invalid(
            "no model folder given, and this build of stk has no embedded default model: pass a \
             model folder, or build the `stk` crate with the `embedded-model` feature (the `stk` \
             binary, libstk and the Python package enable it)",
        ))
    }
}

#[cfg(all(test, feature = "embedded-model"))]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_is_borrowed_not_copied() {
        let files = files().unwrap();
        assert_eq!(files.table.as_ptr() as usize % 8, 0);
        let dir = EmbeddedFiles::dir();
        let table =
            SafetensorsFile::from_static(dir.join("model.safetensors"), files.table).unwrap();
        for name in table.names() {
            assert!(table.get(name).unwrap().is_mapped(), "{name} was copied");
        }
    }
}

#[cfg(all(test, not(feature = "embedded-model")))]
mod tests_without_the_feature {
    #[test]
    fn the_default_model_names_the_feature_that_embeds_it() {
        let err = crate::Model::load_default(&crate::LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`embedded-model` feature"), "{err}");
    }
}
