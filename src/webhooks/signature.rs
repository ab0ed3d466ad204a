//! A delivery's credentials: `X-Boardroom-Timestamp` (ms since the epoch) within
//! [`MAX_SKEW`] of Boardroom's clock, and `X-Boardroom-Signature`, the base64 ed25519
//! signature of `timestamp + "." + body` by the source's key (checked with
//! `verify_strict`, which also refuses weak keys and non-canonical signatures).

use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// The header with the delivery's time, in ms since the epoch.
pub const TIMESTAMP_HEADER: &str = "x-boardroom-timestamp";
/// The header with the base64 ed25519 signature.
pub const SIGNATURE_HEADER: &str = "x-boardroom-signature";

/// How far a delivery's timestamp may be from Boardroom's clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// A delivery whose signature holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// Its timestamp (ms).
    pub timestamp_ms: u64,
    /// SHA-256 of the signed message (`timestamp + "." + body`): the same signed request
    /// sent again has the same digest, whatever its delivery id.
    pub digest: [u8; 32],
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Error> {
    headers
        .get(name)
        .ok_or_else(|| Error::Unauthorized(format!("the header {name} is missing")))?
        .to_str()
        .map_err(|_| Error::Unauthorized(format!("the header {name} is not ASCII")))
}

/// Standard base64, with or without padding.
fn base64() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// Checks the timestamp and the signature of a delivery with `body` against `key` at
/// `now_ms`. Every refusal is 401 `M_UNAUTHORIZED`, saying which check failed.
pub fn verify(
    key: &VerifyingKey,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: u64,
) -> Result<Signed, Error> {
    let timestamp = header(headers, TIMESTAMP_HEADER)?;
    let signature = header(headers, SIGNATURE_HEADER)?;
    let timestamp_ms: u64 = timestamp
        .parse()
        .ok()
        .filter(|_| timestamp.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            Error::Unauthorized(format!(
                "{TIMESTAMP_HEADER} is `{}`, not a time in milliseconds since 1970",
                timestamp.chars().take(32).collect::<String>()
            ))
        })?;
    let off = now_ms.abs_diff(timestamp_ms);
    if u128::from(off) > MAX_SKEW.as_millis() {
        return Err(Error::Unauthorized(format!(
            "{TIMESTAMP_HEADER} is {} s off Boardroom's clock; a delivery more than {} s off is \
             refused (sign each delivery when it is sent, and keep the sender's clock right)",
            off / 1000,
            MAX_SKEW.as_secs()
        )));
    }
    let bytes = base64()
        .decode(signature.trim())
        .map_err(|_| Error::Unauthorized(format!("{SIGNATURE_HEADER} is not base64")))?;
    let bytes: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
        Error::Unauthorized(format!(
            "{SIGNATURE_HEADER} has {} bytes; an ed25519 signature has 64",
            bytes.len()
        ))
    })?;
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    key.verify_strict(&message, &Signature::from_bytes(&bytes)).map_err(|_| {
        Error::Unauthorized(format!(
            "{SIGNATURE_HEADER} does not verify with the source's public key over \
             `{TIMESTAMP_HEADER} + \".\" + body`"
        ))
    })?;
    Ok(Signed { timestamp_ms, digest: Sha256::digest(&message).into() })
}

/// A new key pair: (the private key's 32-byte seed, the public key), both in base64.
pub fn keygen() -> Result<(String, String), Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let engine = base64::engine::general_purpose::STANDARD;
    Ok((engine.encode(seed), engine.encode(key.verifying_key().to_bytes())))
}

/// The private key (its 32-byte seed, in base64) as a PKCS#8 PEM file, which `openssl
/// pkeyutl -sign -rawin` reads.
pub fn private_key_pem(seed_base64: &str) -> Result<String, Error> {
    let engine = base64::engine::general_purpose::STANDARD;
    let seed = base64()
        .decode(seed_base64)
        .ok()
        .filter(|s| s.len() == 32)
        .ok_or_else(|| Error::InvalidParam("a private key is 32 bytes in base64".into()))?;
    // PKCS#8 v1: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING {
    // OCTET STRING seed } } (RFC 8410).
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    Ok(format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", engine.encode(der)))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use http::HeaderValue;

    use super::*;

    const NOW: u64 = 1_780_000_000_000;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn signed_headers(key: &SigningKey, timestamp: &str, body: &[u8]) -> HeaderMap {
        let mut message = format!("{timestamp}.").into_bytes();
        message.extend_from_slice(body);
        let signature = key.sign(&message);
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, HeaderValue::from_str(timestamp).expect("ascii"));
        let b64 = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(&b64).expect("ascii"));
        h
    }

    fn refusal(r: Result<Signed, Error>) -> String {
        match r {
            Err(e @ Error::Unauthorized(_)) => e.to_string(),
            other => panic!("expected 401, got {other:?}"),
        }
    }

    #[test]
    fn a_good_signature_verifies_and_its_digest_covers_timestamp_and_body() {
        let body = br#"{"board":"demo"}"#;
        let h = signed_headers(&key(), &NOW.to_string(), body);
        let signed = verify(&key().verifying_key(), &h, body, NOW).expect("verifies");
        assert_eq!(signed.timestamp_ms, NOW);
        let h2 = signed_headers(&key(), &(NOW + 1).to_string(), body);
        let again = verify(&key().verifying_key(), &h2, body, NOW).expect("verifies");
        assert_ne!(signed.digest, again.digest, "another timestamp is another message");
        // Unpadded base64 is taken too.
        let mut h3 = h.clone();
        let sig = h[SIGNATURE_HEADER].to_str().expect("ascii").trim_end_matches('=').to_owned();
        h3.insert(SIGNATURE_HEADER, HeaderValue::from_str(&sig).expect("ascii"));
        assert_eq!(verify(&key().verifying_key(), &h3, body, NOW).expect("verifies"), signed);
    }

    #[test]
    fn a_changed_body_timestamp_or_key_is_refused() {
        let body = br#"{"board":"demo"}"#;
        let h = signed_headers(&key(), &NOW.to_string(), body);
        let e = refusal(verify(&key().verifying_key(), &h, br#"{"board":"dema"}"#, NOW));
        assert!(e.contains("does not verify"), "{e}");
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(refusal(verify(&other, &h, body, NOW)).contains("does not verify"));
        // The signature of one timestamp under another.
        let mut moved = h.clone();
        moved.insert(TIMESTAMP_HEADER, HeaderValue::from_str(&(NOW + 1).to_string()).expect("a"));
        assert!(refusal(verify(&key().verifying_key(), &moved, body, NOW)).contains("verify"));
    }

    #[test]
    fn missing_or_malformed_headers_are_refused_by_name() {
        let body = b"{}";
        let good = signed_headers(&key(), &NOW.to_string(), body);
        let pk = key().verifying_key();
        for name in [TIMESTAMP_HEADER, SIGNATURE_HEADER] {
            let mut h = good.clone();
            h.remove(name);
            assert!(refusal(verify(&pk, &h, body, NOW)).contains(name));
        }
        for (name, value, says) in [
            (TIMESTAMP_HEADER, "+1780000000000", "not a time"),
            (TIMESTAMP_HEADER, "soon", "not a time"),
            (SIGNATURE_HEADER, "!!!", "not base64"),
            (SIGNATURE_HEADER, "AAAA", "has 3 bytes"),
        ] {
            let mut h = good.clone();
            h.insert(name, HeaderValue::from_static(value));
            let e = refusal(verify(&pk, &h, body, NOW));
            assert!(e.contains(says), "{value}: {e}");
        }
    }

    #[test]
    fn a_timestamp_more_than_five_minutes_off_is_refused_either_way() {
        let body = b"{}";
        let pk = key().verifying_key();
        let five = 5 * 60 * 1000;
        for ts in [NOW - five, NOW + five] {
            let h = signed_headers(&key(), &ts.to_string(), body);
            verify(&pk, &h, body, NOW).expect("at the edge");
        }
        for ts in [NOW - five - 1, NOW + five + 1, 0] {
            let h = signed_headers(&key(), &ts.to_string(), body);
            let e = refusal(verify(&pk, &h, body, NOW));
            assert!(e.contains("off Boardroom's clock"), "{e}");
        }
    }

    #[test]
    fn keygen_gives_a_pair_that_signs_and_verifies_and_a_pem_openssl_reads() {
        let (private, public) = keygen().expect("keygen");
        let pk = crate::config::parse_public_key(&public).expect("public key parses");
        let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(&private)
            .expect("b64")
            .try_into()
            .expect("32 bytes");
        let sk = SigningKey::from_bytes(&seed);
        let h = signed_headers(&sk, &NOW.to_string(), b"x");
        verify(&pk, &h, b"x", NOW).expect("verifies");
        let pem = private_key_pem(&private).expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"), "{pem}");
        assert_ne!(keygen().expect("keygen").0, private, "a fresh seed each time");
    }
}
