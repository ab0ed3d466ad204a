//! CRC-32C for RocksDB's checksums, in the processor's own instruction.
//!
//! Every record RocksDB appends to its write-ahead log carries a CRC-32C of the record, and
//! so does every block of its table files. Debian's `librocksdb.a` is built portable, so
//! its `rocksdb::crc32c::Extend` computes that CRC with lookup tables (`Slow_CRC32`) even
//! on processors that have SSE 4.2's `crc32` instruction: 4.3 to 4.5 % of the pipeline's
//! CPU (docs/PERFORMANCE.md). Linked statically on x86-64 Linux, every call RocksDB makes to
//! `Extend` from another of its files is sent here instead (`build.rs` passes the linker
//! `--wrap=_ZN7rocksdb6crc32c6ExtendEjPKcm`), which computes the same CRC, the same way
//! chained (`extend(extend(0, a), b) == extend(0, a ++ b)`), with the instruction where the
//! processor has it and a table where it does not.

/// The Castagnoli polynomial, bit-reversed.
const POLY: u32 = 0x82F6_3B78;

/// The byte-at-a-time table, for processors without the instruction.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC-32C of `data` following `crc`, the CRC of what came before it (0 for none), as
/// RocksDB's `crc32c::Extend` computes it.
pub(crate) fn extend(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("sse4.2") {
        return sse42::extend(crc, data);
    }
    by_table(crc, data)
}

fn by_table(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod sse42 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};

    /// [`super::extend`] with SSE 4.2's `crc32`, eight bytes an instruction.
    pub(super) fn extend(crc: u32, data: &[u8]) -> u32 {
        // SAFETY: called only after `is_x86_feature_detected!("sse4.2")`.
        unsafe { extend_sse42(crc, data) }
    }

    #[target_feature(enable = "sse4.2")]
    fn extend_sse42(crc: u32, data: &[u8]) -> u32 {
        let (words, rest) = data.as_chunks::<8>();
        let mut c = u64::from(!crc);
        for w in words {
            c = _mm_crc32_u64(c, u64::from_le_bytes(*w));
        }
        // The instruction's 64-bit form leaves the CRC in the low 32 bits.
        let mut c = c as u32;
        for &b in rest {
            c = _mm_crc32_u8(c, b);
        }
        !c
    }
}

/// RocksDB's `rocksdb::crc32c::Extend(uint32_t, const char*, size_t)` as the linker's
/// `--wrap` names it: every call to it from RocksDB's other files comes here.
///
/// # Safety
/// `data` points to `n` readable bytes (or `n` is 0), as RocksDB's callers guarantee.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn __wrap__ZN7rocksdb6crc32c6ExtendEjPKcm(
    crc: u32,
    data: *const u8,
    n: usize,
) -> u32 {
    #[cfg(test)]
    tests::CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n == 0 || data.is_null() {
        // Nothing follows: the CRC so far.
        return crc;
    }
    // SAFETY: RocksDB passes a buffer of `n` bytes that outlives the call.
    extend(crc, unsafe { std::slice::from_raw_parts(data, n) })
}

/// Keeps the function above in every binary that opens a database: the linker takes an
/// object from Boardroom's library only for a symbol something already asked for, and
/// RocksDB's calls are read after it.
pub(super) fn keep_linked() {
    std::hint::black_box(
        __wrap__ZN7rocksdb6crc32c6ExtendEjPKcm
            as unsafe extern "C" fn(u32, *const u8, usize) -> u32,
    );
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// How many times RocksDB called [`__wrap__ZN7rocksdb6crc32c6ExtendEjPKcm`].
    pub(super) static CALLS: AtomicU64 = AtomicU64::new(0);

    #[cfg(rocksdb_crc32c_wrapped)]
    #[allow(unsafe_code)]
    unsafe extern "C" {
        /// RocksDB's own `crc32c::Extend`, as `--wrap` leaves it reachable.
        #[link_name = "__real__ZN7rocksdb6crc32c6ExtendEjPKcm"]
        fn rocksdb_extend(crc: u32, data: *const u8, n: usize) -> u32;
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn the_crc_is_crc_32c() {
        // The check value of CRC-32C, and RFC 3720's (iSCSI) test vectors.
        for f in [extend, by_table] {
            assert_eq!(f(0, b"123456789"), 0xE306_9283);
            assert_eq!(f(0, &[0u8; 32]), 0x8A91_36AA);
            assert_eq!(f(0, &[0xffu8; 32]), 0x62A8_AB43);
            let up: Vec<u8> = (0..32).collect();
            assert_eq!(f(0, &up), 0x46DD_794E);
            assert_eq!(f(0, b""), 0);
        }
    }

    #[test]
    fn the_instruction_and_the_table_agree_at_every_length_and_chained() {
        let data = bytes(1000, 7);
        for n in (0..64).chain([127, 128, 129, 999, 1000]) {
            for start in [0, 1, 3, 7] {
                let d = &data[start..start + n.min(1000 - start)];
                assert_eq!(extend(0, d), by_table(0, d), "length {n} from {start}");
                assert_eq!(extend(0xDEAD_BEEF, d), by_table(0xDEAD_BEEF, d));
                let cut = d.len() / 3;
                assert_eq!(extend(extend(0, &d[..cut]), &d[cut..]), extend(0, d));
            }
        }
    }

    #[cfg(rocksdb_crc32c_wrapped)]
    #[test]
    #[allow(unsafe_code)]
    fn rocksdb_s_own_crc_and_this_one_agree() {
        for (n, seed) in [(0, 1), (1, 2), (7, 3), (8, 4), (9, 5), (4096, 6), (40_936, 7)] {
            let data = bytes(n, seed);
            for crc in [0, 1, 0xFFFF_FFFF, 0x1234_5678] {
                // SAFETY: `data` has `n` bytes.
                let theirs = unsafe { rocksdb_extend(crc, data.as_ptr(), data.len()) };
                assert_eq!(extend(crc, &data), theirs, "{n} bytes after {crc:#x}");
            }
        }
    }

    #[cfg(rocksdb_crc32c_wrapped)]
    #[test]
    fn rocksdb_s_checksums_come_here_and_its_log_reads_back_after_a_restart() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let before = CALLS.load(Ordering::Relaxed);
        {
            let db = super::super::open_db(dir.path()).expect("database");
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            for i in 0u32..50 {
                db.put_opt(i.to_be_bytes(), bytes(4096, u64::from(i)), &wo).expect("write");
            }
        }
        assert!(
            CALLS.load(Ordering::Relaxed) >= before + 50,
            "RocksDB's log records were checksummed elsewhere"
        );
        // Closed without a flush: reopening replays the log, checking each record's CRC.
        let db = super::super::open_db(dir.path()).expect("database reopened");
        for i in 0u32..50 {
            let got = db.get(i.to_be_bytes()).expect("read");
            assert_eq!(got.as_deref(), Some(&bytes(4096, u64::from(i))[..]), "key {i}");
        }
    }
}
