//! Bounded reads of the files wfe takes from users and repositories.
//!
//! Every file wfe reads on someone's say-so (a template, `--args-file`, an
//! approved artifact, `.wfe/config.json`, the credentials file, replay
//! fixtures, control requests) goes through here: it must be a regular
//! file and at most a given size, or the read is refused with a typed error
//! that names the file, what it is (or how large) and the limit. So
//! `/dev/zero`, a FIFO or a directory never makes wfe grow without bound or
//! block forever.
//!
//! The file is opened with `O_NONBLOCK` (a FIFO cannot block the open) and
//! its type is checked on the opened handle, so the path cannot be swapped
//! between the check and the read; the read itself is capped too, in case
//! the file grows. [`read_no_follow`] also refuses a symbolic link, for
//! files a script controls (`$WFE_OUT/<name>.json`).
//!
//! A leaf: it imports no other wfe module and never prints.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Templates, `.wfe/config.json`, args files, repo schemas: 4 MiB.
pub const TEXT_LIMIT: u64 = 4 * MIB;
/// Approved and edited artifacts, when the config says nothing: 16 MiB.
pub const ARTIFACT_LIMIT: u64 = 16 * MIB;
/// Replay fixtures (`exchanges.jsonl` of a recorded run): 64 MiB.
pub const FIXTURE_LIMIT: u64 = 64 * MIB;
/// wfe's own small files under `<git-dir>/wfe/` (control requests and
/// replies, lock files, process records) and the credentials file: 1 MiB.
pub const SMALL_LIMIT: u64 = MIB;

const MIB: u64 = 1024 * 1024;

/// Why a bounded read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing at the path.
    #[error("{} does not exist", .path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// Something that is not a regular file: a directory, a device, a FIFO,
    /// a socket, or (for [`read_no_follow`]) a symbolic link.
    #[error("{} is {kind}, not a regular file", .path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is, with its article ("a directory").
        kind: &'static str,
    },
    /// Larger than the limit.
    #[error("{} is {size} bytes, over the limit of {}", .path.display(), describe_size(*.limit))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or how much was read before giving up).
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The file is not UTF-8 text (only from [`read_to_string`]).
    #[error("{} is not UTF-8 text", .path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// Any other I/O failure.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl ReadError {
    /// True when nothing is at the path (callers for whom a missing file
    /// means "use the default").
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::NotFound { .. })
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::NotFound { path }
            | ReadError::NotAFile { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::NotText { path }
            | ReadError::Io { path, .. } => path,
        }
    }
}

/// `limit` for people: `4 MiB`, `512 KiB` or `N bytes`.
pub fn describe_size(limit: u64) -> String {
    if limit >= MIB && limit.is_multiple_of(MIB) {
        format!("{} MiB", limit / MIB)
    } else if limit >= 1024 && limit.is_multiple_of(1024) {
        format!("{} KiB", limit / 1024)
    } else {
        format!("{limit} bytes")
    }
}

/// Reads `path` (a symbolic link to a regular file is fine) if it is a
/// regular file of at most `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open(path, false)?;
    read_file(file, path, limit)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, limit: u64) -> Result<String, ReadError> {
    let bytes = read(path, limit)?;
    String::from_utf8(bytes).map_err(|_| ReadError::NotText {
        path: path.to_path_buf(),
    })
}

/// [`read`], refusing a symbolic link instead of following it: for files
/// someone else's process wrote, whose link could point anywhere.
pub fn read_no_follow(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open(path, true)?;
    read_file(file, path, limit)
}

/// Opens `path` for a bounded read: without blocking on a FIFO and, with
/// `no_follow`, without following a final symbolic link.
pub fn open(path: &Path, no_follow: bool) -> Result<File, ReadError> {
    let mut flags = rustix::fs::OFlags::NONBLOCK;
    if no_follow {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits().cast_signed())
        .open(path)
        .map_err(|source| open_error(path, no_follow, source))
}

/// Reads an already opened `file` (named `path` in errors) if it is a
/// regular file of at most `limit` bytes.
pub fn read_file(file: File, path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = file.metadata().map_err(io)?;
    if let Some(kind) = not_regular(&meta.file_type()) {
        return Err(ReadError::NotAFile {
            path: path.to_path_buf(),
            kind,
        });
    }
    let too_large = |size| ReadError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit,
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    // Capped as well: the file may grow while it is read.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let len = bytes.len() as u64;
    if len > limit {
        return Err(too_large(len));
    }
    Ok(bytes)
}

/// Reads a stream (standard input) of at most `limit` bytes, named `name`
/// in errors: a pipe has no size to check first, so the read itself stops
/// one byte past the limit.
pub fn read_stream(stream: impl Read, name: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    stream
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io {
            path: name.to_path_buf(),
            source,
        })?;
    let len = bytes.len() as u64;
    if len > limit {
        return Err(ReadError::TooLarge {
            path: name.to_path_buf(),
            size: len,
            limit,
        });
    }
    Ok(bytes)
}

/// What a file type is when it is not a regular file.
fn not_regular(kind: &std::fs::FileType) -> Option<&'static str> {
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_symlink() {
        Some("a symbolic link")
    } else {
        Some("not a regular file")
    }
}

fn open_error(path: &Path, no_follow: bool, source: io::Error) -> ReadError {
    let path = path.to_path_buf();
    if source.kind() == io::ErrorKind::NotFound {
        return ReadError::NotFound { path };
    }
    // O_NOFOLLOW on a symbolic link fails with ELOOP.
    if no_follow && source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return ReadError::NotAFile {
            path,
            kind: "a symbolic link",
        };
    }
    // A socket cannot be opened (ENXIO): say what it is rather than the errno.
    if let Ok(meta) = std::fs::symlink_metadata(&path)
        && meta.file_type().is_socket()
    {
        return ReadError::NotAFile {
            path,
            kind: "a socket",
        };
    }
    ReadError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_and_a_link_to_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        std::fs::write(&file, "{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read(&file, 2).unwrap(), b"{}");
        assert_eq!(read_to_string(&link, 10).unwrap(), "{}");
    }

    #[test]
    fn refuses_devices_directories_and_fifos_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(Path::new("/dev/zero"), 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/zero is a character device, not a regular file"
        );
        let err = read(dir.path(), 10).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is a directory, not a regular file")
        );
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RWXU).unwrap();
        // No writer: a blocking open would hang here.
        let err = read(&fifo, 10).unwrap_err();
        assert!(matches!(
            err,
            ReadError::NotAFile {
                kind: "a FIFO (named pipe)",
                ..
            }
        ));
    }

    #[test]
    fn refuses_a_file_over_the_limit_naming_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big");
        std::fs::write(&file, vec![b'x'; 2048]).unwrap();
        assert_eq!(read(&file, 2048).unwrap().len(), 2048);
        let err = read(&file, 1024).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is 2048 bytes, over the limit of 1 KiB"),
            "{err}"
        );
    }

    #[test]
    fn no_follow_refuses_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("out.json");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let err = read_no_follow(&link, 1 << 20).unwrap_err();
        assert!(matches!(
            err,
            ReadError::NotAFile {
                kind: "a symbolic link",
                ..
            }
        ));
        let missing = read_no_follow(&dir.path().join("none"), 1).unwrap_err();
        assert!(missing.is_not_found());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(describe_size(4 * MIB), "4 MiB");
        assert_eq!(describe_size(512 * 1024), "512 KiB");
        assert_eq!(describe_size(1000), "1000 bytes");
    }
}
