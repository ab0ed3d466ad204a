//! Signed webhook deliveries already applied. Maps: `sourcedelivery_answer`,
//! `sourcesigned_delivery`.
//!
//! A delivery is recorded with the answer it was given, in the same synced write that
//! queues the messages it sends (feed entries, root edits): either both are on disk or
//! neither. Both maps are kept for [`super::inbound::SEEN_RETENTION`], like transaction
//! ids: each value starts with its write time, and the same compaction filter drops the
//! older ones.

use rocksdb::WriteBatch;
use serde_json::Value;

use super::{Store, codec::KeyBuf, maps};
use crate::{
    domain::now_ms,
    error::{Error, Result},
};

/// A delivery already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenDelivery {
    /// Its delivery id.
    pub delivery: String,
    /// The answer it was given.
    pub answer: Value,
}

fn stamped(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&now_ms().to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn payload(v: &[u8]) -> Result<&[u8]> {
    v.get(8..).ok_or_else(|| Error::Store("a webhook delivery record without its time".into()))
}

impl Store {
    /// The delivery `delivery` of `source`, if it was applied (and is still remembered).
    pub fn webhook_delivery(&self, source: &str, delivery: &str) -> Result<Option<SeenDelivery>> {
        let db = self.db()?;
        let key = KeyBuf::new().str(source).str(delivery).build();
        let Some(v) = db.get_pinned_cf(super::cf(&db, maps::SOURCEDELIVERY_ANSWER)?, key)? else {
            return Ok(None);
        };
        let answer = super::decode(payload(&v)?)?;
        Ok(Some(SeenDelivery { delivery: delivery.to_owned(), answer }))
    }

    /// The delivery of `source` whose signed message had the SHA-256 `signed`, if one was
    /// applied: the same signed request under another delivery id is a replay.
    pub fn webhook_delivery_signed(
        &self,
        source: &str,
        signed: &[u8; 32],
    ) -> Result<Option<SeenDelivery>> {
        let db = self.db()?;
        let mut key = KeyBuf::new().str(source).prefix();
        key.extend_from_slice(signed);
        let Some(v) = db.get_pinned_cf(super::cf(&db, maps::SOURCESIGNED_DELIVERY)?, key)? else {
            return Ok(None);
        };
        let delivery = std::str::from_utf8(payload(&v)?)
            .map_err(|_| Error::Store("a webhook delivery id is not UTF-8".into()))?
            .to_owned();
        self.webhook_delivery(source, &delivery)
    }

    /// Records the delivery `delivery` of `source` (whose signed message had the SHA-256
    /// `signed`) with its `answer`, and queues `outbound` (encoded actions), in one synced
    /// write.
    pub fn record_webhook_delivery(
        &self,
        source: &str,
        delivery: &str,
        signed: &[u8; 32],
        answer: &Value,
        outbound: &[Vec<u8>],
    ) -> Result<()> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        let key = KeyBuf::new().str(source).str(delivery).build();
        batch.put_cf(
            super::cf(&db, maps::SOURCEDELIVERY_ANSWER)?,
            key,
            stamped(&super::encode(answer)?),
        );
        let mut key = KeyBuf::new().str(source).prefix();
        key.extend_from_slice(signed);
        batch.put_cf(
            super::cf(&db, maps::SOURCESIGNED_DELIVERY)?,
            key,
            stamped(delivery.as_bytes()),
        );
        drop(db);
        self.write_with_outbox_synced(batch, outbound)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_recorded_delivery_is_found_by_id_and_by_signed_message_and_queues_its_actions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.webhook_delivery("ci", "d1").expect("read"), None);
        let answer = json!({ "number": 3 });
        store
            .record_webhook_delivery("ci", "d1", &[7; 32], &answer, &[b"{}".to_vec()])
            .expect("record");
        let seen = SeenDelivery { delivery: "d1".into(), answer };
        assert_eq!(store.webhook_delivery("ci", "d1").expect("read"), Some(seen.clone()));
        assert_eq!(store.webhook_delivery_signed("ci", &[7; 32]).expect("read"), Some(seen));
        // Per source: another source's ids and messages are its own.
        assert_eq!(store.webhook_delivery("cd", "d1").expect("read"), None);
        assert_eq!(store.webhook_delivery_signed("cd", &[7; 32]).expect("read"), None);
        assert_eq!(store.outbox_from(0, 10).expect("outbox").len(), 1);
    }

    #[test]
    fn remembered_deliveries_expire_at_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.record_webhook_delivery("ci", "new", &[1; 32], &json!({}), &[]).expect("record");
        let long_ago = now_ms()
            - u64::try_from(super::super::inbound::SEEN_RETENTION.as_millis()).expect("ms")
            - 1000;
        let db = store.db().expect("db");
        let answers = super::super::cf(&db, maps::SOURCEDELIVERY_ANSWER).expect("cf");
        let signed = super::super::cf(&db, maps::SOURCESIGNED_DELIVERY).expect("cf");
        let mut old = long_ago.to_be_bytes().to_vec();
        old.extend_from_slice(b"{}");
        db.put_cf(answers, KeyBuf::new().str("ci").str("old").build(), &old).expect("put");
        let mut key = KeyBuf::new().str("ci").prefix();
        key.extend_from_slice(&[2; 32]);
        let mut value = long_ago.to_be_bytes().to_vec();
        value.extend_from_slice(b"old");
        db.put_cf(signed, key, value).expect("put");
        assert!(store.webhook_delivery("ci", "old").expect("read").is_some());
        for cf in [answers, signed] {
            db.flush_cf(cf).expect("flush");
            db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        assert_eq!(store.webhook_delivery("ci", "old").expect("read"), None);
        assert_eq!(store.webhook_delivery_signed("ci", &[2; 32]).expect("read"), None);
        assert!(store.webhook_delivery("ci", "new").expect("read").is_some());
        assert!(store.webhook_delivery_signed("ci", &[1; 32]).expect("read").is_some());
    }
}
