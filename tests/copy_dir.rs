//! `copy_dir`, shared by the workspace tests (through `lib.rs`) and the fuzz targets (a separate
//! cargo workspace, which includes this file by path instead of depending on `stk-tests`).

use std::path::Path;

/// Copy of the folder `from` (files and sub-folders, recursively) at `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}
