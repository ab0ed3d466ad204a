//! Start-up work against the homeserver: register the bot, set its display name, and ping
//! so that the homeserver delivers its backlog at once. Each step is retried with backoff
//! until it succeeds; Boardroom serves meanwhile, and logs exactly what failed.

use ruma::api::client::{
    appservice::request_ping,
    profile::{ProfileFieldValue, set_profile_field},
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Settings,
    matrix::{HomeserverClient, HsError, Intent, RetryPolicy},
    store::Store,
};

/// The bot's display name.
pub const BOT_DISPLAY_NAME: &str = "Boardroom";

/// Runs the start-up steps, each until it succeeds or `shutdown`.
pub(crate) async fn run(
    settings: &Settings,
    client: HomeserverClient,
    shutdown: CancellationToken,
) {
    let client = client.with_retry(RetryPolicy::FOREVER);
    let bot = settings.bot_user_id.clone();
    let localpart = settings.raw.appservice.bot_localpart.clone();
    let steps = async {
        Intent::register(&client, &localpart).await.map_err(|e| ("register the bot", e))?;
        tracing::info!(user_id = %bot, "bot registered");
        let req = set_profile_field::v3::Request::new(
            bot.clone(),
            ProfileFieldValue::DisplayName(BOT_DISPLAY_NAME.to_owned()),
        );
        client.send(req, None).await.map_err(|e| ("set the bot's display name", e))?;
        let ping = request_ping::v1::Request::new(settings.raw.appservice.id.clone());
        let pong = client.send(ping, None).await.map_err(|e| ("ping from the homeserver", e))?;
        tracing::info!(
            round_trip_ms = pong.duration.as_millis() as u64,
            "homeserver reached us: ping answered"
        );
        Ok::<(), (&str, HsError)>(())
    };
    tokio::select! {
        r = steps => if let Err((what, e)) = r {
            tracing::error!(error = %e, "start-up could not {what}");
        },
        () = shutdown.cancelled() => {},
    }
}

/// Each time the store recovers from a full disk, asks the homeserver to ping us: Synapse
/// then sends the transactions it kept (answered 503 meanwhile) at once, instead of after
/// its backoff, which grows to about 8.5 minutes. Runs until `shutdown`.
pub(crate) async fn ping_after_recovery(
    settings: &Settings,
    store: Store,
    client: HomeserverClient,
    shutdown: CancellationToken,
) {
    let client = client.with_retry(RetryPolicy::SHORT);
    loop {
        tokio::select! {
            () = store.recovered() => {},
            () = shutdown.cancelled() => return,
        }
        let ping = request_ping::v1::Request::new(settings.raw.appservice.id.clone());
        match client.send(ping, None).await {
            Ok(_) => tracing::info!("the database recovered; the homeserver was asked to resend"),
            Err(e) => tracing::warn!(
                error = %e,
                "the database recovered; cannot ask the homeserver to resend (it will retry by itself)"
            ),
        }
    }
}
