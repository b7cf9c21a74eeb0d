//! A checkpoint's new objects, written as one pack instead of a file each.
//!
//! Creating a file costs 0.1–1.5 ms on a slow disk, and a checkpoint makes
//! several objects (its blobs, one tree per changed level, the commit). They
//! are collected in memory ([`ObjectSet`]) and written as one pack file and
//! its version-2 index, the formats git itself writes: git and gix read them
//! like any other pack (gix lists the pack directory again when an object is
//! not in the packs it knows).
//!
//! Both files are written under temporary names and renamed into place, the
//! pack first and then the index: git and gix only look at a pack whose
//! index exists, so no reader ever sees half a pack. Objects are stored whole
//! (no deltas); consolidation (`maintenance.rs`) finds the deltas later, as
//! `git gc` does for loose objects.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gix::ObjectId;
use gix::objs::Kind;

use super::{OrGit, Result};

/// The new objects of one checkpoint, not yet on disk.
pub(super) struct ObjectSet<'a> {
    hash: gix::hash::Kind,
    objects: Vec<Pending<'a>>,
    ids: HashSet<ObjectId>,
}

struct Pending<'a> {
    id: ObjectId,
    kind: Kind,
    data: Cow<'a, [u8]>,
}

impl<'a> ObjectSet<'a> {
    /// An empty set for a repository hashing with `hash`.
    pub(super) fn new(hash: gix::hash::Kind) -> ObjectSet<'a> {
        ObjectSet {
            hash,
            objects: Vec::new(),
            ids: HashSet::new(),
        }
    }

    /// Adds an object unless this set or `odb` has it already (without
    /// listing the pack directory again: a pack added since then by another
    /// process at worst costs a duplicate, which git tolerates), and returns
    /// its id.
    pub(super) fn add(
        &mut self,
        odb: &gix::OdbHandle,
        kind: Kind,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<ObjectId> {
        let data = data.into();
        let id = gix::objs::compute_hash(self.hash, kind, &data)
            .or_git(|| format!("hashing a {kind} object"))?;
        // The empty tree is written even if found: git has no built-in copy of it.
        let present = !id.is_empty_tree() && odb.exists_without_refresh(&id);
        if !present && self.ids.insert(id) {
            self.objects.push(Pending { id, kind, data });
        }
        Ok(id)
    }

    /// Encodes `object` and [adds](ObjectSet::add) it.
    pub(super) fn add_object(
        &mut self,
        odb: &gix::OdbHandle,
        object: &impl gix::objs::WriteTo,
    ) -> Result<ObjectId> {
        let mut data = Vec::new();
        object
            .write_to(&mut data)
            .or_git(|| format!("encoding a {} object", object.kind()))?;
        self.add(odb, object.kind(), data)
    }

    /// How many objects the set would write.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Writes the set as one pack and index into `pack_dir` and returns the
    /// pack's path; nothing when the set is empty. With `fsync`, the pack,
    /// the index and the directory reach the disk before this returns.
    pub(super) fn write(self, pack_dir: &Path, fsync: bool) -> io::Result<Option<PathBuf>> {
        if self.objects.is_empty() {
            return Ok(None);
        }
        let (pack, entries, checksum) = encode_pack(self.hash, &self.objects)?;
        let index = encode_index(self.hash, entries, &checksum)?;
        let stem = pack_dir.join(format!("pack-{}", checksum.to_hex()));
        let pack_path = stem.with_extension("pack");
        let index_path = stem.with_extension("idx");
        if index_path.exists() {
            // The very same objects were packed before (same bytes, same name).
            return Ok(Some(pack_path));
        }
        let temp_pack = write_temp(pack_dir, &pack, fsync)?;
        rename_or_remove(&temp_pack, &pack_path)?;
        let temp_index = write_temp(pack_dir, &index, fsync)?;
        rename_or_remove(&temp_index, &index_path)?;
        if fsync {
            File::open(pack_dir)?.sync_all()?;
        }
        Ok(Some(pack_path))
    }
}

/// One entry's place in the pack: its id, the CRC32 of its bytes there, and
/// its offset.
struct Entry {
    id: ObjectId,
    crc32: u32,
    offset: u64,
}

/// The pack's bytes (header, entries, trailing checksum), where each entry
/// is, and the checksum.
fn encode_pack(
    hash: gix::hash::Kind,
    objects: &[Pending<'_>],
) -> io::Result<(Vec<u8>, Vec<Entry>, ObjectId)> {
    let guess: usize = objects.iter().map(|o| o.data.len() / 2 + 16).sum();
    let mut pack = Vec::with_capacity(32 + guess);
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    let count = u32::try_from(objects.len()).map_err(|_| invalid("too many objects"))?;
    pack.extend_from_slice(&count.to_be_bytes());
    let mut entries = Vec::with_capacity(objects.len());
    for object in objects {
        let offset = pack.len();
        entry_header(&mut pack, type_code(object.kind), object.data.len() as u64);
        if object.kind == Kind::Tree && object.data.len() >= STORE_TREES_FROM {
            store_into(&mut pack, &object.data);
        } else {
            deflate_into(&mut pack, &object.data)?;
        }
        entries.push(Entry {
            id: object.id,
            crc32: crc32fast::hash(&pack[offset..]),
            offset: offset as u64,
        });
    }
    let checksum = checksum(hash, &pack)?;
    pack.extend_from_slice(checksum.as_bytes());
    Ok((pack, entries, checksum))
}

/// Trees at least this large are stored in the checkpoint's pack without
/// compression. A large tree is a run's `phases/` (about 31 bytes an entry),
/// rewritten whole by every checkpoint: mostly object ids, which do not
/// compress (deflate saved about a fifth), while deflating it cost as much
/// as hashing it. Consolidation (`maintenance.rs`) stores these trees as
/// deltas of each other, so they do not stay large on disk.
const STORE_TREES_FROM: usize = 4096;

/// Appends `data` to `out` as one zlib stream of stored (uncompressed)
/// blocks: no compressor, no tables to reset, one copy and an Adler-32.
fn store_into(out: &mut Vec<u8>, data: &[u8]) {
    // CMF: deflate, 32 KiB window; FLG: no dictionary, "fastest", and
    // (CMF * 256 + FLG) a multiple of 31 as RFC 1950 requires.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(usize::from(u16::MAX)).peekable();
    if blocks.peek().is_none() {
        // An empty final stored block.
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        out.push(u8::from(last));
        // `chunks` keeps each block within u16.
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
}

/// The Adler-32 checksum a zlib stream ends with (RFC 1950).
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    // The largest run of bytes whose sums cannot overflow a u32 before the
    // modulo (zlib's NMAX).
    const RUN: usize = 5552;
    let (mut a, mut b) = (1u32, 0u32);
    for run in data.chunks(RUN) {
        for &byte in run {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Appends `data` to `out` as one zlib stream. One compressor per thread
/// is reset and reused: a new one allocates and zeroes about 300 KB of
/// tables (an `mmap`, page faults, a `munmap`), which for the few small
/// objects of a checkpoint cost more than compressing them.
fn deflate_into(out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    use gix::zlib::Status;
    use gix::zlib::stream::deflate::{Compress, FlushCompress};
    thread_local! {
        static COMPRESS: std::cell::RefCell<Option<Compress>> = const { std::cell::RefCell::new(None) };
    }
    COMPRESS.with(|cell| {
        let mut cell = cell.borrow_mut();
        // What git and gix use for loose objects: the objects are
        // recompressed with their deltas when consolidated.
        let compress =
            cell.get_or_insert_with(|| Compress::new(gix::zlib::Compression::BEST_SPEED));
        compress.reset();
        let mut buf = [0u8; 8192];
        let mut rest = data;
        loop {
            let (read, written) = (compress.total_in(), compress.total_out());
            let status = compress
                .compress(rest, &mut buf, FlushCompress::Finish)
                .map_err(io::Error::other)?;
            let read = usize::try_from(compress.total_in() - read).map_err(io::Error::other)?;
            let written =
                usize::try_from(compress.total_out() - written).map_err(io::Error::other)?;
            out.extend_from_slice(&buf[..written]);
            rest = &rest[read..];
            match status {
                Status::StreamEnd => return Ok(()),
                Status::Ok | Status::BufError if read > 0 || written > 0 => {}
                Status::Ok | Status::BufError => {
                    return Err(io::Error::other("zlib made no progress"));
                }
            }
        }
    })
}

/// The index (version 2) of a pack whose checksum is `pack_checksum`.
fn encode_index(
    hash: gix::hash::Kind,
    mut entries: Vec<Entry>,
    pack_checksum: &ObjectId,
) -> io::Result<Vec<u8>> {
    entries.sort_by_key(|entry| entry.id);
    let id_len = hash.len_in_bytes();
    let mut index = Vec::with_capacity(8 + 256 * 4 + entries.len() * (id_len + 12) + 2 * id_len);
    index.extend_from_slice(b"\xfftOc");
    index.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for entry in &entries {
        fanout[usize::from(entry.id.as_bytes()[0])] += 1;
    }
    let mut total = 0u32;
    for count in fanout {
        total += count;
        index.extend_from_slice(&total.to_be_bytes());
    }
    for entry in &entries {
        index.extend_from_slice(entry.id.as_bytes());
    }
    for entry in &entries {
        index.extend_from_slice(&entry.crc32.to_be_bytes());
    }
    // Offsets past 2 GiB go to a table of 64-bit offsets, named by position.
    let mut large = Vec::new();
    for entry in &entries {
        let small = match u32::try_from(entry.offset) {
            Ok(offset) if offset < 0x8000_0000 => offset,
            _ => {
                let position = u32::try_from(large.len()).map_err(|_| invalid("pack too large"))?;
                large.push(entry.offset);
                0x8000_0000 | position
            }
        };
        index.extend_from_slice(&small.to_be_bytes());
    }
    for offset in large {
        index.extend_from_slice(&offset.to_be_bytes());
    }
    index.extend_from_slice(pack_checksum.as_bytes());
    let own = checksum(hash, &index)?;
    index.extend_from_slice(own.as_bytes());
    Ok(index)
}

/// A pack entry's header: the type and the inflated size, 4 bits then 7
/// bits per byte, each byte but the last with its high bit set.
fn entry_header(out: &mut Vec<u8>, type_code: u8, size: u64) {
    let mut byte = (type_code << 4) | (size & 0x0f) as u8;
    let mut rest = size >> 4;
    while rest != 0 {
        out.push(byte | 0x80);
        byte = (rest & 0x7f) as u8;
        rest >>= 7;
    }
    out.push(byte);
}

/// The pack format's number for each kind of object.
fn type_code(kind: Kind) -> u8 {
    match kind {
        Kind::Commit => 1,
        Kind::Tree => 2,
        Kind::Blob => 3,
        Kind::Tag => 4,
    }
}

/// The trailing checksum of a pack or an index: SHA-1 without collision
/// detection, as git (since 2.48) computes the checksum of the files it
/// writes. It guards against corruption of bytes this process produced, not
/// against crafted input, and detection made it several times slower: with
/// a long run's `phases/` tree in every pack it was a tenth of a
/// checkpoint's CPU. Object ids keep gix's collision-detecting SHA-1.
fn checksum(hash: gix::hash::Kind, bytes: &[u8]) -> io::Result<ObjectId> {
    if hash == gix::hash::Kind::Sha1 {
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
        return ObjectId::try_from(digest.as_ref()).map_err(io::Error::other);
    }
    let mut hasher = gix::hash::hasher(hash);
    hasher.update(bytes);
    hasher.try_finalize().map_err(io::Error::other)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

/// Writes `bytes` to a new read-only file in `dir` named like git's own
/// temporary packs (`tmp_pack_*`, which `git gc` clears if a crash leaves one).
fn write_temp(dir: &Path, bytes: &[u8], fsync: bool) -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        "tmp_pack_wfe_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        // Packs are immutable; git makes them read-only too. Created so
        // (the descriptor still writes), which spares a `fchmod` per file.
        let create = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&path)
        };
        let mut file = match create() {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // A repository without `objects/pack` yet (git creates it, not everyone does).
                fs::create_dir_all(dir)?;
                create()?
            }
            other => other?,
        };
        file.write_all(bytes)?;
        if fsync {
            file.sync_all()?;
        }
        Ok(())
    })();
    match written {
        Ok(()) => Ok(path),
        Err(err) => {
            let _ = fs::remove_file(&path);
            Err(err)
        }
    }
}

fn rename_or_remove(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to).inspect_err(|_| {
        let _ = fs::remove_file(from);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_git::git;

    fn repo() -> (tempfile::TempDir, gix::Repository) {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q"]);
        let repo = gix::open_opts(dir.path(), gix::open::Options::isolated()).expect("open");
        (dir, repo)
    }

    fn pack_dir(repo: &gix::Repository) -> PathBuf {
        repo.objects.store_ref().path().join("pack")
    }

    #[test]
    fn entry_headers_match_git() {
        let mut out = Vec::new();
        entry_header(&mut out, 3, 10);
        assert_eq!(out, [0x3a]);
        out.clear();
        // 100 = 0b110_0100: low 4 bits 0100, then 110.
        entry_header(&mut out, 1, 100);
        assert_eq!(out, [0x80 | 0x10 | 0x04, 0x06]);
    }

    #[test]
    fn a_written_pack_is_read_by_git_and_by_gix() {
        let (dir, repo) = repo();
        // Incompressible, so its stream takes many rounds of the
        // compressor's buffer (which is reused from object to object).
        let mut seed = 7u32;
        let big: Vec<u8> = (0..100_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as u8
            })
            .collect();
        let mut set = ObjectSet::new(repo.object_hash());
        let small = set
            .add(&repo.objects, Kind::Blob, &b"hello\n"[..])
            .expect("blob");
        let large = set.add(&repo.objects, Kind::Blob, &big[..]).expect("blob");
        let again = set
            .add(&repo.objects, Kind::Blob, &b"hello\n"[..])
            .expect("blob");
        assert_eq!(small, again);
        assert_eq!(set.len(), 2, "a duplicate is added once");
        let written = set
            .write(&pack_dir(&repo), false)
            .expect("write")
            .expect("a pack");
        assert!(written.exists());
        let leftovers: Vec<_> = fs::read_dir(pack_dir(&repo))
            .expect("read pack dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("tmp_"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary files remain");

        let listed = git(
            dir.path(),
            &["verify-pack", "-v", &written.to_string_lossy()],
        );
        assert!(listed.contains("non delta: 2 objects"), "{listed}");
        assert_eq!(
            git(dir.path(), &["cat-file", "-p", &small.to_string()]),
            "hello\n"
        );
        assert_eq!(
            git(dir.path(), &["cat-file", "-s", &large.to_string()]),
            "100000\n"
        );
        // The handle opened before the pack existed finds it after a refresh.
        assert_eq!(repo.find_blob(small).expect("find").data, b"hello\n");
        let fresh = gix::open_opts(dir.path(), gix::open::Options::isolated()).expect("open");
        assert_eq!(fresh.find_blob(large).expect("find").data, big);

        // Objects already in the repository are not written again.
        let mut set = ObjectSet::new(repo.object_hash());
        set.add(&fresh.objects, Kind::Blob, &b"hello\n"[..])
            .expect("blob");
        assert_eq!(set.len(), 0);
        assert!(set.write(&pack_dir(&repo), true).expect("write").is_none());
    }

    #[test]
    fn large_trees_are_stored_and_read_back_by_git() {
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398, "RFC 1950's checksum");
        assert_eq!(adler32(&[0xff; 100_000]), {
            // zlib's reference loop, a byte at a time.
            let (mut a, mut b) = (1u64, 0u64);
            for _ in 0..100_000 {
                a = (a + 0xff) % 65_521;
                b = (b + a) % 65_521;
            }
            u32::try_from((b << 16) | a).expect("fits")
        });
        let (dir, repo) = repo();
        // A tree like a long run's `phases/`: 3,000 entries (about 90 KB,
        // two stored blocks), next to a small blob.
        let mut set = ObjectSet::new(repo.object_hash());
        let blob = set
            .add(&repo.objects, Kind::Blob, &b"{}\n"[..])
            .expect("blob");
        let mut entries: Vec<gix::objs::tree::Entry> = (0..3000)
            .map(|i| gix::objs::tree::Entry {
                mode: gix::objs::tree::EntryKind::Blob.into(),
                filename: format!("p{i}").into(),
                oid: blob,
            })
            .collect();
        entries.sort();
        let big = gix::objs::Tree { entries };
        let mut encoded = Vec::new();
        gix::objs::WriteTo::write_to(&big, &mut encoded).expect("encode");
        assert!(
            encoded.len() > usize::from(u16::MAX),
            "spans two stored blocks"
        );
        let big_id = set.add_object(&repo.objects, &big).expect("tree");
        let written = set
            .write(&pack_dir(&repo), false)
            .expect("write")
            .expect("a pack");
        let size = fs::metadata(&written).expect("pack").len();
        assert!(
            size > encoded.len() as u64,
            "the tree is stored, not deflated: {size} bytes"
        );
        let listed = git(
            dir.path(),
            &["verify-pack", "-v", &written.to_string_lossy()],
        );
        assert!(listed.contains("non delta: 2 objects"), "{listed}");
        let listing = git(dir.path(), &["ls-tree", &big_id.to_string()]);
        assert_eq!(listing.lines().count(), 3000);
        git(dir.path(), &["fsck", "--full", "--no-dangling"]);
        let fresh = gix::open_opts(dir.path(), gix::open::Options::isolated()).expect("open");
        let tree = fresh.find_tree(big_id).expect("find");
        assert_eq!(tree.data, encoded);
    }

    #[test]
    fn offsets_past_two_gib_use_the_large_offset_table() {
        let hash = gix::hash::Kind::Sha1;
        let entries = vec![
            Entry {
                id: ObjectId::from_hex(b"0000000000000000000000000000000000000001").expect("id"),
                crc32: 7,
                offset: 12,
            },
            Entry {
                id: ObjectId::from_hex(b"ff00000000000000000000000000000000000002").expect("id"),
                crc32: 9,
                offset: 0x1_0000_0000,
            },
        ];
        let index = encode_index(hash, entries, &ObjectId::null(hash)).expect("index");
        let offsets = 8 + 256 * 4 + 2 * 20 + 2 * 4;
        assert_eq!(index[offsets..offsets + 4], 12u32.to_be_bytes());
        assert_eq!(
            index[offsets + 4..offsets + 8],
            0x8000_0000u32.to_be_bytes()
        );
        assert_eq!(
            index[offsets + 8..offsets + 16],
            0x1_0000_0000u64.to_be_bytes()
        );
        // Fanout: one id starting with 0x00, both by 0xff.
        assert_eq!(index[8..12], 1u32.to_be_bytes());
        assert_eq!(index[8 + 255 * 4..8 + 256 * 4], 2u32.to_be_bytes());
    }
}
