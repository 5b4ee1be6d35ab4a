//! Sources: the texts documents are read from (files, directories, standard input).
//!
//! This is the only module of the crate that touches the file system, and it only reads.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostic, Diagnostics};

/// The largest source Rampart reads. Bigger inputs are refused rather than read into
/// memory; a whole cluster's `kubectl get -o yaml` stays far below it.
pub const MAX_SOURCE_BYTES: u64 = 256 * 1024 * 1024;

/// The extensions read when walking a directory.
pub const DIRECTORY_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// One text to parse documents from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// A file path, or `<stdin>`.
    pub name: Arc<str>,
    /// The whole text.
    pub text: String,
}

impl Source {
    /// A source from an in-memory text (tests, embedded defaults).
    pub fn from_text(name: &str, text: impl Into<String>) -> Self {
        Self {
            name: Arc::from(name),
            text: text.into(),
        }
    }
}

/// Reads every source named by `args`, in order: `-` is standard input (read once), a
/// directory is walked recursively in lexical order for `*.yaml`, `*.yml` and `*.json`
/// files (names starting with `.` are skipped), anything else is read as a file.
/// Every unreadable path is reported, not only the first.
pub fn read_sources<S: AsRef<str>>(args: &[S]) -> Result<Vec<Source>, Diagnostics> {
    read_sources_with_stdin(args, &mut std::io::stdin())
}

/// [`read_sources`] with an explicit reader standing in for standard input.
pub fn read_sources_with_stdin<S: AsRef<str>>(
    args: &[S],
    stdin: &mut dyn Read,
) -> Result<Vec<Source>, Diagnostics> {
    let mut out = Vec::new();
    let mut errors = Diagnostics::default();
    let mut stdin_read = false;
    for arg in args {
        let arg = arg.as_ref();
        if arg == "-" {
            if stdin_read {
                errors.push(Diagnostic::error("standard input (-) given more than once"));
                continue;
            }
            stdin_read = true;
            match read_limited(stdin, "<stdin>") {
                Ok(text) => out.push(Source {
                    name: Arc::from("<stdin>"),
                    text,
                }),
                Err(e) => errors.push(e),
            }
            continue;
        }
        let path = Path::new(arg);
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut visited = HashSet::new();
                walk_dir(path, &mut visited, &mut out, &mut errors);
            }
            Ok(_) => match read_file(path) {
                Ok(source) => out.push(source),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(Diagnostic::error(format!("{arg}: cannot read: {e}"))),
        }
    }
    errors.into_result(out)
}

fn walk_dir(
    dir: &Path,
    visited: &mut HashSet<PathBuf>,
    out: &mut Vec<Source>,
    errors: &mut Diagnostics,
) {
    // Directory symlink loops end here.
    match dir.canonicalize() {
        Ok(canonical) => {
            if !visited.insert(canonical) {
                return;
            }
        }
        Err(e) => {
            errors.push(Diagnostic::error(format!(
                "{}: cannot read: {e}",
                dir.display()
            )));
            return;
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(Diagnostic::error(format!(
                "{}: cannot read: {e}",
                dir.display()
            )));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                paths.push(entry.path());
            }
            Err(e) => errors.push(Diagnostic::error(format!(
                "{}: cannot read: {e}",
                dir.display()
            ))),
        }
    }
    paths.sort();
    for path in paths {
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk_dir(&path, visited, out, errors),
            Ok(_) => {
                let wanted = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| DIRECTORY_EXTENSIONS.contains(&e));
                if wanted {
                    match read_file(&path) {
                        Ok(source) => out.push(source),
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(Diagnostic::error(format!(
                "{}: cannot read: {e}",
                path.display()
            ))),
        }
    }
}

fn read_file(path: &Path) -> Result<Source, Diagnostic> {
    let name = path.display().to_string();
    let mut file = std::fs::File::open(path)
        .map_err(|e| Diagnostic::error(format!("{name}: cannot read: {e}")))?;
    let text = read_limited(&mut file, &name)?;
    Ok(Source {
        name: Arc::from(name.as_str()),
        text,
    })
}

fn read_limited(reader: &mut dyn Read, name: &str) -> Result<String, Diagnostic> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Diagnostic::error(format!("{name}: cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(Diagnostic::error(format!(
            "{name}: larger than the limit of {MAX_SOURCE_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|e| Diagnostic::error(format!("{name}: not UTF-8 text ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_is_read_once() {
        let mut input: &[u8] = b"kind: Namespace";
        let sources = read_sources_with_stdin(&["-"], &mut input).unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(&*sources[0].name, "<stdin>");
        let mut input: &[u8] = b"";
        let err = read_sources_with_stdin(&["-", "-"], &mut input).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
    }

    #[test]
    fn missing_paths_are_all_reported() {
        let mut input: &[u8] = b"";
        let err = read_sources_with_stdin(&["/nonexistent/a.yaml", "/nonexistent/b"], &mut input)
            .unwrap_err();
        assert_eq!(err.len(), 2);
        assert!(
            err.to_string().contains("/nonexistent/a.yaml: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn directories_are_walked_in_order() {
        let dir = std::env::temp_dir().join(format!("rampart-src-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("b.yaml"), "b").unwrap();
        std::fs::write(dir.join("a.json"), "{}").unwrap();
        std::fs::write(dir.join("sub/c.yml"), "c").unwrap();
        std::fs::write(dir.join("notes.txt"), "skip").unwrap();
        std::fs::write(dir.join(".hidden.yaml"), "skip").unwrap();
        let mut input: &[u8] = b"";
        let sources = read_sources_with_stdin(&[dir.to_str().unwrap()], &mut input).unwrap();
        let names: Vec<String> = sources
            .iter()
            .map(|s| {
                Path::new(&*s.name)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["a.json", "b.yaml", "c.yml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
