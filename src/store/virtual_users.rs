//! Who owns each virtual user. Maps: `userid_virtualuser`, `clientuserid_virtualuser`.
//!
//! A virtual user belongs to the API client that used it first; no other client may act
//! as it. The record also says whether the user is registered with the homeserver, so a
//! restarted Boardroom does not register it again. Claims are written synced: a claim
//! acknowledged to one client is never handed to another after a crash.

use std::sync::Mutex;

use rocksdb::{WriteBatch, WriteOptions};
use ruma::UserId;
use serde::{Deserialize, Serialize};

use super::{Store, codec::KeyBuf, decode, encode, maps};
use crate::error::{Error, Result};

/// Serializes claims: the owner check, the count against the cap and the write are one
/// step. Claims are rare (a client's first request as a new name), so one lock for every
/// store in the process costs nothing.
static CLAIMS: Mutex<()> = Mutex::new(());

/// A virtual user's owner record.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct VirtualUser {
    /// The name of the API client or webhook source that owns it (`api.clients[].name`,
    /// `webhooks.sources[].name`).
    pub client: String,
    /// Registered with the homeserver.
    #[serde(default)]
    pub registered: bool,
}

/// The outcome of [`Store::claim_virtual_user`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The client owns it (now or already).
    Owned(VirtualUser),
    /// Another client owns it; nothing was written.
    OwnedByAnother,
    /// The client owns `max` virtual users already; nothing was written.
    CapReached {
        /// The cap.
        max: u64,
    },
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

impl Store {
    /// The owner record of a virtual user, if a client has claimed it.
    pub fn virtual_user(&self, user: &UserId) -> Result<Option<VirtualUser>> {
        let db = self.db()?;
        db.get_pinned_cf(super::cf(&db, maps::USERID_VIRTUALUSER)?, user.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// How many virtual users `client` owns, counting at most `up_to`.
    pub fn virtual_users_of(&self, client: &str, up_to: u64) -> Result<u64> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(client).prefix();
        let cf = super::cf(&db, maps::CLIENTUSERID_VIRTUALUSER)?;
        let mut n = 0;
        for item in super::scan(&db, cf, &prefix) {
            item?;
            n += 1;
            if n >= up_to {
                break;
            }
        }
        Ok(n)
    }

    /// Gives `user` to `client` unless another client owns it or `client` owns `max`
    /// virtual users already. A user the client owns already is answered as it is.
    pub fn claim_virtual_user(&self, user: &UserId, client: &str, max: u64) -> Result<Claim> {
        let db = self.db()?;
        let _claims = CLAIMS.lock().map_err(|_| Error::Internal("claim lock poisoned".into()))?;
        match self.virtual_user(user)? {
            Some(v) if v.client == client => return Ok(Claim::Owned(v)),
            Some(_) => return Ok(Claim::OwnedByAnother),
            None => {}
        }
        if max == 0 || self.virtual_users_of(client, max)? >= max {
            return Ok(Claim::CapReached { max });
        }
        let record = VirtualUser { client: client.to_owned(), registered: false };
        let mut batch = WriteBatch::default();
        batch.put_cf(super::cf(&db, maps::USERID_VIRTUALUSER)?, user.as_bytes(), encode(&record)?);
        batch.put_cf(
            super::cf(&db, maps::CLIENTUSERID_VIRTUALUSER)?,
            KeyBuf::new().str(client).str(user.as_str()).build(),
            [],
        );
        self.checked(db.write_opt(batch, &synced()))?;
        Ok(Claim::Owned(record))
    }

    /// Records that `user`, owned by `client`, is registered with the homeserver.
    pub fn set_virtual_user_registered(&self, user: &UserId, client: &str) -> Result<()> {
        let db = self.db()?;
        let _claims = CLAIMS.lock().map_err(|_| Error::Internal("claim lock poisoned".into()))?;
        match self.virtual_user(user)? {
            Some(v) if v.client == client => {
                let record = VirtualUser { registered: true, ..v };
                self.checked(db.put_cf_opt(
                    super::cf(&db, maps::USERID_VIRTUALUSER)?,
                    user.as_bytes(),
                    encode(&record)?,
                    &synced(),
                ))?;
                Ok(())
            }
            _ => Err(Error::Internal(format!("{user} is not a virtual user of {client}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_user_belongs_to_the_first_client_and_claims_stop_at_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let ci = ruma::user_id!("@boardroom_ci:x");
        let owned = |registered| Claim::Owned(VirtualUser { client: "b".into(), registered });
        assert_eq!(store.claim_virtual_user(ci, "b", 2).expect("claim"), owned(false));
        assert_eq!(store.claim_virtual_user(ci, "a", 2).expect("claim"), Claim::OwnedByAnother);
        assert_eq!(store.claim_virtual_user(ci, "b", 2).expect("claim"), owned(false));
        store.set_virtual_user_registered(ci, "b").expect("registered");
        assert!(store.set_virtual_user_registered(ci, "a").is_err(), "not a's");
        assert_eq!(store.claim_virtual_user(ci, "b", 2).expect("claim"), owned(true));

        let two = ruma::user_id!("@boardroom_two:x");
        let three = ruma::user_id!("@boardroom_three:x");
        assert!(matches!(store.claim_virtual_user(two, "b", 2).expect("claim"), Claim::Owned(_)));
        assert_eq!(
            store.claim_virtual_user(three, "b", 2).expect("claim"),
            Claim::CapReached { max: 2 }
        );
        assert_eq!(store.virtual_user(three).expect("read"), None, "nothing written");
        assert_eq!(store.virtual_users_of("b", 100).expect("count"), 2);
        // Another client's cap is its own; a cap of 0 claims nothing.
        assert!(matches!(store.claim_virtual_user(three, "a", 2).expect("claim"), Claim::Owned(_)));
        assert_eq!(
            store.claim_virtual_user(ruma::user_id!("@boardroom_z:x"), "c", 0).expect("claim"),
            Claim::CapReached { max: 0 }
        );

        // Durable: a reopened store knows the owners.
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.virtual_user(ci).expect("read"),
            Some(VirtualUser { client: "b".into(), registered: true })
        );
        assert_eq!(store.claim_virtual_user(ci, "a", 2).expect("claim"), Claim::OwnedByAnother);
    }
}
