//! Workspace snapshots and restores in real repositories, checked against
//! the git CLI: a snapshot must equal `git add -A && git write-tree` run on
//! a copy of the index.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::store::contract::{message, run_id};
use crate::store::test_git::{git, git_command};
use crate::store::{
    Change, CheckpointId, GitStore, MemoryStore, RunId, RunStore, StoreError, WORKSPACE,
};

/// What `git add -A && git write-tree` gives, in a copy of the index.
fn git_add_all_tree(dir: &Path) -> String {
    let scratch = tempfile::tempdir().expect("tempdir");
    let index = scratch.path().join("index");
    let git_dir = git(dir, &["rev-parse", "--absolute-git-dir"]);
    let real = Path::new(git_dir.trim()).join("index");
    if real.exists() {
        std::fs::copy(&real, &index).expect("copy the index");
    }
    for args in [&["add", "-A"][..], &["write-tree"][..]] {
        let out = git_command(dir, args)
            .env("GIT_INDEX_FILE", &index)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "write-tree" {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
    }
    unreachable!("write-tree returns")
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn set_executable(root: &Path, path: &str, executable: bool) {
    let path = root.join(path);
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Moves the mtime of every file under `root` an hour back, so stat data
/// recorded now is not racily clean (as for files edited before the user's
/// last `git add`).
fn age(root: &Path) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    for entry in walk(root) {
        let file_type = entry.file_type().expect("type");
        if file_type.is_file() {
            let file = std::fs::File::options()
                .write(true)
                .open(entry.path())
                .expect("open");
            file.set_modified(past).expect("set mtime");
        } else if file_type.is_symlink() {
            // The standard library cannot set a symlink's own times.
            let status = Command::new("touch")
                .args(["-h", "-d", "1 hour ago"])
                .arg(entry.path())
                .status()
                .expect("run touch");
            assert!(status.success());
        }
    }
}

fn walk(root: &Path) -> Vec<std::fs::DirEntry> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("list") {
            let entry = entry.expect("entry");
            if entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type().expect("type").is_dir() {
                dirs.push(entry.path());
            }
            out.push(entry);
        }
    }
    out
}

/// A repository with one commit of tracked files, some of them executable,
/// a symlink, ignore rules at several levels and in `info/exclude` and
/// `core.excludesFile`.
fn user_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["config", "user.name", "Repo User"]);
    git(root, &["config", "user.email", "user@example.com"]);
    let excludes = root.join(".git").join("my-excludes");
    std::fs::write(&excludes, "*.bak\n").expect("write excludes");
    git(
        root,
        &[
            "config",
            "core.excludesFile",
            excludes.to_str().expect("utf-8"),
        ],
    );
    std::fs::write(root.join(".git/info/exclude"), "secret.txt\n").expect("write exclude");
    write(root, ".gitignore", "*.log\nbuild/\n");
    write(root, "README", "hello\n");
    write(root, "src/lib.rs", "pub fn lib() {}\n");
    write(root, "src/main.rs", "fn main() {}\n");
    write(root, "src/.gitignore", "gen/\n*.tmp\n!keep.tmp\n");
    write(root, "src/deep/nested/file.txt", "deep\n");
    write(root, "a-b.txt", "dash\n");
    write(root, "a/x.txt", "slash\n");
    write(root, "a0", "zero\n");
    write(root, "old.txt", "to be deleted\n");
    write(root, "typechange", "a file, later a symlink\n");
    write(root, "becomes-dir", "a file, later a directory\n");
    write(root, "script.sh", "#!/bin/sh\necho hi\n");
    set_executable(root, "script.sh", true);
    write(root, "chmod-me", "mode changes\n");
    std::os::unix::fs::symlink("README", root.join("link")).expect("symlink");
    write(root, "build/keep.txt", "tracked though ignored\n");
    git(root, &["add", "-A"]);
    git(root, &["add", "-f", "build/keep.txt"]);
    git(root, &["commit", "-q", "-m", "first"]);
    dir
}

/// Every kind of change `git add -A` must pick up, and some it must not.
fn change_everything(root: &Path) {
    write(root, "src/main.rs", "fn main() { changed() }\n");
    std::fs::remove_file(root.join("old.txt")).expect("rm");
    std::fs::remove_file(root.join("typechange")).expect("rm");
    std::os::unix::fs::symlink("src/lib.rs", root.join("typechange")).expect("symlink");
    std::fs::remove_file(root.join("becomes-dir")).expect("rm");
    write(root, "becomes-dir/inner.txt", "now a directory\n");
    set_executable(root, "chmod-me", true);
    write(root, "notes.md", "untracked\n");
    write(root, "src/new.rs", "untracked in a subdirectory\n");
    write(root, "newdir/a/b.txt", "untracked, deep\n");
    write(root, "tool.sh", "#!/bin/sh\n");
    set_executable(root, "tool.sh", true);
    std::os::unix::fs::symlink("nowhere", root.join("dangling")).expect("symlink");
    std::fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")),
        "latin-1 name\n",
    )
    .expect("write a non-UTF-8 name");
    // Ignored, one way or another.
    write(root, "debug.log", "ignored by *.log\n");
    write(root, "src/gen/out.rs", "ignored by src/.gitignore\n");
    write(root, "src/scratch.tmp", "ignored by *.tmp\n");
    write(root, "src/keep.tmp", "re-included by !keep.tmp\n");
    write(root, "secret.txt", "ignored by info/exclude\n");
    write(root, "copy.bak", "ignored by core.excludesFile\n");
    write(root, "build/new.txt", "untracked in an ignored directory\n");
    write(
        root,
        "build/keep.txt",
        "tracked and changed in an ignored directory\n",
    );
    std::fs::create_dir_all(root.join("emptydir/inner")).expect("mkdir");
}

fn snapshot(store: &GitStore) -> crate::store::SnapshotStats {
    store.snapshot_workspace_with_stats().expect("snapshot")
}

fn commit_snapshot(store: &GitStore, run: &RunId, parent: Option<&CheckpointId>) -> CheckpointId {
    store
        .commit(
            run,
            parent,
            &[
                Change::write("run.json", "{}"),
                Change::Snapshot {
                    path: WORKSPACE.to_string(),
                    masker: Default::default(),
                },
            ],
            &message(run, "snapshot"),
            1_700_000_000,
        )
        .expect("commit a snapshot")
}

fn fsck(root: &Path) {
    git(root, &["fsck", "--strict", "--no-progress"]);
}

#[test]
fn a_snapshot_is_what_git_add_all_stages() {
    let dir = user_repo();
    let root = dir.path();
    let store = GitStore::open_isolated(root).expect("open");
    // A clean work tree: the snapshot is HEAD's tree.
    assert_eq!(
        store.snapshot_workspace().expect("snapshot"),
        git(root, &["rev-parse", "HEAD^{tree}"]).trim()
    );

    change_everything(root);
    let index_before = std::fs::read(root.join(".git/index")).expect("read index");
    let status_before = git(root, &["status", "--porcelain", "--ignored"]);
    let stats = snapshot(&store);
    assert_eq!(stats.tree, git_add_all_tree(root));
    assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
    assert_eq!(
        std::fs::read(root.join(".git/index")).expect("read index"),
        index_before,
        "the user's index is untouched"
    );
    assert_eq!(
        git(root, &["status", "--porcelain", "--ignored"]),
        status_before
    );

    let listing = git(root, &["ls-tree", "-r", "--full-tree", &stats.tree]);
    for expected in [
        "100755 blob",
        "\tchmod-me",
        "120000 blob",
        "\ttypechange",
        "\tbuild/keep.txt",
        "\tsrc/keep.tmp",
        "\tnewdir/a/b.txt",
        "\tbecomes-dir/inner.txt",
    ] {
        assert!(listing.contains(expected), "{expected} in\n{listing}");
    }
    for absent in [
        "old.txt",
        "debug.log",
        "src/gen",
        "scratch.tmp",
        "secret.txt",
        "copy.bak",
        "build/new.txt",
        "emptydir",
    ] {
        assert!(!listing.contains(absent), "{absent} in\n{listing}");
    }
    fsck(root);
}

#[test]
fn unchanged_files_are_not_read_again() {
    let dir = user_repo();
    let root = dir.path();
    for n in 0..40 {
        write(root, &format!("many/f{n}.txt"), &format!("file {n}\n"));
    }
    age(root);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "many"]);
    write(root, "untracked/one.txt", "1\n");
    write(root, "untracked/two.txt", "2\n");
    // Only these: touching a tracked file changes its ctime, which the index compares.
    age(&root.join("untracked"));
    let tracked = git(root, &["ls-files"]).lines().count();
    let store = GitStore::open_isolated(root).expect("open");

    let first = snapshot(&store);
    assert_eq!(first.from_index, tracked, "{first:?}");
    assert_eq!(first.hashed, 2, "the untracked files: {first:?}");
    assert_eq!(first.blobs_written, 2);
    assert_eq!(first.tree, git_add_all_tree(root));

    // Nothing changed: nothing is read, nothing written.
    let second = snapshot(&store);
    assert_eq!(second.tree, first.tree);
    assert_eq!(second.hashed, 0, "{second:?}");
    assert_eq!(second.from_cache, 2);
    assert_eq!(second.blobs_written + second.trees_written, 0);

    // One file changed: one file read, its blob and the trees above it written.
    write(root, "many/f7.txt", "changed\n");
    let third = snapshot(&store);
    assert_eq!(third.hashed, 1, "{third:?}");
    assert_eq!(third.blobs_written, 1);
    assert_eq!(third.trees_written, 2, "many/ and the root");
    assert_eq!(third.tree, git_add_all_tree(root));
    fsck(root);
}

#[test]
fn a_checkpoint_records_the_workspace_for_git_diff() {
    let dir = user_repo();
    let root = dir.path();
    let store = GitStore::open_isolated(root).expect("open");
    let run = run_id("1");
    let c1 = commit_snapshot(&store, &run, None);
    write(root, "src/lib.rs", "pub fn lib() { 42 }\n");
    write(root, "added.txt", "new\n");
    let c2 = commit_snapshot(&store, &run, Some(&c1));

    let diff = git(
        root,
        &["diff", "--name-status", &c1.0, &c2.0, "--", "workspace/"],
    );
    assert_eq!(diff, "A\tworkspace/added.txt\nM\tworkspace/src/lib.rs\n");
    assert_eq!(
        git(root, &["show", &format!("{}:workspace/src/lib.rs", c2.0)]),
        "pub fn lib() { 42 }\n"
    );
    let tree = store
        .workspace_tree(&c2)
        .expect("workspace tree")
        .expect("some");
    assert_eq!(
        tree,
        git(root, &["rev-parse", &format!("{}:workspace", c2.0)]).trim()
    );
    assert_eq!(tree, store.snapshot_workspace().expect("snapshot"));
    // The store still reads the rest of the checkpoint.
    assert_eq!(
        store.read(&c2, "run.json").expect("read"),
        Some(b"{}".to_vec())
    );
    assert_eq!(
        store.read(&c2, "workspace/added.txt").expect("read"),
        Some(b"new\n".to_vec())
    );

    // A checkpoint without a snapshot has none; later ones keep the last.
    let c3 = store
        .commit(
            &run,
            Some(&c2),
            &[Change::write("x", "y")],
            &message(&run, "x"),
            2,
        )
        .expect("commit");
    assert_eq!(store.workspace_tree(&c3).expect("tree"), Some(tree));
    let other = run_id("2");
    let bare = store
        .commit(
            &other,
            None,
            &[Change::write("x", "y")],
            &message(&other, "x"),
            2,
        )
        .expect("commit");
    assert_eq!(store.workspace_tree(&bare).expect("tree"), None);

    // A stale writer is refused before it snapshots anything.
    assert!(matches!(
        store.commit(
            &run,
            Some(&c1),
            &[Change::Snapshot {
                path: WORKSPACE.into(),
                masker: Default::default(),
            }],
            &message(&run, "stale"),
            3
        ),
        Err(StoreError::Conflict { .. })
    ));
    fsck(root);
}

/// A copy of the work tree's bytes, modes and links, `.git` left out.
fn picture(root: &Path) -> Vec<(Vec<u8>, String)> {
    let mut out: Vec<(Vec<u8>, String)> = walk(root)
        .into_iter()
        .map(|entry| {
            let meta = std::fs::symlink_metadata(entry.path()).expect("stat");
            let rel = entry
                .path()
                .strip_prefix(root)
                .expect("inside")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let what = if meta.file_type().is_symlink() {
                format!(
                    "link {:?}",
                    std::fs::read_link(entry.path()).expect("readlink")
                )
            } else if meta.is_dir() {
                "dir".to_string()
            } else {
                let bytes = std::fs::read(entry.path()).expect("read");
                format!(
                    "file x={} {}",
                    meta.permissions().mode() & 0o100 != 0,
                    String::from_utf8_lossy(&bytes)
                )
            };
            (rel, what)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn restore_gives_back_the_snapshot_byte_for_byte() {
    let dir = user_repo();
    let root = dir.path();
    write(root, "debug.log", "ignored, and must survive\n");
    let store = GitStore::open_isolated(root).expect("open");
    let run = run_id("3");
    let c1 = commit_snapshot(&store, &run, None);
    let before = picture(root);
    let index_before = std::fs::read(root.join(".git/index")).expect("read index");

    change_everything(root);
    write(root, "debug.log", "ignored, changed, and must survive\n");
    std::fs::remove_dir_all(root.join("src/deep")).expect("rm a whole directory");
    std::fs::remove_file(root.join("link")).expect("rm");
    std::os::unix::fs::symlink("elsewhere", root.join("link")).expect("retarget the link");
    set_executable(root, "script.sh", false);
    let c2 = commit_snapshot(&store, &run, Some(&c1));
    let ignored = [
        "debug.log",
        "src/gen/out.rs",
        "src/scratch.tmp",
        "secret.txt",
        "copy.bak",
        "build/new.txt",
    ];
    let ignored_before: Vec<_> = ignored
        .iter()
        .map(|p| std::fs::read(root.join(p)).expect("read"))
        .collect();

    let tree = store.workspace_tree(&c1).expect("tree").expect("some");
    let saved = store.restore_workspace(&run, &tree, 5).expect("restore");
    assert_eq!(saved, None, "every change was in a snapshot of the run");
    assert_eq!(store.snapshot_workspace().expect("snapshot"), tree);
    let ignored_after: Vec<_> = ignored
        .iter()
        .map(|p| std::fs::read(root.join(p)).expect("ignored files are untouched"))
        .collect();
    assert_eq!(ignored_after, ignored_before);
    // Byte for byte, apart from what is ignored (and the empty directory, never in a snapshot).
    let after: Vec<_> = picture(root)
        .into_iter()
        .filter(|(path, _)| {
            let path = String::from_utf8_lossy(path);
            !ignored.iter().any(|i| path == *i)
                && !["src/gen", "build", "emptydir", "emptydir/inner"].contains(&path.as_ref())
        })
        .collect();
    let expected: Vec<_> = before
        .into_iter()
        .filter(|(path, _)| path.as_slice() != b"build" && path.as_slice() != b"debug.log")
        .collect();
    assert_eq!(after, expected);
    assert!(
        !root.join("newdir").exists(),
        "emptied directories are removed"
    );
    assert!(!root.join("becomes-dir").is_dir());
    assert!(
        root.join("emptydir/inner").is_dir(),
        "directories wfe never knew stay"
    );
    assert_eq!(
        std::fs::read(root.join(".git/index")).expect("read index"),
        index_before
    );

    // And forward again, to the later snapshot.
    let later = store.workspace_tree(&c2).expect("tree").expect("some");
    assert_eq!(
        store.restore_workspace(&run, &later, 6).expect("restore"),
        None
    );
    assert_eq!(store.snapshot_workspace().expect("snapshot"), later);
    assert_eq!(
        std::fs::read_link(root.join("link")).expect("link"),
        Path::new("elsewhere")
    );
    fsck(root);
}

#[test]
fn unsnapshotted_changes_are_saved_and_come_back() {
    let dir = user_repo();
    let root = dir.path();
    let store = GitStore::open_isolated(root).expect("open");
    let run = run_id("4");
    let c1 = commit_snapshot(&store, &run, None);
    let tree = store.workspace_tree(&c1).expect("tree").expect("some");
    assert_eq!(store.restore_code_from_trash(&run, 1).expect("undo"), None);

    write(root, "src/lib.rs", "my uncommitted work\n");
    write(root, "mine.txt", "untracked work\n");
    let dirty = store.snapshot_workspace().expect("snapshot");
    let saved = store.restore_workspace(&run, &tree, 7).expect("restore");
    let name = format!("refs/wfe/trash/{run}/code-1");
    assert_eq!(saved.as_deref(), Some(name.as_str()));
    assert_eq!(store.snapshot_workspace().expect("snapshot"), tree);
    assert!(!root.join("mine.txt").exists());
    assert_eq!(
        git(root, &["rev-parse", &format!("{name}^{{tree}}")]).trim(),
        dirty
    );
    assert_eq!(
        git(root, &["rev-parse", &format!("{name}^")]),
        git(root, &["rev-parse", "HEAD"])
    );
    assert_eq!(
        git(root, &["show", &format!("{name}:mine.txt")]),
        "untracked work\n"
    );
    let log = git(root, &["log", "-1", "--format=%s%n%b", &name]);
    assert!(log.contains(&format!("Wfe-Run: {run}")), "{log}");

    // Restoring again changes nothing and saves nothing.
    assert_eq!(
        store.restore_workspace(&run, &tree, 8).expect("restore"),
        None
    );

    let undone = store
        .restore_code_from_trash(&run, 9)
        .expect("undo")
        .expect("something to undo");
    assert_eq!(undone.restored, name);
    assert_eq!(undone.saved, None, "the snapshot was the run's");
    assert_eq!(store.snapshot_workspace().expect("snapshot"), dirty);
    assert_eq!(
        std::fs::read_to_string(root.join("src/lib.rs")).expect("read"),
        "my uncommitted work\n"
    );
    assert_eq!(
        git(
            root,
            &["for-each-ref", "--format=%(refname)", "refs/wfe/trash/"]
        ),
        "",
        "the restored ref is consumed"
    );

    // Edits made after an undo are saved by the next undo: nothing is lost.
    store.restore_workspace(&run, &tree, 10).expect("restore");
    write(root, "later.txt", "made after the rollback\n");
    let undone = store
        .restore_code_from_trash(&run, 11)
        .expect("undo")
        .expect("something to undo");
    assert_eq!(undone.restored, name);
    assert_eq!(undone.saved, Some(format!("refs/wfe/trash/{run}/code-2")));
    assert!(!root.join("later.txt").exists());
    let swapped = store
        .restore_code_from_trash(&run, 12)
        .expect("undo")
        .expect("something to undo");
    assert_eq!(swapped.restored, format!("refs/wfe/trash/{run}/code-2"));
    assert_eq!(
        std::fs::read_to_string(root.join("later.txt")).expect("read"),
        "made after the rollback\n"
    );
    fsck(root);
}

#[test]
fn restore_never_overwrites_what_no_snapshot_holds() {
    let dir = user_repo();
    let root = dir.path();
    write(root, "notes.txt", "in the snapshot\n");
    let store = GitStore::open_isolated(root).expect("open");
    let run = run_id("5");
    let c1 = commit_snapshot(&store, &run, None);
    let tree = store.workspace_tree(&c1).expect("tree").expect("some");

    // Now ignored, with other contents: a restore would destroy it.
    write(root, ".gitignore", "*.log\nbuild/\nnotes.txt\n");
    write(
        root,
        "notes.txt",
        "precious, ignored, not in any snapshot\n",
    );
    write(root, "README", "changed too\n");
    match store.restore_workspace(&run, &tree, 5) {
        Err(StoreError::RestoreConflict { path, .. }) => assert_eq!(path, "notes.txt"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(root.join("README")).expect("read"),
        "changed too\n",
        "nothing was changed"
    );
    assert_eq!(
        git(root, &["for-each-ref", "refs/wfe/trash/"]),
        "",
        "nothing was saved either"
    );
    // Once it is out of the way, the restore goes through.
    std::fs::remove_file(root.join("notes.txt")).expect("rm");
    let saved = store.restore_workspace(&run, &tree, 6).expect("restore");
    assert!(
        saved.is_some(),
        "the edits to README and .gitignore were saved"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("notes.txt")).expect("read"),
        "in the snapshot\n"
    );
}

#[test]
fn submodules_and_nested_repositories_are_gitlinks() {
    let dir = user_repo();
    let root = dir.path();
    for name in ["sub", "nested"] {
        let path = root.join(name);
        std::fs::create_dir(&path).expect("mkdir");
        git(&path, &["init", "-q", "-b", "main"]);
        write(&path, "inside.txt", name);
        git(&path, &["add", "-A"]);
        git(&path, &["commit", "-q", "-m", name]);
    }
    git(root, &["add", "sub"]);
    git(root, &["commit", "-q", "-m", "a submodule"]);
    // The submodule moves on; its gitlink in a snapshot stays the index's.
    write(&root.join("sub"), "inside.txt", "changed");
    git(&root.join("sub"), &["commit", "-q", "-am", "moved"]);
    git(&root.join("sub"), &["checkout", "-q", "HEAD~1"]);
    let store = GitStore::open_isolated(root).expect("open");
    let stats = snapshot(&store);
    assert_eq!(stats.tree, git_add_all_tree(root));
    let listing = git(root, &["ls-tree", &stats.tree]);
    assert!(listing.contains("160000 commit"), "{listing}");
    assert!(listing.contains("\tnested\n"), "{listing}");

    // A restore leaves both alone.
    let run = run_id("6");
    let c1 = commit_snapshot(&store, &run, None);
    std::fs::remove_file(root.join("README")).expect("rm");
    let tree = store.workspace_tree(&c1).expect("tree").expect("some");
    store.restore_workspace(&run, &tree, 1).expect("restore");
    assert!(root.join("README").exists());
    assert!(root.join("sub/inside.txt").exists());
    assert!(root.join("nested/.git").exists());
    fsck(root);
}

#[test]
fn names_git_refuses_are_skipped_with_a_reason() {
    let dir = user_repo();
    let root = dir.path();
    write(root, "git~1", "refused with core.protectNTFS\n");
    write(root, "fine.txt", "fine\n");
    let store = GitStore::open_isolated(root).expect("open");
    let stats = snapshot(&store);
    assert_eq!(stats.skipped.len(), 1, "{:?}", stats.skipped);
    assert_eq!(stats.skipped[0].path, "git~1");
    let listing = git(root, &["ls-tree", &stats.tree]);
    assert!(listing.contains("\tfine.txt\n") && !listing.contains("git~1"));
    fsck(root);
}

#[test]
fn a_linked_worktree_snapshots_its_own_files() {
    let dir = user_repo();
    let root = dir.path();
    let linked = root.join(".git").join("linked-tree");
    git(
        root,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "side",
            linked.to_str().expect("utf-8"),
        ],
    );
    write(&linked, "only-here.txt", "side\n");
    write(root, "only-main.txt", "main\n");
    let side = GitStore::discover(&linked).expect("discover");
    let main = GitStore::open_isolated(root).expect("open");
    let side_tree = side.snapshot_workspace().expect("snapshot");
    let main_tree = main.snapshot_workspace().expect("snapshot");
    assert_eq!(side_tree, git_add_all_tree(&linked));
    assert_eq!(main_tree, git_add_all_tree(root));
    assert!(root.join(".git/wfe/snapshot-cache").exists());
    assert!(root.join(".git/wfe/snapshot-cache-linked-tree").exists());
}

#[test]
fn a_bare_repository_has_no_work_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    git(dir.path(), &["init", "-q", "--bare"]);
    let store = GitStore::open_isolated(dir.path()).expect("open bare");
    assert!(matches!(
        store.snapshot_workspace(),
        Err(StoreError::NoWorkTree { .. })
    ));
    let run = run_id("7");
    assert!(matches!(
        store.commit(
            &run,
            None,
            &[Change::Snapshot {
                path: WORKSPACE.into(),
                masker: Default::default(),
            }],
            &message(&run, "x"),
            1
        ),
        Err(StoreError::NoWorkTree { .. })
    ));
    assert!(matches!(
        store.restore_workspace(&run, "4b825dc642cb6eb9a060e54bf8d69288fbee4904", 1),
        Err(StoreError::NoWorkTree { .. })
    ));
    assert_eq!(store.tip(&run).expect("tip"), None);
}

#[test]
fn a_restore_target_must_be_a_tree() {
    let dir = user_repo();
    let store = GitStore::open_isolated(dir.path()).expect("open");
    let run = run_id("8");
    let head = git(dir.path(), &["rev-parse", "HEAD"]);
    for bad in [
        "nonsense",
        head.trim(),
        "0123456789012345678901234567890123456789",
    ] {
        assert!(
            matches!(
                store.restore_workspace(&run, bad, 1),
                Err(StoreError::Malformed { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn the_memory_store_copies_its_work_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.txt", "a");
    write(dir.path(), "d/b.txt", "b");
    write(dir.path(), ".git/config", "not copied");
    let store = MemoryStore::with_work_tree(dir.path());
    let run = run_id("9");
    let snap = [Change::Snapshot {
        path: WORKSPACE.into(),
        masker: Default::default(),
    }];
    let c1 = store
        .commit(&run, None, &snap, &message(&run, "one"), 1)
        .expect("commit");
    assert_eq!(
        store.read(&c1, "workspace/d/b.txt").expect("read"),
        Some(b"b".to_vec())
    );
    std::fs::remove_file(dir.path().join("a.txt")).expect("rm");
    let c2 = store
        .commit(&run, Some(&c1), &snap, &message(&run, "two"), 2)
        .expect("commit");
    assert_eq!(store.read(&c2, "workspace/a.txt").expect("read"), None);
    assert_eq!(store.list_dir(&c2, WORKSPACE).expect("list").len(), 1);
    assert_eq!(
        store.read(&c2, "workspace/.git/config").expect("read"),
        None
    );

    // Without a work tree it records nothing.
    let plain = MemoryStore::new();
    let c = plain
        .commit(&run, None, &snap, &message(&run, "one"), 1)
        .expect("commit");
    assert!(plain.list_dir(&c, "").expect("list").is_empty());
}

#[test]
fn unusual_index_states_stage_as_git_does() {
    let dir = user_repo();
    let root = dir.path();
    // A merge conflict in src/lib.rs.
    git(root, &["checkout", "-q", "-b", "other"]);
    write(root, "src/lib.rs", "pub fn other() {}\n");
    git(root, &["commit", "-q", "-am", "other"]);
    git(root, &["checkout", "-q", "main"]);
    write(root, "src/lib.rs", "pub fn main_side() {}\n");
    git(root, &["commit", "-q", "-am", "main"]);
    let merge = git_command(root, &["merge", "-q", "other"])
        .output()
        .expect("run git");
    assert!(!merge.status.success(), "the merge conflicts");
    // Intent to add, and a file git keeps out of the checkout.
    write(root, "planned.txt", "added with -N\n");
    git(root, &["add", "-N", "planned.txt"]);
    git(root, &["update-index", "--skip-worktree", "a0"]);
    std::fs::remove_file(root.join("a0")).expect("rm");
    // A fifo is never added.
    let fifo = Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .expect("run mkfifo");
    assert!(fifo.success());

    let store = GitStore::open_isolated(root).expect("open");
    let stats = snapshot(&store);
    assert_eq!(stats.tree, git_add_all_tree(root));
    assert_eq!(stats.skipped.len(), 1, "{:?}", stats.skipped);
    assert_eq!(stats.skipped[0].path, "pipe");
    let listing = git(root, &["ls-tree", "-r", &stats.tree]);
    assert!(listing.contains("\ta0\n"), "kept from the index: {listing}");

    // Without core.fileMode the index's modes stand, and new files are not executable.
    git(root, &["config", "core.fileMode", "false"]);
    set_executable(root, "README", true);
    set_executable(root, "script.sh", false);
    write(root, "new-tool", "#!/bin/sh\n");
    set_executable(root, "new-tool", true);
    let store = GitStore::open_isolated(root).expect("reopen with the new config");
    assert_eq!(snapshot(&store).tree, git_add_all_tree(root));
    fsck(root);
}

#[test]
fn a_snapshot_masks_secrets_in_the_files_it_reads_and_trusts_no_cached_id() {
    let dir = user_repo();
    let root = dir.path();
    let store = GitStore::open_isolated(root).expect("open");
    let run = run_id("1");
    let secret = "deploy-token-0123456789";
    write(root, "config.env", &format!("TOKEN={secret}\n"));
    // A snapshot without secrets first: the stat cache now holds the
    // unmasked file's id.
    let plain = snapshot(&store);
    assert!(plain.hashed > 0);
    let commit = |parent: Option<&CheckpointId>| {
        store
            .commit(
                &run,
                parent,
                &[Change::Snapshot {
                    path: WORKSPACE.to_string(),
                    masker: crate::secret::Masker::new([secret]),
                }],
                &message(&run, "snapshot"),
                1_700_000_000,
            )
            .expect("commit a snapshot")
    };
    let c1 = commit(None);
    assert_eq!(
        git(root, &["show", &format!("{}:workspace/config.env", c1.0)]),
        "TOKEN=***\n"
    );
    // Still masked the next time (nothing cached the masked id as the file's).
    let c2 = commit(Some(&c1));
    assert_eq!(
        git(root, &["show", &format!("{}:workspace/config.env", c2.0)]),
        "TOKEN=***\n"
    );
    // Other files keep their bytes.
    assert_eq!(
        git(root, &["show", &format!("{}:workspace/src/lib.rs", c2.0)]),
        std::fs::read_to_string(root.join("src/lib.rs")).unwrap()
    );
}
