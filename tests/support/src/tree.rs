//! Whole-tree snapshots: every directory, file (with its bytes and permission bits) and symlink
//! under a root, to prove that a run wrote nothing, or that `restore` put everything back.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// One entry of a tree.
#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, bytes: Vec<u8> },
    Symlink { target: PathBuf },
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Dir { mode } => write!(f, "dir {mode:o}"),
            Node::File { mode, bytes } => match std::str::from_utf8(bytes) {
                Ok(text) if text.len() <= 200 => write!(f, "file {mode:o} {text:?}"),
                _ => write!(f, "file {mode:o} ({} bytes)", bytes.len()),
            },
            Node::Symlink { target } => write!(f, "symlink -> {}", target.display()),
        }
    }
}

/// Every entry below a root, keyed by its path relative to the root.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tree(pub BTreeMap<PathBuf, Node>);

#[cfg(unix)]
fn mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode(meta: &fs::Metadata) -> u32 {
    u32::from(meta.permissions().readonly())
}

/// Snapshots everything below `root` (not following symlinks).
pub fn snapshot(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let path = e.expect("a directory entry").path();
            let meta = fs::symlink_metadata(&path).expect("metadata");
            let rel = path.strip_prefix(root).expect("below root").to_path_buf();
            let node = if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir { mode: mode(&meta) }
            } else if meta.file_type().is_symlink() {
                Node::Symlink {
                    target: fs::read_link(&path).expect("a symlink"),
                }
            } else {
                Node::File {
                    mode: mode(&meta),
                    bytes: fs::read(&path).expect("a readable file"),
                }
            };
            out.insert(rel, node);
        }
    }
    Tree(out)
}

fn describe(node: &Node) -> String {
    match node {
        Node::Dir { mode } => format!("directory (mode {mode:o})"),
        Node::File { mode, bytes } => format!("file of {} bytes (mode {mode:o})", bytes.len()),
        Node::Symlink { target } => format!("symlink to {}", target.display()),
    }
}

impl Tree {
    /// What differs in `after`, one line per path, with the first differing byte of a file.
    pub fn differences(&self, after: &Tree) -> Vec<String> {
        let mut out = Vec::new();
        for (p, b) in &self.0 {
            match after.0.get(p) {
                None => out.push(format!(
                    "{}: was a {}, now missing",
                    p.display(),
                    describe(b)
                )),
                Some(a) if a != b => {
                    let detail = match (b, a) {
                        (
                            Node::File {
                                mode: mb,
                                bytes: bb,
                            },
                            Node::File {
                                mode: ma,
                                bytes: ba,
                            },
                        ) if bb != ba => {
                            let at = bb.iter().zip(ba).position(|(x, y)| x != y);
                            let at = at.unwrap_or(bb.len().min(ba.len()));
                            format!(
                                "content differs from byte {at} ({} bytes before, {} after; \
                                 mode {mb:o} → {ma:o}); before:\n{}\nafter:\n{}",
                                bb.len(),
                                ba.len(),
                                String::from_utf8_lossy(bb),
                                String::from_utf8_lossy(ba)
                            )
                        }
                        _ => format!("was a {}, now a {}", describe(b), describe(a)),
                    };
                    out.push(format!("{}: {detail}", p.display()));
                }
                Some(_) => {}
            }
        }
        for (p, a) in &after.0 {
            if !self.0.contains_key(p) {
                out.push(format!(
                    "{}: did not exist before, now a {}",
                    p.display(),
                    describe(a)
                ));
            }
        }
        out
    }

    /// [`Tree::differences`] as one text.
    pub fn diff(&self, after: &Tree) -> String {
        self.differences(after).join("\n")
    }

    /// Asserts the two trees are equal, showing only what differs.
    #[track_caller]
    pub fn assert_same(&self, after: &Tree, what: &str) {
        assert!(self == after, "{what}:\n{}", self.diff(after));
    }

    /// Paths of files whose names say a write was cut short: Postwarden's temporary files.
    pub fn strays(&self) -> Vec<&Path> {
        self.0
            .keys()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(".postwarden-") || n.starts_with(".postwarden-"))
            })
            .map(PathBuf::as_path)
            .collect()
    }
}
