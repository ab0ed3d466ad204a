//! How the tests find what they run: the scripts and the binary of the clone they run in.

use std::path::{Path, PathBuf};

use crate::harness::{boardroom_exe, find_project_root, project_root};

/// A clone's root: a directory holding `scripts/synapse.py`.
fn clone_in(parent: &Path, name: &str) -> PathBuf {
    let root = parent.join(name);
    std::fs::create_dir_all(root.join("scripts")).expect("scripts dir");
    std::fs::create_dir_all(root.join("tests/it")).expect("tests dir");
    std::fs::write(root.join("scripts/synapse.py"), "").expect("script");
    root
}

/// A test binary built in one clone and run from another (the target directory is shared)
/// used the first clone's `scripts/synapse.py`, found through the compile-time
/// `CARGO_MANIFEST_DIR`, and failed once that clone was gone.
#[test]
fn a_test_binary_reused_from_another_clone_runs_that_clones_synapse_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gone = dir.path().join("gone-clone");
    let here = clone_in(dir.path(), "this-clone");
    let other = clone_in(dir.path(), "other-clone");

    // Run by cargo from this clone: its manifest directory, whatever the binary was built in.
    assert_eq!(find_project_root(None, Some(here.clone()), None, &gone), here);
    // Run directly, from somewhere inside this clone: found walking up.
    assert_eq!(find_project_root(None, None, Some(here.join("tests/it")), &gone), here);
    // A stale directory (the clone that built it, since removed) is passed over.
    assert_eq!(
        find_project_root(Some(gone.clone()), Some(gone.clone()), Some(here.clone()), &gone),
        here
    );
    // `BOARDROOM_ROOT` (scripts/test.sh) comes first.
    assert_eq!(
        find_project_root(Some(other.clone()), Some(here.clone()), Some(here.clone()), &gone),
        other
    );
    // Nothing better: the clone it was built in.
    assert_eq!(find_project_root(None, None, Some(dir.path().to_path_buf()), &gone), gone);

    // This run: the clone the tests run in, with its script and its binary.
    let cwd = std::env::current_dir().expect("cwd");
    assert!(cwd.join("scripts/synapse.py").is_file(), "cargo runs tests in the package root");
    assert_eq!(project_root(), cwd, "the tests use the scripts of the clone they run in");
    assert!(boardroom_exe().is_file(), "no binary at {}", boardroom_exe().display());
}
