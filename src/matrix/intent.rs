//! Acting as someone: the bot, or one of the appservice's virtual users (identity
//! assertion). Registering, joining, inviting and sending go through an [`Intent`], so
//! that what "acting as a virtual user" means is written once.

use ruma::{
    OwnedEventId, OwnedUserId, RoomId, TransactionId, UserId,
    api::client::{
        account::register::{self, LoginType, RegistrationKind},
        membership::{invite_user, join_room_by_id},
    },
    events::room::message::RoomMessageEventContent,
};

use super::{Auth, HomeserverClient, HsError, client::PathInput};
use crate::config::Secret;

/// The bot, or a virtual user, with the client that speaks for them.
#[derive(Debug, Clone)]
pub struct Intent {
    client: HomeserverClient,
    user: Option<OwnedUserId>,
}

impl Intent {
    /// Acting as the bot (the appservice's own user).
    pub fn bot(client: HomeserverClient) -> Self {
        Self { client, user: None }
    }

    /// Acting as the virtual user `user` (the appservice asserts its identity).
    pub fn user(client: HomeserverClient, user: OwnedUserId) -> Self {
        Self { client, user: Some(user) }
    }

    /// Acting as a Matrix user with their own access token (the appservice's client's
    /// connections and retry policy, their credentials).
    pub fn with_token(client: HomeserverClient, token: Secret) -> Self {
        Self { client: client.with_auth(Auth::User(token)), user: None }
    }

    /// Who the homeserver sees: `None` for the bot.
    pub fn as_user(&self) -> Option<&UserId> {
        self.user.as_deref()
    }

    /// Registers the user (`inhibit_login`); `M_USER_IN_USE` means it exists already.
    pub async fn register(client: &HomeserverClient, localpart: &str) -> Result<(), HsError> {
        let mut req = register::v3::Request::new();
        req.username = Some(localpart.to_owned());
        req.login_type = Some(LoginType::ApplicationService);
        req.inhibit_login = true;
        req.kind = RegistrationKind::User;
        match client.send(req, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_user_in_use() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Joins `room`.
    pub async fn join(&self, room: &RoomId) -> Result<(), HsError> {
        self.client
            .send(join_room_by_id::v3::Request::new(room.to_owned()), self.as_user())
            .await?;
        Ok(())
    }

    /// Invites `user` to `room`.
    pub async fn invite(&self, room: &RoomId, user: &UserId) -> Result<(), HsError> {
        let req = invite_user::v3::Request::new(
            room.to_owned(),
            invite_user::v3::InvitationRecipient::UserId(invite_user::v3::InviteUserId::new(
                user.to_owned(),
            )),
        );
        self.client.send(req, self.as_user()).await?;
        Ok(())
    }

    /// Sends any client-server request as this intent's user (reading a room's history,
    /// typing, presence).
    pub async fn send<R>(&self, request: R) -> Result<R::IncomingResponse, HsError>
    where
        R: ruma::api::OutgoingRequest,
        R::EndpointError: super::client::MatrixErrorInfo,
        for<'a> R::Authentication: ruma::api::auth_scheme::AuthScheme<
                Input<'a> = ruma::api::auth_scheme::SendAccessToken<'a>,
            >,
        R::PathBuilder: PathInput,
    {
        self.client.send(request, self.as_user()).await
    }

    /// Sends a message under `txn_id`; when `maybe_sent`, an earlier attempt may have
    /// landed and it is looked for first ([`HomeserverClient::send_message`]).
    pub async fn send_message(
        &self,
        room: &RoomId,
        txn_id: &TransactionId,
        content: &RoomMessageEventContent,
        maybe_sent: bool,
    ) -> Result<OwnedEventId, HsError> {
        self.client.send_message(room, txn_id, content, self.as_user(), maybe_sent).await
    }
}
