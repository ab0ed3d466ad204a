//! Entry points for the fuzz targets in `fuzz/` (`cargo +nightly fuzz`): each takes
//! arbitrary bytes and runs one parser of untrusted input the way Boardroom does, so that
//! a panic or a broken round trip is a finding. Not part of the supported API.
