//! The bot's device for end-to-end encrypted rooms (`[encryption]`): its identity keys,
//! one-time keys and Olm sessions, held by `matrix-sdk-crypto`'s state machine in a SQLite
//! store beside the database.
//!
//! The homeserver feeds the machine through the appservice transactions (MSC2409 to-device
//! messages, MSC3202 device lists and one-time-key counts): the appservice stores them in
//! the same durable write as the rest of the transaction, as an inbound entry of their
//! own, and the dispatcher hands them here in order. What the machine wants sent (keys to
//! upload, queries, claims, to-device messages) goes out at once, as the bot's device
//! (identity assertion with `user_id` and `device_id`); the device itself is made by the
//! appservice (MSC4190).
//!
//! `matrix-sdk-crypto` 0.18 speaks ruma 0.16 (`matrix_sdk_common::ruma`), Boardroom ruma
//! 0.17: the two meet here only, as JSON and strings.

use std::{borrow::Cow, collections::BTreeMap};

use matrix_sdk_common::ruma::{
    self as ruma16, OneTimeKeyAlgorithm, OwnedDeviceId, OwnedUserId, UInt,
    api::{
        AppserviceUserIdentity, IncomingResponse, OutgoingRequest, OutgoingRequestAppserviceExt,
        SupportedVersions,
        auth_scheme::SendAccessToken,
        client::{
            keys::get_keys, message::send_message_event, sync::sync_events::DeviceLists,
            to_device::send_event_to_device,
        },
    },
    events::AnyToDeviceEvent,
    serde::Raw,
};
use matrix_sdk_crypto::{
    DecryptionSettings, EncryptionSyncChanges, OlmMachine, TrustRequirement,
    types::requests::{AnyOutgoingRequest, ToDeviceRequest},
};
use serde::{Deserialize, Serialize};

use crate::{
    config::{Secret, Settings},
    error::{Error, Result},
};

/// What a transaction brought for the bot's device, as stored in the inbound queue.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct DeviceUpdates {
    /// To-device messages for the bot's device (`de.sorunome.msc2409.to_device`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_device: Vec<serde_json::Value>,
    /// Users whose devices changed (`org.matrix.msc3202.device_lists.changed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Users who share no encrypted room with the bot any more (`…device_lists.left`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
    /// The device's one-time keys left on the homeserver, by algorithm
    /// (`org.matrix.msc3202.device_one_time_keys_count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_keys: Option<BTreeMap<String, u64>>,
    /// The device's fallback-key algorithms not used yet
    /// (`org.matrix.msc3202.device_unused_fallback_key_types`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unused_fallback_keys: Option<Vec<String>>,
}

impl DeviceUpdates {
    /// What `transaction` (its JSON body) brought for the device `device` of `user`.
    pub fn of(transaction: &serde_json::Value, user: &str, device: &str) -> Self {
        let to_device = transaction["de.sorunome.msc2409.to_device"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["to_user_id"] == user && e["to_device_id"] == device)
            .cloned()
            .collect();
        let lists = &transaction["org.matrix.msc3202.device_lists"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        };
        // Synapse leaves out an algorithm with no key left (its `/sync` always says
        // `signed_curve25519`, even at 0): a transaction that reports counts at all reports
        // 0 for what it leaves out, or the machine would never upload more.
        let all_counts = &transaction["org.matrix.msc3202.device_one_time_keys_count"];
        let one_time_keys = all_counts.is_object().then(|| {
            let mut counts: BTreeMap<String, u64> = all_counts[user][device]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
                .collect();
            counts.entry("signed_curve25519".to_owned()).or_insert(0);
            counts
        });
        let fallback =
            &transaction["org.matrix.msc3202.device_unused_fallback_key_types"][user][device];
        Self {
            to_device,
            changed: strings(&lists["changed"]),
            left: strings(&lists["left"]),
            one_time_keys,
            unused_fallback_keys: fallback.is_array().then(|| strings(fallback)),
        }
    }

    /// Whether it carries nothing the machine needs now: no message, no device change, and
    /// a one-time-key count no different from `last`.
    pub fn is_news(&self, last: Option<&BTreeMap<String, u64>>) -> bool {
        !self.to_device.is_empty()
            || !self.changed.is_empty()
            || !self.left.is_empty()
            || (self.one_time_keys.is_some() && self.one_time_keys.as_ref() != last)
    }
}

/// The bot's device.
pub struct Crypto {
    machine: OlmMachine,
    http: reqwest::Client,
    homeserver: String,
    as_token: Secret,
    user: OwnedUserId,
    device: OwnedDeviceId,
    versions: SupportedVersions,
    /// One exchange with the homeserver at a time: the machine's requests go out in order.
    sending: tokio::sync::Mutex<()>,
    /// Which devices get room keys (`[encryption] share_keys_with`).
    sharing: matrix_sdk_crypto::CollectStrategy,
    /// Rooms known to be encrypted (`true`) or not yet (`false`). Encryption, once on in a
    /// room, stays on; a room not encrypted is asked about again after an
    /// `m.room.encryption` event ([`Crypto::room_encrypted`]).
    rooms: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto").field("user", &self.user).field("device", &self.device).finish()
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("encryption: {what}: {e}"))
}

impl Crypto {
    /// Makes the bot's device on the homeserver (MSC4190; one that exists is kept), opens
    /// the crypto store (the device's keys, made on first use), and uploads what the
    /// homeserver lacks (device keys, one-time keys).
    pub async fn start(settings: &Settings) -> Result<Self> {
        let enc = &settings.raw.encryption;
        let user: OwnedUserId =
            settings.bot_user_id.as_str().try_into().map_err(|e| failed("the bot's user id", e))?;
        let device: OwnedDeviceId = enc.device_id.as_str().into();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| failed("HTTP client", e))?;
        let homeserver = settings.homeserver_url.trim_end_matches('/').to_owned();
        // MSC4190: the appservice makes its users' devices (201 made, 200 when it exists).
        let url = format!(
            "{homeserver}/_matrix/client/v3/devices/{}?user_id={}",
            escape(&enc.device_id),
            escape(user.as_str())
        );
        let made = http
            .put(url)
            .bearer_auth(settings.as_token.expose())
            .json(&serde_json::json!({ "display_name": "Boardroom" }))
            .send()
            .await
            .map_err(|e| failed("making the bot's device", e))?;
        if !made.status().is_success() {
            let status = made.status();
            let body = made.text().await.unwrap_or_default();
            return Err(failed(
                "making the bot's device (does the homeserver support MSC4190, and does the registration say io.element.msc4190?)",
                format!("{status} {body}"),
            ));
        }
        let dir = enc.store_dir(&settings.raw.database.path);
        let store = matrix_sdk_sqlite::SqliteCryptoStore::open(&dir, None)
            .await
            .map_err(|e| failed(&format!("opening the crypto store at {}", dir.display()), e))?;
        let machine = OlmMachine::with_store(&user, &device, store, None)
            .await
            .map_err(|e| failed("loading the bot's device from the crypto store", e))?;
        let crypto = Self {
            machine,
            http,
            homeserver,
            as_token: settings.as_token.clone(),
            user,
            device,
            versions: SupportedVersions::from_parts(&["v1.11".to_owned()], &BTreeMap::new()),
            sending: tokio::sync::Mutex::new(()),
            rooms: Default::default(),
            sharing: match enc.share_keys_with {
                crate::config::ShareKeysWith::All => matrix_sdk_crypto::CollectStrategy::AllDevices,
                crate::config::ShareKeysWith::CrossSigned => {
                    matrix_sdk_crypto::CollectStrategy::IdentityBasedStrategy
                }
                crate::config::ShareKeysWith::Verified => {
                    matrix_sdk_crypto::CollectStrategy::OnlyTrustedDevices
                }
            },
        };
        crypto.flush().await?;
        if !matches!(crypto.sharing, matrix_sdk_crypto::CollectStrategy::AllDevices) {
            crypto.cross_sign().await?;
        }
        tracing::info!(
            device_id = %crypto.device,
            curve25519 = %crypto.identity_key(),
            "the bot's device is ready"
        );
        Ok(crypto)
    }

    /// Gives the bot a cross-signing identity that signs its device, when it has none:
    /// sharing keys only with cross-signed devices needs one. A first upload needs no
    /// interactive auth (MSC3967), nor does an appservice's (MSC4190).
    async fn cross_sign(&self) -> Result<()> {
        if self.machine.cross_signing_status().await.is_complete() {
            return Ok(());
        }
        let requests = self
            .machine
            .bootstrap_cross_signing(false)
            .await
            .map_err(|e| failed("making the bot's cross-signing identity", e))?;
        if let Some(upload) = requests.upload_keys_req
            && let AnyOutgoingRequest::KeysUpload(q) = upload.request()
        {
            let resp = self.send(q.clone()).await?;
            self.machine
                .mark_request_as_sent(upload.request_id(), &resp)
                .await
                .map_err(|e| failed("marking a request sent", e))?;
        }
        let keys = requests.upload_signing_keys_req;
        let mut upload = ruma16::api::client::keys::upload_signing_keys::v3::Request::new();
        upload.master_key = keys.master_key.map(|k| k.to_raw());
        upload.self_signing_key = keys.self_signing_key.map(|k| k.to_raw());
        upload.user_signing_key = keys.user_signing_key.map(|k| k.to_raw());
        self.send(upload).await?;
        self.send(requests.upload_signatures_req).await?;
        tracing::info!("the bot's cross-signing identity is uploaded");
        Ok(())
    }

    /// The device's Curve25519 identity key, in base64.
    pub fn identity_key(&self) -> String {
        self.machine.identity_keys().curve25519.to_base64()
    }

    /// Feeds what a transaction brought for the device to the machine, then sends what it
    /// wants sent. Olm messages already processed are known to the store, so a replay after
    /// a crash decrypts nothing twice.
    pub async fn receive(&self, updates: &DeviceUpdates) -> Result<()> {
        let to_device: Vec<Raw<AnyToDeviceEvent>> = updates
            .to_device
            .iter()
            .filter_map(|e| match serde_json::from_value(e.clone()) {
                Ok(raw) => Some(raw),
                Err(err) => {
                    tracing::warn!(error = %err, "skipping a to-device message that is not JSON");
                    None
                }
            })
            .collect();
        let mut lists = DeviceLists::new();
        lists.changed = users(&updates.changed);
        lists.left = users(&updates.left);
        let counts: BTreeMap<OneTimeKeyAlgorithm, UInt> = updates
            .one_time_keys
            .iter()
            .flatten()
            .map(|(k, v)| (OneTimeKeyAlgorithm::from(k.as_str()), UInt::new_saturating(*v)))
            .collect();
        let fallback: Option<Vec<OneTimeKeyAlgorithm>> = updates
            .unused_fallback_keys
            .as_ref()
            .map(|v| v.iter().map(|k| OneTimeKeyAlgorithm::from(k.as_str())).collect());
        let settings =
            DecryptionSettings { sender_device_trust_requirement: TrustRequirement::Untrusted };
        let (events, keys) = self
            .machine
            .receive_sync_changes(
                EncryptionSyncChanges {
                    to_device_events: to_device,
                    changed_devices: &lists,
                    one_time_keys_counts: &counts,
                    unused_fallback_keys: fallback.as_deref(),
                    next_batch_token: None,
                },
                &settings,
            )
            .await
            .map_err(|e| failed("to-device messages", e))?;
        if !events.is_empty() || !keys.is_empty() {
            tracing::debug!(to_device = events.len(), room_keys = keys.len(), "device updates");
        }
        self.flush().await
    }

    /// Decrypts an `m.room.encrypted` event (its JSON as the homeserver sent it) of
    /// `room_id`: the event as it was before encryption (`type`, `content`, with the
    /// encrypted one's `event_id`, `sender`, `origin_server_ts`, `room_id`), or `None` while
    /// its room key has not arrived.
    pub async fn decrypt(
        &self,
        event: &serde_json::Value,
        room_id: &str,
    ) -> Result<Option<serde_json::Value>> {
        let raw: Raw<ruma16::events::room::encrypted::OriginalSyncRoomEncryptedEvent> =
            serde_json::from_value(event.clone()).map_err(|e| failed("an encrypted event", e))?;
        let room: ruma16::OwnedRoomId =
            room_id.try_into().map_err(|e| failed("an encrypted event's room", e))?;
        let settings =
            DecryptionSettings { sender_device_trust_requirement: TrustRequirement::Untrusted };
        match self.machine.decrypt_room_event(raw.cast_ref_unchecked(), &room, &settings).await {
            Ok(decrypted) => {
                let mut clear: serde_json::Value = decrypted
                    .event
                    .deserialize_as_unchecked()
                    .map_err(|e| failed("a decrypted event", e))?;
                if let Some(map) = clear.as_object_mut() {
                    for key in ["event_id", "sender", "origin_server_ts", "room_id"] {
                        if !map.contains_key(key) && !event[key].is_null() {
                            map.insert(key.to_owned(), event[key].clone());
                        }
                    }
                    map.entry("room_id").or_insert_with(|| room_id.into());
                }
                Ok(Some(clear))
            }
            Err(matrix_sdk_crypto::MegolmError::MissingRoomKey(_)) => Ok(None),
            Err(e) => Err(failed("decrypting an event", e)),
        }
    }

    /// Whether `room_id` is encrypted: asked of the homeserver once (its
    /// `m.room.encryption` state), then remembered.
    pub async fn room_encrypted(&self, room_id: &str) -> Result<bool> {
        if let Some(known) = self.rooms.lock().unwrap_or_else(|p| p.into_inner()).get(room_id) {
            return Ok(*known);
        }
        let path = format!("rooms/{}/state/m.room.encryption/", escape(room_id));
        let resp = self.get_as_bot(&path).await.map_err(|e| failed("a room's encryption", e))?;
        let encrypted = match resp.status().as_u16() {
            200 => true,
            404 => false,
            other => return Err(failed("a room's encryption", format!("status {other}"))),
        };
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).insert(room_id.to_owned(), encrypted);
        Ok(encrypted)
    }

    /// A room turned encryption on (an `m.room.encryption` state event).
    pub fn mark_encrypted(&self, room_id: &str) {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).insert(room_id.to_owned(), true);
    }

    /// Encrypts a message (`event_type`, `content`) for `room_id`'s joined members' devices:
    /// their keys are queried, Olm sessions made, the room key shared with them (to-device),
    /// then the content encrypted with it. Returns the `m.room.encrypted` content.
    pub async fn encrypt(
        &self,
        room_id: &str,
        event_type: &str,
        content: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let room: ruma16::OwnedRoomId =
            room_id.try_into().map_err(|e| failed("a room to encrypt for", e))?;
        let owned = self.joined_members(room_id).await?;
        // Plain references (no closure over them): the future stays `Send` for any lifetime.
        let members: Vec<&ruma16::UserId> = owned.iter().map(AsRef::as_ref).collect();
        self.machine
            .update_tracked_users(members.clone())
            .await
            .map_err(|e| failed("tracking the room's members", e))?;
        self.flush().await?;
        let _turn = self.sending.lock().await;
        if let Some((id, claim)) = self
            .machine
            .get_missing_sessions(members.clone().into_iter())
            .await
            .map_err(|e| failed("sessions", e))?
        {
            let resp = self.send(claim).await?;
            self.machine
                .mark_request_as_sent(&id, &resp)
                .await
                .map_err(|e| failed("marking a request sent", e))?;
        }
        let shares = self
            .machine
            .share_room_key(
                &room,
                members.clone().into_iter(),
                matrix_sdk_crypto::EncryptionSettings {
                    sharing_strategy: self.sharing.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed("sharing the room key", e))?;
        for r in shares {
            let resp = self.send_to_device(&r).await?;
            self.machine
                .mark_request_as_sent(&r.txn_id, &resp)
                .await
                .map_err(|e| failed("marking a request sent", e))?;
        }
        let raw: Raw<ruma16::events::AnyMessageLikeEventContent> =
            serde_json::from_value(content.clone()).map_err(|e| failed("a message", e))?;
        let encrypted = self
            .machine
            .encrypt_room_event_raw(&room, event_type, &raw)
            .await
            .map_err(|e| failed("encrypting a message", e))?;
        serde_json::from_str(encrypted.content.json().get()).map_err(|e| failed("a message", e))
    }

    /// `GET /_matrix/client/v3/<path>` as the bot.
    async fn get_as_bot(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        let url = format!(
            "{}/_matrix/client/v3/{path}?user_id={}",
            self.homeserver,
            escape(self.user.as_str())
        );
        self.http.get(url).bearer_auth(self.as_token.expose()).send().await
    }

    /// The joined members of `room_id`, as the bot sees them.
    async fn joined_members(&self, room_id: &str) -> Result<Vec<OwnedUserId>> {
        let path = format!("rooms/{}/joined_members", escape(room_id));
        let resp = self.get_as_bot(&path).await.map_err(|e| failed("a room's members", e))?;
        if !resp.status().is_success() {
            return Err(failed("a room's members", resp.status()));
        }
        let body: serde_json::Value =
            resp.json().await.map_err(|e| failed("a room's members", e))?;
        Ok(body["joined"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(u, _)| OwnedUserId::try_from(u.as_str()).ok())
            .collect())
    }

    /// Sends everything the machine wants sent, until it wants nothing more.
    async fn flush(&self) -> Result<()> {
        let _turn = self.sending.lock().await;
        for _ in 0..8 {
            let requests =
                self.machine.outgoing_requests().await.map_err(|e| failed("requests", e))?;
            if requests.is_empty() {
                return Ok(());
            }
            for r in requests {
                let id = r.request_id();
                let marked = match r.request() {
                    AnyOutgoingRequest::KeysUpload(q) => {
                        let resp = self.send(q.clone()).await?;
                        self.machine.mark_request_as_sent(id, &resp).await
                    }
                    AnyOutgoingRequest::KeysQuery(q) => {
                        let mut g = get_keys::v3::Request::new();
                        g.device_keys = q.device_keys.clone();
                        g.timeout = q.timeout;
                        let resp = self.send(g).await?;
                        self.machine.mark_request_as_sent(id, &resp).await
                    }
                    AnyOutgoingRequest::KeysClaim(q) => {
                        let resp = self.send(q.clone()).await?;
                        self.machine.mark_request_as_sent(id, &resp).await
                    }
                    AnyOutgoingRequest::ToDeviceRequest(q) => {
                        let resp = self.send_to_device(q).await?;
                        self.machine.mark_request_as_sent(id, &resp).await
                    }
                    AnyOutgoingRequest::SignatureUpload(q) => {
                        let resp = self.send(q.clone()).await?;
                        self.machine.mark_request_as_sent(id, &resp).await
                    }
                    AnyOutgoingRequest::RoomMessage(q) => {
                        let m = send_message_event::v3::Request::new(
                            q.room_id.clone(),
                            q.txn_id.clone(),
                            &*q.content,
                        )
                        .map_err(|e| failed("a room message", e))?;
                        let resp = self.send(m).await?;
                        self.machine.mark_request_as_sent(id, &resp).await
                    }
                };
                marked.map_err(|e| failed("marking a request sent", e))?;
            }
        }
        Ok(())
    }

    async fn send_to_device(
        &self,
        q: &ToDeviceRequest,
    ) -> Result<send_event_to_device::v3::Response> {
        let r = send_event_to_device::v3::Request::new_raw(
            q.event_type.clone(),
            q.txn_id.clone(),
            q.messages.clone(),
        );
        self.send(r).await
    }

    /// Sends a request as the bot's device (identity assertion: `user_id` and `device_id`).
    async fn send<R>(&self, request: R) -> Result<R::IncomingResponse>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication:
            ruma16::api::auth_scheme::AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> R::PathBuilder:
            ruma16::api::path_builder::PathBuilder<Input<'a> = Cow<'a, SupportedVersions>>,
    {
        let mut identity = AppserviceUserIdentity::new(&self.user);
        identity.device_id = Some(&self.device);
        let http_request: http::Request<Vec<u8>> = request
            .try_into_http_request_with_identity(
                &self.homeserver,
                SendAccessToken::Always(self.as_token.expose()),
                identity,
                Cow::Borrowed(&self.versions),
            )
            .map_err(|e| failed("building a request", e))?;
        let path = http_request.uri().path().to_owned();
        let request = reqwest::Request::try_from(http_request)
            .map_err(|e| failed("building a request", e))?;
        let response = self.http.execute(request).await.map_err(|e| failed(&path, e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| failed(&path, e))?.to_vec();
        tracing::debug!(%path, status = status.as_u16(), "encryption request");
        let response =
            http::Response::builder().status(status).body(body).map_err(|e| failed(&path, e))?;
        R::IncomingResponse::try_from_http_response(response).map_err(|e| failed(&path, e))
    }
}

fn escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn users(ids: &[String]) -> Vec<OwnedUserId> {
    ids.iter().filter_map(|u| OwnedUserId::try_from(u.as_str()).ok()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::DeviceUpdates;

    #[test]
    fn a_transaction_s_device_updates_are_the_bot_device_s_only() {
        let txn = json!({
            "events": [],
            "de.sorunome.msc2409.to_device": [
                { "type": "m.room.encrypted", "sender": "@a:hs", "to_user_id": "@bot:hs",
                  "to_device_id": "BOARDROOM", "content": { "algorithm": "m.olm.v1.curve25519-aes-sha2" } },
                { "type": "m.dummy", "sender": "@a:hs", "to_user_id": "@bot:hs",
                  "to_device_id": "OTHER", "content": {} },
                { "type": "m.dummy", "sender": "@a:hs", "to_user_id": "@someone:hs",
                  "to_device_id": "BOARDROOM", "content": {} }
            ],
            "org.matrix.msc3202.device_lists": { "changed": ["@a:hs"], "left": [] },
            "org.matrix.msc3202.device_one_time_keys_count": { "@bot:hs": { "BOARDROOM": {} } },
            "org.matrix.msc3202.device_unused_fallback_key_types": { "@bot:hs": { "BOARDROOM": ["signed_curve25519"] } }
        });
        let u = DeviceUpdates::of(&txn, "@bot:hs", "BOARDROOM");
        assert_eq!(u.to_device.len(), 1, "only what is addressed to the bot's device");
        assert_eq!(u.to_device[0]["type"], "m.room.encrypted");
        assert_eq!(u.changed, ["@a:hs"]);
        // Synapse leaves out a count of 0; it is 0, not unknown.
        let counts = u.one_time_keys.clone().expect("counts");
        assert_eq!(counts.get("signed_curve25519"), Some(&0));
        assert_eq!(u.unused_fallback_keys.as_deref(), Some(&["signed_curve25519".to_owned()][..]));
        assert!(u.is_news(None));
        // A transaction with nothing for the device, and the same count as before, is none.
        let quiet = json!({ "events": [],
            "org.matrix.msc3202.device_one_time_keys_count": { "@bot:hs": { "BOARDROOM": { "signed_curve25519": 0 } } } });
        let q = DeviceUpdates::of(&quiet, "@bot:hs", "BOARDROOM");
        assert!(!q.is_news(Some(&counts)));
        assert!(q.is_news(None));
        // Without the extensions, nothing at all.
        let plain = DeviceUpdates::of(&json!({ "events": [] }), "@bot:hs", "BOARDROOM");
        assert_eq!(plain, DeviceUpdates::default());
        assert!(!plain.is_news(None));
    }
}
