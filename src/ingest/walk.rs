//! Listing the files under a directory, sorted, for readers that walk folders.

use std::path::{Path, PathBuf};

use datafusion::common::{DataFusionError, Result};

/// Every regular file under `dir` (following symbolic links to files, not to directories),
/// as paths relative to `dir` with `/` separators, sorted.
pub fn files(dir: &Path) -> Result<Vec<String>> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| DataFusionError::Plan(format!("cannot read '{}': {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(DataFusionError::Plan(format!(
            "'{}' is not a directory",
            dir.display()
        )));
    }
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries = std::fs::read_dir(&here).map_err(|e| {
            DataFusionError::Execution(format!("cannot list '{}': {e}", here.display()))
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                DataFusionError::Execution(format!("cannot list '{}': {e}", here.display()))
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = rel.join(&name);
            let file_type = entry.file_type().map_err(|e| {
                DataFusionError::Execution(format!(
                    "cannot stat '{}': {e}",
                    here.join(&name).display()
                ))
            })?;
            if file_type.is_dir() {
                stack.push(path);
            } else if file_type.is_file() || (file_type.is_symlink() && here.join(&name).is_file())
            {
                out.push(
                    path.components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A relative path split into its stem path (`a/b`) and lowercase extension (`jpg`), at the
/// last dot of the file name.
pub fn split_ext(rel: &str) -> (&str, String) {
    let base_start = rel.rfind('/').map_or(0, |i| i + 1);
    match rel[base_start..].rfind('.') {
        Some(dot) if dot > 0 => (
            &rel[..base_start + dot],
            rel[base_start + dot + 1..].to_ascii_lowercase(),
        ),
        _ => (rel, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_last_dot_of_the_file_name() {
        assert_eq!(split_ext("a.b/c.tar.PNG"), ("a.b/c.tar", "png".to_string()));
        assert_eq!(split_ext("a/.hidden"), ("a/.hidden", String::new()));
        assert_eq!(split_ext("x"), ("x", String::new()));
    }
}
