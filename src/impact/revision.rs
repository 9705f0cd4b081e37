//! The content as it was at a git revision, written into a scratch directory.
//!
//! git runs as a process (no git library): `rev-parse` resolves the revision to one commit,
//! `ls-tree` lists the tracked files of the content directory at that commit and
//! `cat-file --batch` reads them. Only regular files are written; symbolic links and
//! submodules are left out, so nothing written can point outside the scratch directory. The
//! repository itself is only read: no checkout, no index, no worktree.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// The content of one revision, in a directory removed when this is dropped.
pub struct Revision {
    dir: tempfile::TempDir,
    /// The full commit id the revision named.
    pub commit: String,
    /// Tracked symbolic links and submodules that were not written.
    pub left_out: Vec<String>,
}

impl Revision {
    /// The content directory as it was at the revision.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The commit id shortened for people (`1a2b3c4d`).
    pub fn short(&self) -> &str {
        self.commit.get(..8).unwrap_or(&self.commit)
    }
}

/// Why a revision's content could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    /// git refused; its own message.
    #[error("{0}")]
    Git(String),
    #[error("`{0}` looks like an option, not a revision")]
    OptionLike(String),
    #[error("git listed a path that cannot be written safely: `{0}`")]
    UnsafePath(String),
    #[error("cannot write the revision's files: {0}")]
    Write(#[source] std::io::Error),
}

/// Writes the tracked files of the content directory `dir` (inside a git work tree) as they
/// were at `revision` into a new scratch directory.
pub fn materialize(dir: &Path, revision: &str) -> Result<Revision, RevisionError> {
    // `--end-of-options` keeps git from reading a revision as an option; refusing here too
    // gives the clearer message.
    if revision.starts_with('-') {
        return Err(RevisionError::OptionLike(revision.to_string()));
    }
    // Where the content directory sits in the repository (empty at its top).
    let prefix = git(dir, &["rev-parse", "--show-prefix"])?;
    let prefix = prefix.trim_end_matches('\n');
    let commit = match git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{revision}^{{commit}}"),
        ],
    ) {
        Ok(commit) => commit.trim().to_string(),
        Err(_) => return Err(not_a_commit(dir, revision)),
    };
    // `--full-tree`: run from a folder below the top, ls-tree would otherwise list only that
    // folder's part of the tree it is given (the folder inside the folder), and the base
    // would be empty.
    let listing = git_bytes(
        dir,
        &[
            "ls-tree",
            "-r",
            "-z",
            "--full-tree",
            "--end-of-options",
            &format!("{commit}:{prefix}"),
        ],
    )?;
    let scratch = tempfile::Builder::new()
        .prefix("palisade-diff-")
        .tempdir()
        .map_err(RevisionError::Write)?;
    let mut blobs: Vec<(String, PathBuf)> = Vec::new();
    let mut left_out = Vec::new();
    for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        // `<mode> <type> <object>\t<path>`
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        let mut parts = meta.split(' ');
        let (mode, kind, object) = (parts.next(), parts.next(), parts.next());
        match (mode, kind, object) {
            (Some("100644" | "100755"), Some("blob"), Some(object)) => {
                blobs.push((object.to_string(), safe_relative(path)?));
            }
            _ => left_out.push(path.to_string()),
        }
    }
    write_blobs(dir, scratch.path(), &blobs)?;
    Ok(Revision {
        dir: scratch,
        commit,
        left_out,
    })
}

/// git's own explanation of why `revision` names no commit: its message for an unknown
/// object, or what kind of object it names instead.
fn not_a_commit(dir: &Path, revision: &str) -> RevisionError {
    match git(dir, &["cat-file", "-t", revision]) {
        Ok(kind) => RevisionError::Git(format!(
            "`{revision}` names a {}, not a commit",
            kind.trim()
        )),
        Err(RevisionError::Git(message)) => RevisionError::Git(message),
        Err(other) => other,
    }
}

/// A path from the listing as a relative path of plain names (no `..`, no root, no `.git`).
fn safe_relative(path: &str) -> Result<PathBuf, RevisionError> {
    let path = Path::new(path);
    let plain = path.components().all(|c| match c {
        Component::Normal(name) => name != ".git",
        _ => false,
    });
    if plain && path.components().next().is_some() {
        Ok(path.to_path_buf())
    } else {
        Err(RevisionError::UnsafePath(path.display().to_string()))
    }
}

/// Reads every blob with one `git cat-file --batch` and writes it under `to`.
fn write_blobs(dir: &Path, to: &Path, blobs: &[(String, PathBuf)]) -> Result<(), RevisionError> {
    if blobs.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RevisionError::Spawn)?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(RevisionError::Git("git cat-file gave no pipes".into()));
    };
    // Requests are written from a thread: git answers while it reads, and a full output pipe
    // would otherwise stop both sides.
    let requests: String = blobs
        .iter()
        .map(|(object, _)| format!("{object}\n"))
        .collect();
    let writer = std::thread::spawn(move || stdin.write_all(requests.as_bytes()));
    let mut reader = BufReader::new(stdout);
    let mut result = Ok(());
    for (object, path) in blobs {
        if let Err(err) = read_one(&mut reader, object, &to.join(path)) {
            result = Err(err);
            break;
        }
    }
    drop(reader);
    let _ = writer.join();
    let output = child.wait_with_output().map_err(RevisionError::Spawn)?;
    if result.is_ok() && !output.status.success() {
        return Err(RevisionError::Git(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    result
}

/// One `<object> blob <size>\n<bytes>\n` answer, written to `path`.
fn read_one(reader: &mut impl BufRead, object: &str, path: &Path) -> Result<(), RevisionError> {
    let mut header = String::new();
    reader
        .read_line(&mut header)
        .map_err(RevisionError::Spawn)?;
    let mut fields = header.split_whitespace();
    let size = match (fields.next(), fields.next(), fields.next()) {
        (Some(got), Some("blob"), Some(size)) if got == object => size.parse::<u64>().ok(),
        _ => None,
    };
    let Some(size) = size else {
        return Err(RevisionError::Git(format!(
            "git cat-file answered `{}` for {object}",
            header.trim()
        )));
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(RevisionError::Write)?;
    }
    let mut file = std::fs::File::create_new(path).map_err(RevisionError::Write)?;
    let copied =
        std::io::copy(&mut reader.by_ref().take(size), &mut file).map_err(RevisionError::Write)?;
    let mut newline = [0u8; 1];
    if copied != size || reader.read_exact(&mut newline).is_err() {
        return Err(RevisionError::Git(format!(
            "git cat-file ended inside {object}"
        )));
    }
    Ok(())
}

/// Runs git in `dir` and returns its standard output as text, or its message on failure.
fn git(dir: &Path, args: &[&str]) -> Result<String, RevisionError> {
    git_bytes(dir, args).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn git_bytes(dir: &Path, args: &[&str]) -> Result<Vec<u8>, RevisionError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(RevisionError::Spawn)?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(RevisionError::Git(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_written() {
        assert!(safe_relative("rules/x.rhai").is_ok());
        for bad in ["../x", "/etc/passwd", "a/../../b", ".git/config", ""] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }
}
