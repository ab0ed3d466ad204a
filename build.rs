//! The commit Boardroom is built from, for `boardroom --version`: `BOARDROOM_COMMIT` when
//! it is set (a build without the repository, such as an image), else git's, else
//! `unknown`.

use std::{path::Path, process::Command};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(rocksdb_crc32c_wrapped)");
    link_rocksdb_dependencies();
    println!("cargo:rerun-if-env-changed=BOARDROOM_COMMIT");
    let commit = std::env::var("BOARDROOM_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BOARDROOM_COMMIT={commit}");
    // Built again when HEAD moves: a new commit, or another branch checked out. Only files
    // that exist are named (a missing one would run this script at every build).
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &head]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// With `ROCKSDB_STATIC` set (see `.cargo/config.toml`), RocksDB is linked from Debian's
/// static `librocksdb.a`, which leaves the compression libraries it calls to the final
/// link: named here, for every binary that links Boardroom (the fuzz targets too).
fn link_rocksdb_dependencies() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if std::env::var_os("ROCKSDB_STATIC").is_none() {
        return;
    }
    for lib in ["snappy", "lz4", "zstd", "bz2", "z"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    wrap_rocksdb_crc32c();
}

/// Debian's `librocksdb.a` is built portable: on x86-64 its CRC-32C, which checksums every
/// record of the write-ahead log, uses lookup tables rather than SSE 4.2's instruction.
/// RocksDB's calls to `rocksdb::crc32c::Extend` from its other files go to
/// `src/store/crc32c.rs` instead. Only on x86-64 (RocksDB's build for arm64 is compiled with
/// the processor's CRC instructions), and only for this package's binaries,
/// tests and benches (a link argument does not reach other packages: the fuzz targets keep
/// RocksDB's own).
fn wrap_rocksdb_crc32c() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64")
    {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,--wrap=_ZN7rocksdb6crc32c6ExtendEjPKcm");
    println!("cargo:rustc-cfg=rocksdb_crc32c_wrapped");
}
