//! wfe's own stat cache for snapshots: path → (stat data, blob id) for the
//! files the index cannot vouch for (untracked ones, and tracked ones changed
//! since the last `git add`), so the next snapshot does not read them again.
//!
//! It lives in one small file under `<common-dir>/wfe/`, one per work tree,
//! written whole (temporary file, then rename) after a snapshot that hashed
//! something. A missing, unreadable or malformed file is an empty cache: the
//! cache only ever saves time. Like git's index, an entry is trusted only if
//! its file's mtime is before the cache file's own (the "racy git" rule):
//! a file changed in the same clock tick as the cache was written could
//! otherwise keep matching stat data with different contents.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use gix::ObjectId;
use gix::bstr::{BStr, BString};
use gix::index::entry::Stat;
use gix::index::entry::stat::Time;
use gix::objs::tree::EntryKind as GitEntryKind;

/// The first bytes of a cache file; a different version is ignored.
const MAGIC: &[u8] = b"wfe snapshot cache 1\n";

/// A point in time as file systems record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) secs: i64,
    pub(super) nsecs: u32,
}

impl Stamp {
    /// The modification time of the file at `path`.
    fn modified(path: &Path) -> Option<Stamp> {
        let modified = std::fs::metadata(path).ok()?.modified().ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(Stamp {
            secs: i64::try_from(since.as_secs()).ok()?,
            nsecs: since.subsec_nanos(),
        })
    }
}

/// Git's racy-git rule: a file modified at or after `since` (when the
/// recorded stat data was written down) may have changed without its stat
/// data showing it, so it must be read again. With `nsec` false only whole
/// seconds are compared, as git does unless built with `USE_NSEC`.
pub(super) fn is_racy(mtime: Time, since: Stamp, nsec: bool) -> bool {
    match since.secs.cmp(&i64::from(mtime.secs)) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Equal => !nsec || since.nsecs <= mtime.nsecs,
        std::cmp::Ordering::Greater => false,
    }
}

/// One file as the cache remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CachedFile {
    /// Regular, executable or symlink.
    pub(super) kind: GitEntryKind,
    /// Its stat data when it was read.
    pub(super) stat: Stat,
    /// The blob of its contents (or link target).
    pub(super) id: ObjectId,
}

/// The cache as loaded; read-only while a snapshot walks (possibly on
/// several threads), each walker collecting its [`Kept`] files.
#[derive(Debug)]
pub(super) struct StatCache {
    old: HashMap<BString, CachedFile>,
    /// When the loaded cache was written; `None` if there was none.
    written: Option<Stamp>,
    hash: gix::hash::Kind,
}

/// What a snapshot leaves in the cache for the next one.
#[derive(Debug, Default)]
pub(super) struct Kept {
    files: Vec<(BString, CachedFile)>,
    /// Whether `files` differs from the loaded cache beyond dropped entries.
    changed: bool,
}

impl Kept {
    /// Keeps `file` at `path` for the next snapshot; `hashed` says it was
    /// just read (so the cache must be written again, if only to make the
    /// entry non-racy).
    pub(super) fn keep(&mut self, cache: &StatCache, path: &BStr, file: CachedFile, hashed: bool) {
        if hashed || cache.old.get(path) != Some(&file) {
            self.changed = true;
        }
        self.files.push((path.into(), file));
    }

    /// Adds what another walker of the same snapshot kept.
    pub(super) fn merge(&mut self, other: Kept) {
        self.changed |= other.changed;
        self.files.extend(other.files);
    }
}

impl StatCache {
    /// Loads the cache at `path`; anything unreadable is an empty cache.
    pub(super) fn load(path: &Path, hash: gix::hash::Kind) -> StatCache {
        let written = Stamp::modified(path);
        let old = std::fs::read(path)
            .ok()
            .and_then(|bytes| decode(&bytes, hash))
            .unwrap_or_default();
        StatCache {
            written: written.filter(|_| !old.is_empty()),
            old,
            hash,
        }
    }

    /// The blob id of the file at `path` if the cache knows it with exactly
    /// this kind and stat data, and the entry is not racy.
    pub(super) fn lookup(&self, path: &BStr, kind: GitEntryKind, stat: &Stat) -> Option<ObjectId> {
        let written = self.written?;
        let cached = self.old.get(path)?;
        let options = gix::index::entry::stat::Options {
            trust_ctime: true,
            check_stat: true,
            use_nsec: true,
            use_stdev: false,
        };
        (cached.kind == kind
            && cached.stat.matches(stat, options)
            && !is_racy(cached.stat.mtime, written, true))
        .then_some(cached.id)
    }

    /// Writes `kept` as the cache for the next snapshot, unless it is
    /// what was loaded.
    pub(super) fn save(&self, path: &Path, kept: &Kept) -> std::io::Result<()> {
        if !kept.changed && kept.files.len() == self.old.len() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(MAGIC.len() + kept.files.len() * 80);
        bytes.extend_from_slice(MAGIC);
        bytes.push(self.hash.len_in_bytes() as u8);
        for (path, file) in &kept.files {
            let s = &file.stat;
            let fields = [
                file.kind as u32,
                s.mtime.secs,
                s.mtime.nsecs,
                s.ctime.secs,
                s.ctime.nsecs,
                s.dev,
                s.ino,
                s.uid,
                s.gid,
                s.size,
                path.len() as u32,
            ];
            for field in fields {
                bytes.extend_from_slice(&field.to_le_bytes());
            }
            bytes.extend_from_slice(file.id.as_bytes());
            bytes.extend_from_slice(path);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A name of its own: two snapshots may finish at once (the last rename wins).
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(
            ".{}-{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut file| file.write_all(&bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// Parses a cache file; `None` if it is not one this version wrote.
fn decode(bytes: &[u8], hash: gix::hash::Kind) -> Option<HashMap<BString, CachedFile>> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (&hash_len, mut rest) = rest.split_first()?;
    if usize::from(hash_len) != hash.len_in_bytes() {
        return None;
    }
    let mut out = HashMap::new();
    while !rest.is_empty() {
        let mut fields = [0u32; 11];
        for field in &mut fields {
            let (word, tail) = rest.split_first_chunk::<4>()?;
            *field = u32::from_le_bytes(*word);
            rest = tail;
        }
        let [
            kind,
            msecs,
            mnsecs,
            csecs,
            cnsecs,
            dev,
            ino,
            uid,
            gid,
            size,
            path_len,
        ] = fields;
        let kind = match kind {
            0o100644 => GitEntryKind::Blob,
            0o100755 => GitEntryKind::BlobExecutable,
            0o120000 => GitEntryKind::Link,
            _ => return None,
        };
        let (id, tail) = rest.split_at_checked(usize::from(hash_len))?;
        let (path, tail) = tail.split_at_checked(path_len as usize)?;
        rest = tail;
        let stat = Stat {
            mtime: Time {
                secs: msecs,
                nsecs: mnsecs,
            },
            ctime: Time {
                secs: csecs,
                nsecs: cnsecs,
            },
            dev,
            ino,
            uid,
            gid,
            size,
        };
        let id = ObjectId::try_from(id).ok()?;
        out.insert(BString::from(path), CachedFile { kind, stat, id });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u32) -> CachedFile {
        CachedFile {
            kind: GitEntryKind::BlobExecutable,
            stat: Stat {
                mtime: Time { secs: n, nsecs: 7 },
                ctime: Time { secs: n, nsecs: 8 },
                dev: 1,
                ino: n,
                uid: 2,
                gid: 3,
                size: 4,
            },
            id: ObjectId::from_hex(b"0123456789abcdef0123456789abcdef01234567").expect("hex"),
        }
    }

    #[test]
    fn a_saved_cache_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wfe").join("snapshot-cache");
        let hash = gix::hash::Kind::Sha1;
        let cache = StatCache::load(&path, hash);
        assert!(cache.old.is_empty());
        let name = BString::from(&b"dir/n\xffn-utf8"[..]);
        let mut kept = Kept::default();
        kept.keep(&cache, name.as_ref(), file(1), true);
        let mut other = Kept::default();
        other.keep(&cache, b"x".into(), file(2), true);
        kept.merge(other);
        cache.save(&path, &kept).expect("save");
        let loaded = StatCache::load(&path, hash);
        assert_eq!(loaded.old.len(), 2);
        assert_eq!(loaded.old.get(&name), Some(&file(1)));
        // Old mtimes are before the cache was written: trusted.
        let f = file(1);
        assert_eq!(loaded.lookup(name.as_ref(), f.kind, &f.stat), Some(f.id));
        assert_eq!(
            loaded.lookup(name.as_ref(), GitEntryKind::Blob, &f.stat),
            None
        );
        let mut other = f.stat;
        other.size = 5;
        assert_eq!(loaded.lookup(name.as_ref(), f.kind, &other), None);
    }

    #[test]
    fn entries_as_new_as_the_cache_are_racy() {
        let since = Stamp {
            secs: 100,
            nsecs: 500,
        };
        let at = |secs, nsecs| Time { secs, nsecs };
        assert!(!is_racy(at(99, 900), since, true));
        assert!(!is_racy(at(100, 499), since, true));
        assert!(is_racy(at(100, 500), since, true));
        assert!(is_racy(at(101, 0), since, true));
        assert!(is_racy(at(100, 0), since, false));
    }

    #[test]
    fn garbage_is_an_empty_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache");
        for bytes in [
            &b""[..],
            b"not a cache",
            b"wfe snapshot cache 1\n\x14\x01\x02",
            b"wfe snapshot cache 1\n\x20",
        ] {
            std::fs::write(&path, bytes).expect("write");
            assert!(StatCache::load(&path, gix::hash::Kind::Sha1).old.is_empty());
        }
    }
}
