//! Model folders stay inside themselves: stk reads no file outside the folder it was given.
//!
//! sentence-transformers follows a `modules.json` module `path` wherever it points (an absolute
//! path, `../other`) and reads symbolic links wherever they resolve. A server that loads folders
//! its users upload must not read other files of the machine that way, so stk is stricter: a
//! module path must be relative and stay below the folder, and every symbolic link in the folder
//! must resolve inside it.
//!
//! One exception keeps Hugging Face cache snapshots loadable: in
//! `models--owner--name/snapshots/REV/`, every file is a link into `models--owner--name/blobs/`,
//! so links of a folder whose parent is named `snapshots` may also resolve into that `blobs/`.

use std::path::{Component, Path, PathBuf};

use stk_core::{Error, Result};

/// Entries walked at most: a model folder has tens of files; a folder with more than this
/// many is refused rather than walked for ever.
const MAX_ENTRIES: usize = 100_000;

/// `rel` (a `modules.json` module path) joined to `dir`, refused when it is absolute or climbs
/// out of `dir` with `..`. `list_path` (the modules.json) is the file the error names.
pub fn module_path(dir: &Path, rel: &str, list_path: &Path) -> Result<PathBuf> {
    let path = Path::new(rel);
    let escapes = path.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if escapes {
        return Err(Error::config(
            list_path,
            format!(
                "module path `{rel}` leaves the model folder (absolute or with `..`): a module path \
                 must be a folder inside the model folder"
            ),
        ));
    }
    Ok(dir.join(path))
}

/// Refuse `dir` when a symbolic link in it (at any depth) resolves outside it, naming the link.
pub fn check_links_stay_inside(dir: &Path) -> Result<()> {
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let allowed = allowed_roots(&root);
    let mut pending = vec![root.clone()];
    let mut seen = 0usize;
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).map_err(|e| Error::io(&folder, e))? {
            let entry = entry.map_err(|e| Error::io(&folder, e))?;
            seen += 1;
            if seen > MAX_ENTRIES {
                return Err(Error::config(
                    dir,
                    format!("holds more than {MAX_ENTRIES} files and folders: not a model folder"),
                ));
            }
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if kind.is_symlink() {
                check_link(&path, &allowed, &root)?;
            } else if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// The folders a link in `root` may resolve into: `root`, and for a Hugging Face cache
/// snapshot its repository's `blobs/`.
fn allowed_roots(root: &Path) -> Vec<PathBuf> {
    let mut roots = vec![root.to_path_buf()];
    let parent = root.parent();
    if parent.and_then(Path::file_name) == Some("snapshots".as_ref()) {
        if let Some(blobs) = parent
            .and_then(Path::parent)
            .map(|repo| repo.join("blobs"))
            .and_then(|b| b.canonicalize().ok())
        {
            roots.push(blobs);
        }
    }
    roots
}

fn check_link(link: &Path, allowed: &[PathBuf], root: &Path) -> Result<()> {
    // A dangling link resolves nowhere; reading it fails later with its own error, but it
    // cannot be shown to stay inside, so it is refused here too.
    let target = link.canonicalize().map_err(|e| {
        Error::config(
            link,
            format!("is a symbolic link that does not resolve ({e})"),
        )
    })?;
    if allowed.iter().any(|r| target.starts_with(r)) {
        return Ok(());
    }
    Err(Error::config(
        link,
        format!(
            "is a symbolic link to {}, outside the model folder {}: stk reads only files inside \
             the folder",
            target.display(),
            root.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_must_stay_below_the_folder() {
        let dir = Path::new("/models/m");
        let list = dir.join("modules.json");
        for ok in ["", "1_Pooling", "a/b", "./2_Dense", "x..y"] {
            assert_eq!(module_path(dir, ok, &list).unwrap(), dir.join(ok), "{ok}");
        }
        for bad in [
            "/tmp/other/1_Pooling",
            "..",
            "../m2/1_Pooling",
            "a/../../b",
            "/",
        ] {
            let e = module_path(dir, bad, &list).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains(bad) && msg.contains("modules.json") && msg.contains("leaves"),
                "{msg}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_inside_pass_and_links_outside_are_named() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.json"), "{}").unwrap();
        let model = tempfile::tempdir().unwrap();
        let sub = model.path().join("1_Pooling");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("config.json"), "{}").unwrap();
        symlink(sub.join("config.json"), model.path().join("inside.json")).unwrap();
        symlink(&sub, model.path().join("2_Alias")).unwrap();
        check_links_stay_inside(model.path()).unwrap();

        let bad_cases = [
            sub.join("config_link.json"),
            model.path().join("2_Out"),
            model.path().join("dangling"),
        ];
        symlink(outside.path().join("secret.json"), &bad_cases[0]).unwrap();
        let e = check_links_stay_inside(model.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config_link.json") && e.contains("outside"),
            "{e}"
        );
        std::fs::remove_file(&bad_cases[0]).unwrap();

        symlink(outside.path(), &bad_cases[1]).unwrap();
        let e = check_links_stay_inside(model.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("2_Out") && e.contains("outside"), "{e}");
        std::fs::remove_file(&bad_cases[1]).unwrap();

        symlink(model.path().join("nothing"), &bad_cases[2]).unwrap();
        let e = check_links_stay_inside(model.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dangling") && e.contains("does not resolve"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn hub_cache_snapshots_may_link_into_their_blobs() {
        use std::os::unix::fs::symlink;
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--owner--name");
        let snapshot = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::write(repo.join("blobs").join("f00d"), "{}").unwrap();
        symlink("../../blobs/f00d", snapshot.join("config.json")).unwrap();
        check_links_stay_inside(&snapshot).unwrap();
        // Elsewhere in the cache is still outside.
        std::fs::write(repo.join("other.json"), "{}").unwrap();
        symlink("../../other.json", snapshot.join("x.json")).unwrap();
        let e = check_links_stay_inside(&snapshot).unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("outside"), "{e}");
    }
}
