//! The `boardroom` command: a thin shell over the library.

use std::{path::PathBuf, process::ExitCode};

use boardroom::{
    Config, app,
    config::{LogFormat, Settings},
    registration,
};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Boardroom: task boards on Matrix, as an application service.
#[derive(Parser, Debug)]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BOARDROOM_COMMIT"), ")"), about)]
struct Cli {
    /// The config file.
    #[arg(
        short = 'c',
        long,
        global = true,
        env = "BOARDROOM_CONFIG",
        default_value = "boardroom.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the appservice API and run the bot.
    Serve,
    /// Print the registration YAML for the homeserver.
    Registration {
        /// First give every token still holding the example's placeholder (`change-me…`)
        /// a new random one, written into the config file.
        #[arg(short = 'g', long)]
        generate: bool,
    },
    /// Check the config; exits non-zero naming the wrong key.
    CheckConfig,
    /// Rebuild the board index from the homeserver (stop `serve` first).
    Reindex,
    /// List the outbound requests set aside (refused for good, or failing with server
    /// errors too long), with the homeserver's error (works while `serve` runs);
    /// `--requeue` puts them back in the outbox for the next `serve` (stop `serve` first).
    DeadLetters {
        /// Put them back in the outbox instead of listing them.
        #[arg(long)]
        requeue: bool,
    },
    /// Show queue depths, the oldest event waiting, dead letters, boards, tasks, inbox
    /// entries, the database's size and schema version. Works while `serve` runs (reads
    /// the database as a RocksDB secondary instance, writing nothing there).
    Status,
    /// Write Boardroom's own state (inbox, live-stream logs, queues, dead letters, webhook
    /// deliveries, virtual users; not the board index, which `reindex` rebuilds) as
    /// versioned JSON lines. Works while `serve` runs (a RocksDB secondary instance: the
    /// state at one moment).
    Export {
        /// The file to write (through a temporary file renamed at the end); `-` for
        /// standard output.
        #[arg(short, long, default_value = "-")]
        output: PathBuf,
    },
    /// Load an export into an empty database (stop `serve` first), then run `reindex` to
    /// rebuild the board index from the homeserver. The whole file is checked before
    /// anything is written.
    Import {
        /// The export to read; `-` for standard input.
        #[arg(short, long, default_value = "-")]
        input: PathBuf,
        /// Import into a database that holds records: its own state is replaced by the
        /// export's.
        #[arg(long)]
        force: bool,
    },
    /// Print a new ed25519 key pair for a signed webhook source: the private key for the
    /// sender (base64, and as a PEM file for `openssl pkeyutl`), the public key for
    /// `public_key` in `[[webhooks.sources]]`. Reads no config.
    WebhookKeygen,
}

/// glibc's allocator, told before any other thread starts: blocks of 1 MiB or more are
/// mapped on their own and given back to the system when freed. Without it glibc raises
/// that threshold (from 128 KiB) each time such a block is freed, and from then on
/// RocksDB's write-buffer blocks (1 MiB) come from the heap and stay there after a flush. Measured in
/// docs/PERFORMANCE.md ("Memory"). An admin's own `GLIBC_TUNABLES` for the allocator wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        return;
    }
    // SAFETY: `mallopt` only sets the allocator's parameters; it is called first thing in
    // `main`, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// Rust's allocations (events, requests, JSON) go to jemalloc, its symbols prefixed so that
/// RocksDB's C++ keeps glibc's `malloc` with the threshold set in [`tune_allocator`]: a
/// flushed write buffer's blocks still go back to the system at once. jemalloc's own
/// settings (one arena; freed pages given back after a second, by its background thread)
/// are built in from `.cargo/config.toml`; `_RJEM_MALLOC_CONF` overrides them at run time.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Cmd::WebhookKeygen = cli.command {
        return run_webhook_keygen();
    }
    if let Cmd::Registration { generate: true } = cli.command
        && let Err(e) = generate_tokens(&cli.config)
    {
        eprintln!("boardroom: {}: {e}", cli.config.display());
        return ExitCode::from(2);
    }
    let settings = match Config::load(&cli.config).and_then(|c| c.validate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("boardroom: {}: {e}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Cmd::CheckConfig => {
            println!(
                "{}: OK (bot {}, homeserver {})",
                cli.config.display(),
                settings.bot_user_id,
                settings.homeserver_url
            );
            ExitCode::SUCCESS
        }
        Cmd::Registration { .. } => match registration::registration_yaml(&settings) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("boardroom: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Serve => run_serve(cli.config, settings),
        Cmd::Reindex => run_reindex(settings),
        Cmd::DeadLetters { requeue } => run_dead_letters(&settings, requeue),
        Cmd::Status => run_status(&settings),
        Cmd::Export { output } => run_export(&settings, &output),
        Cmd::Import { input, force } => run_import(&settings, &input, force),
        Cmd::WebhookKeygen => run_webhook_keygen(),
    }
}

/// `registration --generate`: the config's placeholder tokens replaced by new ones, the
/// file written again (through a new file renamed over it, with the same permissions).
fn generate_tokens(config: &std::path::Path) -> boardroom::Result<()> {
    let text = std::fs::read_to_string(config)?;
    let (filled, n) = registration::fill_placeholder_tokens(&text)?;
    if n == 0 {
        eprintln!("no placeholder token in {}: nothing generated", config.display());
        return Ok(());
    }
    let fresh = config.with_extension("toml.new");
    std::fs::write(&fresh, filled)?;
    std::fs::set_permissions(&fresh, std::fs::metadata(config)?.permissions())?;
    std::fs::rename(&fresh, config)?;
    eprintln!("wrote {n} new tokens into {}", config.display());
    Ok(())
}

fn run_webhook_keygen() -> ExitCode {
    let keys = boardroom::webhooks::signature::keygen().and_then(|(private, public)| {
        boardroom::webhooks::signature::private_key_pem(&private).map(|pem| (private, public, pem))
    });
    match keys {
        Ok((private, public, pem)) => {
            println!("# The sender's private key: keep it secret, give it to the sender only.");
            println!("private_key = \"{private}\"");
            println!("# The same private key as a PEM file, for `openssl pkeyutl -sign -rawin`:");
            print!("{pem}");
            println!("# The public key, for [[webhooks.sources]] in Boardroom's config:");
            println!("public_key = \"{public}\"");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("boardroom: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_dead_letters(settings: &Settings, requeue: bool) -> ExitCode {
    let db = &settings.raw.database.path;
    // Listing reads the database as a secondary instance, so that it works while `serve`
    // runs; requeueing writes, and needs `serve` stopped.
    let scratch = std::env::temp_dir().join(format!("boardroom-dead-{}", std::process::id()));
    let opened = match requeue {
        true => boardroom::store::Store::open(db),
        false => boardroom::store::Store::open_secondary(db, &scratch),
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("boardroom dead-letters: {e}");
            return ExitCode::FAILURE;
        }
    };
    if requeue {
        let requeued = store.requeue_dead().and_then(|n| {
            // The rooms that were told of a refusal are told again if it happens again.
            store.clear_notes(boardroom::store::boards::REFUSED_NOTE).map(|_| n)
        });
        return match requeued {
            Ok(n) => {
                println!("requeued {n} requests; the next `boardroom serve` sends them");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("boardroom dead-letters: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let listed = store.outbox_dead_entries(usize::MAX);
    drop(store);
    let _ = std::fs::remove_dir_all(&scratch);
    match listed {
        Ok(entries) => {
            for (seq, record) in &entries {
                println!("#{seq} {record}");
            }
            println!("{} requests set aside", entries.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("boardroom dead-letters: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_status(settings: &Settings) -> ExitCode {
    let db = &settings.raw.database.path;
    // The secondary instance's own files (its log, its view of the manifest).
    let scratch = std::env::temp_dir().join(format!("boardroom-status-{}", std::process::id()));
    let status = boardroom::store::Store::open_secondary(db, &scratch).and_then(|s| s.status());
    let _ = std::fs::remove_dir_all(&scratch);
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            eprintln!("boardroom status: {e}");
            return ExitCode::FAILURE;
        }
    };
    let version = status.schema_version.map_or_else(|| "none".to_owned(), |v| v.to_string());
    println!(
        "database          {} ({} bytes, schema version {version})",
        db.display(),
        status.size_bytes
    );
    println!("inbound waiting   {}", status.pending);
    if let Some(o) = &status.oldest_pending {
        let age = o.sent_ms.map_or_else(String::new, |sent| {
            let now = boardroom::domain::now_ms();
            format!(", sent {} s ago", now.saturating_sub(sent) / 1000)
        });
        println!("oldest waiting    #{} in {}{age}", o.seq, o.room_id);
    }
    println!("outbox waiting    {}", status.outbox);
    println!("dead letters      {}", status.dead_letters);
    println!("boards            {}", status.boards);
    println!("tasks             {}", status.tasks);
    println!("inbox entries     {}", status.inbox_entries);
    ExitCode::SUCCESS
}

/// A bar of records on a terminal; elsewhere a line on stderr as each map is done.
/// Returns the bar, to clear at the end, and what draws it.
fn backup_progress() -> (indicatif::ProgressBar, impl FnMut(boardroom::store::backup::Progress<'_>))
{
    let bar = indicatif::ProgressBar::new(0);
    let drawn = bar.clone();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let draw = move |p: boardroom::store::backup::Progress<'_>| {
        match p.total {
            Some(total) => {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_length(total);
            }
            None => bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} {pos} records")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            ),
        }
        bar.set_message(p.map.to_owned());
        bar.set_position(p.records);
        if p.map_done {
            if terminal {
                bar.println(format!("{}: {}", p.map, p.map_records));
            } else {
                eprintln!("{}: {}", p.map, p.map_records);
            }
        }
    };
    (drawn, draw)
}

fn run_export(settings: &Settings, output: &std::path::Path) -> ExitCode {
    use boardroom::store::backup;
    let db = &settings.raw.database.path;
    let at = backup::export_time_ms();
    let (bar, mut progress) = backup_progress();
    let result = if output.as_os_str() == "-" {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        backup::export_database(db, &mut out, at, &mut progress)
    } else {
        backup::export_database_to_file(db, output, at, &mut progress)
    };
    bar.finish_and_clear();
    match result {
        Ok(s) => {
            eprintln!(
                "exported {} records of {} maps (schema version {})",
                s.records,
                s.maps.len(),
                s.schema_version
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("boardroom export: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_import(settings: &Settings, input: &std::path::Path, force: bool) -> ExitCode {
    use boardroom::store::backup;
    let from = if input.as_os_str() == "-" {
        backup::Input::Stdin
    } else {
        backup::Input::File(input.to_owned())
    };
    let (bar, mut progress) = backup_progress();
    let result = backup::import(&settings.raw.database.path, &from, force, &mut progress);
    bar.finish_and_clear();
    match result {
        Ok(s) => {
            eprintln!(
                "imported {} records of {} maps (schema version {}, now {}); run \
                 `boardroom reindex` to rebuild the board index from the homeserver",
                s.records,
                s.maps.len(),
                s.schema_version,
                s.schema_version_after
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("boardroom import: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How a reload changes the log level; `None` while `RUST_LOG` sets it.
type LevelHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

fn init_logging(settings: &Settings) -> Option<LevelHandle> {
    use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_wins = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&settings.raw.logging.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    match settings.raw.logging.format {
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).init(),
        LogFormat::Pretty => registry.with(fmt).init(),
    }
    (!env_wins).then_some(handle)
}

/// On each SIGHUP: reads the config file again (with the environment's overrides) and, if
/// it is valid, applies what may change while Boardroom runs; a bad file is refused with
/// its reason, and the running config kept.
#[cfg(unix)]
async fn reload_on_hangup(
    path: std::path::PathBuf,
    ctx: std::sync::Arc<boardroom::context::Context>,
    level: Option<LevelHandle>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the config is reloaded only by a restart");
        return;
    };
    while hangups.recv().await.is_some() {
        let span = tracing::info_span!("reload", config = %path.display());
        let _entered = span.enter();
        let new = match Config::load(&path).and_then(|c| c.validate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "config reload refused: the running config is kept");
                continue;
            }
        };
        let reloaded = app::reload(&ctx, &new);
        if reloaded.applied.contains(&"logging.level") {
            match (&level, tracing_subscriber::EnvFilter::try_new(&new.raw.logging.level)) {
                (Some(handle), Ok(filter)) => {
                    if let Err(e) = handle.reload(filter) {
                        tracing::error!(error = %e, "the new log level could not be applied");
                    }
                }
                (None, _) => tracing::warn!("logging.level changed, but RUST_LOG sets the level"),
                (_, Err(e)) => tracing::error!(error = %e, "logging.level is not a filter"),
            }
        }
        if !reloaded.restart_needed.is_empty() {
            tracing::warn!(
                keys = ?reloaded.restart_needed,
                "these keys changed but apply only after a restart: they keep their running values"
            );
        }
        tracing::info!(changed = ?reloaded.applied, "config reloaded");
    }
}

fn run_serve(config: std::path::PathBuf, settings: Settings) -> ExitCode {
    let level = init_logging(&settings);
    let runtime = match app::runtime(&settings.raw.runtime) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("boardroom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(workers = runtime.metrics().num_workers(), "runtime started");
    let result = runtime.block_on(async move {
        let listeners = app::Listeners::bind(&settings).await?;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            signal.cancel();
        });
        let app = app::App::new(settings)?;
        #[cfg(unix)]
        tokio::spawn(reload_on_hangup(config, app.ctx.clone(), level));
        #[cfg(not(unix))]
        let _ = (config, level);
        app::serve_app_on(app, listeners, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Boardroom failed");
            eprintln!("boardroom: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_reindex(settings: Settings) -> ExitCode {
    // The workers `[runtime]` sets, as `serve` has them: an admin who limits them for the
    // server limits them for the rebuild too.
    let runtime = match app::runtime(&settings.raw.runtime) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("boardroom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Without a terminal (a log, a unit's journal) the bar draws nothing: each phase's end
    // is a line instead.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = runtime.block_on(boardroom::reindex::reindex(&settings, |phase, done, total| {
        bar.set_message(phase.label());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if !terminal && done == total {
            eprintln!("{}: {done}/{total}", phase.label());
        }
    }));
    bar.finish_and_clear();
    match result {
        Ok(s) => {
            println!(
                "reindexed {} boards and {} board rooms from {} rooms the bot is in; {} tasks with {} comments",
                s.boards, s.board_rooms, s.rooms, s.tasks, s.comments
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("boardroom reindex: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
