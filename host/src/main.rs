//! `agent-session`: the session API on the command line. Every operation
//! runs through the session component in wasmtime, on a filesystem store
//! (`--dir`) or a PostgreSQL database (`--store`).

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_session_core::memory::MemoryOutbox;
use agent_session_core::{
    Event, Learning, Session, SessionError, SessionFilter, SessionRef, SessionStatus, StartOptions,
    ToolCall, WebhookConfig, webhook::rfc3339,
};
use agent_session_host::copy;
use agent_session_host::plugin::{Outcome, PluginLimits, PluginRuntime};
use agent_session_host::webhook::{self, AddressPolicy, DeliveryConfig, EndpointError, Sender};
use agent_session_host::{
    Delivery, DeliveryState, Error, FsOutbox, FsStore, Outbox, PgStore, SessionHost,
    {CacheDir, Durability},
};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::sync::Arc;

/// `println!` that ends the process quietly when the reader of stdout has
/// gone (`agent-session list | head`), as Unix tools do, where `println!`
/// would panic. Output comes after the operation it reports, which has
/// completed by then.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    }};
}
use serde_json::{Value, json};

/// Durable, sandboxed session state for AI-agent hosts.
///
/// Sessions live in a directory (--dir), or in a PostgreSQL database shared
/// by hosts on many machines (--store). Every command runs through the
/// agent:session WebAssembly component; the store is the only thing it can
/// touch.
///
/// Exit codes: 0 ok, 1 other failure, 2 usage, 3 not found, 4 invalid
/// input, 5 invalid transition, 6 conflict, 7 limit exceeded, 8 storage,
/// 9 webhook not delivered (webhook test, redeliver), 10 plugin failed
/// (returned an error, timed out or trapped).
#[derive(Parser)]
#[command(name = "agent-session", version, max_term_width = 100)]
struct Cli {
    /// Directory holding the sessions (created if missing).
    #[arg(
        long,
        global = true,
        env = "AGENT_SESSION_DIR",
        default_value = "./.agent-sessions"
    )]
    dir: PathBuf,
    /// Keep the sessions, settings and webhook outbox in this PostgreSQL
    /// database instead of --dir: postgres://user:password@host:port/db,
    /// with ?sslmode=require (and &sslrootcert=CA.pem) for TLS. The schema
    /// is created or brought up to date on first use. fsck, compact,
    /// migrate and plugin work on --dir only.
    #[arg(
        long,
        global = true,
        env = "AGENT_SESSION_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    store: Option<String>,
    /// Print JSON instead of tables (errors too, on stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Let webhooks reach these special-purpose addresses, ranges or host
    /// names (e.g. 127.0.0.1,10.0.0.0/8,hooks.internal). By default only
    /// public addresses are dialled: loopback, private, link-local, CGNAT,
    /// multicast, documentation and unspecified ones are refused.
    #[arg(
        long,
        global = true,
        env = "AGENT_SESSION_WEBHOOK_ALLOW",
        value_delimiter = ',',
        value_name = "ADDR|RANGE|HOST"
    )]
    webhook_allow: Vec<String>,
    /// The largest file read whole on your behalf (an export document to
    /// import, a plugin component), in bytes; larger ones are refused
    /// before they are read. Default: the store's record limit, 64 MiB.
    /// (The component takes export documents of at most 64 MiB whatever
    /// this says.)
    #[arg(
        long,
        global = true,
        env = "AGENT_SESSION_MAX_INPUT_BYTES",
        default_value_t = agent_session_host::DEFAULT_MAX_INPUT_BYTES,
        value_name = "BYTES"
    )]
    max_input_bytes: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a new session.
    Start {
        /// What the session is for.
        task: String,
        /// The caller's key for the session (a thread or conversation id):
        /// if a session has it, that session is printed and left as it is
        /// (get-or-create); later commands can name it with --key.
        #[arg(long)]
        key: Option<String>,
        /// Mode name, e.g. developer (default: "default").
        #[arg(long)]
        mode: Option<String>,
        /// Owner of the session.
        #[arg(long)]
        user: Option<String>,
        /// Channel the session came from.
        #[arg(long)]
        channel: Option<String>,
        /// Iteration bound; reaching it ends the session with "timeout" (default 100).
        #[arg(long)]
        max_iterations: Option<u32>,
        /// Initial context, a JSON object.
        #[arg(long, value_name = "JSON")]
        context: Option<String>,
        /// Print only the new session's id (for scripts).
        #[arg(long, short, conflicts_with = "json")]
        quiet: bool,
    },
    /// Show a session (status, progress, duration, context).
    Show {
        #[command(flatten)]
        id: Target,
    },
    /// Show a session's history.
    Events {
        #[command(flatten)]
        id: Target,
        /// First position to show.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many events to show (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Show only the last 10 events.
        #[arg(long, conflicts_with_all = ["from", "limit"])]
        recent: bool,
    },
    /// Count one iteration of an active session.
    Iterate {
        #[command(flatten)]
        id: Target,
        /// Data about the iteration, JSON.
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
    },
    /// Record a tool call.
    ToolCall {
        #[command(flatten)]
        id: Target,
        /// Tool name.
        #[arg(long)]
        name: String,
        /// What was passed to the tool, JSON.
        #[arg(long, value_name = "JSON", default_value = "null")]
        input: String,
        /// What the tool returned, JSON.
        #[arg(long, value_name = "JSON", default_value = "null")]
        output: String,
        /// How long the call took.
        #[arg(long, default_value_t = 0)]
        duration_ms: u64,
    },
    /// Record something the agent learned.
    Learn {
        #[command(flatten)]
        id: Target,
        /// The insight.
        insight: String,
        /// Where the insight was written down.
        #[arg(long)]
        file: Option<String>,
    },
    /// Record a custom event (kind: a-z 0-9 _ - .).
    Record {
        #[command(flatten)]
        id: Target,
        kind: String,
        /// Event data, JSON.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        data: String,
    },
    /// Show the resumption context, or merge into the context with --set.
    Context {
        #[command(flatten)]
        id: Target,
        /// JSON object to merge (a null value removes its key).
        #[arg(long, value_name = "JSON")]
        set: Option<String>,
    },
    /// Pause an active session.
    Pause {
        #[command(flatten)]
        id: Target,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused session.
    Resume {
        #[command(flatten)]
        id: Target,
    },
    /// Complete a session.
    Complete {
        #[command(flatten)]
        id: Target,
        /// The result, JSON.
        #[arg(long, value_name = "JSON")]
        result: Option<String>,
    },
    /// Fail a session.
    Fail {
        #[command(flatten)]
        id: Target,
        error: String,
    },
    /// List sessions, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Page size (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (printed by the previous page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Count sessions by status and mode; average iterations; success rate.
    Stats {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Remove ended sessions older than the retention period.
    Cleanup {
        /// Retention in days (default 30).
        #[arg(long, value_name = "DAYS")]
        older_than: Option<u32>,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete one session and its history.
    Delete {
        #[command(flatten)]
        id: Target,
    },
    /// Check the whole root: every log frame, document and index entry.
    ///
    /// Reports torn tails (the last append of a crashed writer), damage,
    /// and index entries that do not match their history. With --repair,
    /// torn tails are cut, unreadable snapshots dropped and the index
    /// rebuilt; damaged histories are left for a person to look at.
    Fsck {
        /// Cut torn tails, drop unreadable snapshots and rebuild the index.
        #[arg(long)]
        repair: bool,
    },
    /// Rewrite the session index without superseded entries.
    Compact,
    /// Copy every session and setting between DIR and a PostgreSQL database.
    ///
    /// --to copies DIR into an empty database, --from copies a database into
    /// an empty DIR. Histories are copied record for record; the target's
    /// index is then rebuilt, and counts and a checksum of every record are
    /// read back from the target and compared with the source. Stop every
    /// writer of the source first; webhook deliveries are not copied (let
    /// them finish first).
    #[command(group = clap::ArgGroup::new("direction").required(true))]
    Migrate {
        /// Copy DIR into this database (postgres://user@host:port/database).
        #[arg(long, value_name = "URL", group = "direction")]
        to: Option<String>,
        /// Copy this database into DIR.
        #[arg(long, value_name = "URL", group = "direction")]
        from: Option<String>,
    },
    /// Write a session and its history as a portable JSON document.
    Export {
        #[command(flatten)]
        id: Target,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Recreate a session from an exported document ("-" reads stdin).
    Import { file: PathBuf },
    /// Configure the webhook endpoint.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Deliver queued webhook notifications.
    ///
    /// Session commands only queue notifications (durably, in DIR/outbox or
    /// the database); this sends them: signed (Standard Webhooks), retried
    /// with backoff, every attempt recorded. Runs until Ctrl-C unless
    /// --once is given; only one sender runs per directory at a time. On
    /// PostgreSQL any
    /// number of hosts deliver at once, each claiming what it sends (a
    /// claim whose sender died is taken over after --lease).
    Deliver {
        /// Attempt what is due now, wait for those attempts, and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        delivery: DeliveryArgs,
    },
    /// List webhook deliveries, or show one with every attempt.
    Deliveries {
        /// A delivery's id (its webhook-id, msg_...).
        id: Option<String>,
        /// Only this state: pending, delivered, failed, discarded.
        #[arg(long)]
        state: Option<String>,
        /// Show the newest this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Run agent plugins (WebAssembly components of the agent-plugin world)
    /// in a sandbox, each in its own session namespace.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Send a finished delivery again (same webhook-id), now.
    Redeliver {
        /// The delivery's id (msg_...).
        id: String,
        #[command(flatten)]
        delivery: DeliveryArgs,
    },
}

/// The session a command is about: its id, or its key.
#[derive(Args)]
struct Target {
    /// The session's id (or its key, with --key).
    #[arg(value_name = "SESSION")]
    session: String,
    /// SESSION is the key the session was started with (start --key), not
    /// its id.
    #[arg(long)]
    key: bool,
}

impl From<&Target> for SessionRef {
    fn from(t: &Target) -> Self {
        match t.key {
            true => SessionRef::Key(t.session.clone()),
            false => SessionRef::Id(t.session.clone()),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        SessionRef::from(self).fmt(f)
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run a plugin's `run(task, config)`.
    ///
    /// The plugin sees only the sessions of its namespace (stored in
    /// DIR/plugins/NAMESPACE; use `--dir DIR/plugins/NAMESPACE` to look at
    /// them with the other commands) and nothing else of the machine. A
    /// plugin stopped by a limit has its open sessions marked failed.
    Run {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// The task to hand it.
        #[arg(long)]
        task: String,
        /// Free-form configuration for it (often JSON).
        #[arg(long, default_value = "")]
        config: String,
        /// Let this plugin take over a namespace another plugin worked in
        /// (its sessions included).
        #[arg(long)]
        replace_plugin: bool,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Run a plugin's `resume(session-id)` on a session it left paused.
    ///
    /// The plugin that ran in the session's namespace is used (a copy is
    /// kept there by `plugin run`), unless --plugin names another.
    Resume {
        /// The session to resume.
        session_id: String,
        /// The plugin component (.wasm) to resume it with.
        #[arg(long)]
        plugin: Option<PathBuf>,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
}

#[derive(Args)]
struct SandboxArgs {
    /// Session namespace (default: the plugin file's name).
    #[arg(long)]
    namespace: Option<String>,
    /// Wall-clock time the run may take.
    #[arg(long, default_value = "30s", value_parser = webhook::parse_duration)]
    timeout: std::time::Duration,
    /// Memory the plugin may use, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    memory: u32,
    /// Fuel (roughly, WebAssembly instructions) it may burn; default unbounded.
    #[arg(long)]
    fuel: Option<u64>,
    /// Calls of the session API it may make.
    #[arg(long, default_value_t = 10_000)]
    calls: u64,
}

#[derive(Args)]
struct DeliveryArgs {
    /// Time allowed per request.
    #[arg(long, default_value = "15s", value_parser = webhook::parse_duration)]
    timeout: std::time::Duration,
    /// Delays before retries; after the last, a delivery is given up.
    #[arg(
        long,
        default_value_t = Schedule::core_default(),
        value_parser = parse_schedule,
        value_name = "DELAYS"
    )]
    retry_schedule: Schedule,
    /// How long a delivery claimed by this sender stays its own before
    /// another host may take it over (PostgreSQL); longer than --timeout.
    #[arg(long, default_value = "2m", value_parser = webhook::parse_duration)]
    lease: std::time::Duration,
}

/// A parsed `--retry-schedule`.
#[derive(Clone)]
struct Schedule(Vec<std::time::Duration>);

impl Schedule {
    /// The core's default schedule.
    fn core_default() -> Self {
        let ms = agent_session_core::delivery::DEFAULT_SCHEDULE_MS;
        Self(
            ms.iter()
                .map(|&m| std::time::Duration::from_millis(m))
                .collect(),
        )
    }
}

impl std::fmt::Display for Schedule {
    /// As `parse_schedule` reads it: `5s,5m,30m,2h`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let one = |d: &std::time::Duration| {
            let ms = d.as_millis();
            let whole = |unit: u128| ms > 0 && ms.is_multiple_of(unit);
            match ms {
                _ if whole(3_600_000) => format!("{}h", ms / 3_600_000),
                _ if whole(60_000) => format!("{}m", ms / 60_000),
                _ if whole(1000) => format!("{}s", ms / 1000),
                _ => format!("{ms}ms"),
            }
        };
        let parts: Vec<String> = self.0.iter().map(one).collect();
        f.write_str(&parts.join(","))
    }
}

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    webhook::parse_schedule(text).map(Schedule)
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Set (or replace) the endpoint.
    Set {
        /// http:// or https:// URL.
        url: String,
        /// Signing secret, whsec_ + base64.
        #[arg(long, env = "AGENT_SESSION_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// Notification kinds to send, comma-separated (default: all).
        /// session.started, session.paused, session.resumed,
        /// session.completed, session.failed, session.timed_out
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Keep the endpoint but send nothing.
        #[arg(long)]
        disabled: bool,
    },
    /// Show the endpoint (the secret is masked).
    Show,
    /// Send a signed webhook.test ping to the endpoint once and show the
    /// answer (nothing is queued).
    Test {
        /// Time allowed for the request.
        #[arg(long, default_value = "15s", value_parser = webhook::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Remove the endpoint.
    Clear,
}

#[derive(Args)]
struct FilterArgs {
    /// Only this owner.
    #[arg(long)]
    user: Option<String>,
    /// Only this channel.
    #[arg(long)]
    channel: Option<String>,
    /// Only this mode.
    #[arg(long)]
    mode: Option<String>,
    /// Only this status: active, paused, completed, failed, timeout.
    #[arg(long)]
    status: Option<String>,
    /// Created at or after (RFC 3339, YYYY-MM-DD or epoch ms).
    #[arg(long, value_name = "TIME")]
    created_after: Option<String>,
    /// Created at or before.
    #[arg(long, value_name = "TIME")]
    created_before: Option<String>,
    /// Updated at or after.
    #[arg(long, value_name = "TIME")]
    updated_after: Option<String>,
    /// Updated at or before.
    #[arg(long, value_name = "TIME")]
    updated_before: Option<String>,
}

/// Errors of this command, with their exit codes.
enum Failure {
    Session(SessionError),
    /// A webhook request that did not get a 2xx.
    Undelivered(String),
    /// A plugin returned an error, timed out or trapped.
    Plugin(String),
    Other(anyhow::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Session(e) => Failure::Session(e),
            e => Failure::Other(e.into()),
        }
    }
}

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Self {
        Failure::Session(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn invalid(msg: String) -> Failure {
    Failure::Session(SessionError::InvalidInput(msg))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The sender reports every delivery step; other commands only warnings.
    let default_log = match cli.command {
        Command::Deliver { .. } => "warn,agent_session_host=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENT_SESSION_LOG")
                .unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, kind, message) = match &failure {
                Failure::Session(e) => (exit_code(e), e.code(), e.message().to_owned()),
                Failure::Undelivered(m) => (9, "undelivered", m.clone()),
                Failure::Plugin(m) => (10, "plugin-failed", m.clone()),
                Failure::Other(e) => {
                    let (code, kind) = classify(e);
                    (code, kind, format!("{e:#}"))
                }
            };
            if json {
                eprintln!(
                    "{}",
                    json!({ "error": { "code": kind, "message": message } })
                );
            } else {
                eprintln!("error ({kind}): {}", term(&message));
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(e: &SessionError) -> u8 {
    match e {
        SessionError::NotFound(_) => 3,
        SessionError::InvalidInput(_) => 4,
        SessionError::InvalidTransition(_) => 5,
        SessionError::Conflict(_) => 6,
        SessionError::LimitExceeded(_) => 7,
        SessionError::Storage(_) => 8,
    }
}

/// The exit code and kind of a failure that did not come from the engine:
/// one caused by a session error has that error's; one caused by the
/// filesystem or the store (a root that is not a directory, an unreadable
/// or refused file, a read-only root) is `storage`.
fn classify(e: &anyhow::Error) -> (u8, &'static str) {
    for cause in e.chain() {
        if let Some(s) = cause.downcast_ref::<SessionError>() {
            return (exit_code(s), s.code());
        }
        if let Some(Error::Session(s)) = cause.downcast_ref::<Error>() {
            return (exit_code(s), s.code());
        }
        if cause.is::<std::io::Error>() || cause.is::<agent_session_core::StoreError>() {
            return (8, "storage");
        }
    }
    (1, "error")
}

/// The commands that work on a directory store only.
fn directory_only(c: &Command) -> Option<&'static str> {
    match c {
        Command::Fsck { .. } => Some("fsck"),
        Command::Compact => Some("compact"),
        Command::Migrate { .. } => Some("migrate"),
        Command::Plugin(_) => Some("plugin"),
        _ => None,
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let (host, store, outbox): (SessionHost, Option<Arc<FsStore>>, Arc<dyn Outbox>) =
        match &cli.store {
            None => {
                let (host, store) =
                    SessionHost::open_dir(&cli.dir, Durability::Durable, CacheDir::Default)?;
                let outbox = FsOutbox::open(&cli.dir)
                    .with_context(|| format!("opening the outbox in {}", cli.dir.display()))?;
                (host, Some(store), Arc::new(outbox))
            }
            Some(url) => {
                if let Some(command) = directory_only(&cli.command) {
                    return Err(invalid(format!(
                        "{command} works on a directory store (--dir) only; unset --store \
                         (or AGENT_SESSION_STORE) to run it"
                    )));
                }
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(invalid(
                        "--store takes a postgres:// URL; a directory store is chosen with --dir"
                            .into(),
                    ));
                }
                let (host, outbox) = SessionHost::open_postgres(url, CacheDir::Default)?;
                (host, None, outbox)
            }
        };
    // The directory store, for the commands that need one (refused above
    // with --store).
    let dir_store = || -> Result<&Arc<FsStore>, Failure> {
        store
            .as_ref()
            .ok_or_else(|| invalid("this command needs a directory store (--dir)".into()))
    };
    let out = Output { json: cli.json };
    // Parsed only by the commands that send, so a bad setting in the
    // environment does not stop the others.
    let sender = |timeout, delivery: Option<DeliveryArgs>| -> Result<Sender, Failure> {
        let policy = AddressPolicy::from_list(&cli.webhook_allow.join(","))
            .map_err(|e| invalid(format!("--webhook-allow: {e}")))?;
        let mut config = DeliveryConfig {
            policy,
            timeout,
            ..DeliveryConfig::default()
        };
        if let Some(d) = delivery {
            if d.lease <= d.timeout {
                return Err(invalid(format!(
                    "--lease ({:?}) must be longer than --timeout ({:?}), or an attempt still \
                     in flight could be taken over and made twice",
                    d.lease, d.timeout
                )));
            }
            config.schedule = d.retry_schedule.0;
            config.lease = d.lease;
        }
        Ok(Sender::new(host.clone(), outbox.clone(), config)?)
    };
    match cli.command {
        Command::Fsck { repair } => fsck(&host, dir_store()?, repair, &out)?,
        Command::Migrate { to, from } => migrate(&host, dir_store()?, to, from, &out)?,
        Command::Compact => {
            let (before, after) = dir_store()?
                .compact(agent_session_core::SESSIONS)
                .context("compacting the index")?;
            if out.json {
                out.print_json(
                    &json!({ "index_bytes_before": before, "index_bytes_after": after }),
                );
            } else {
                out!("index: {before} bytes -> {after} bytes");
            }
        }
        Command::Start {
            task,
            key,
            mode,
            user,
            channel,
            max_iterations,
            context,
            quiet,
        } => {
            let s = host.start(StartOptions {
                key,
                task,
                mode,
                user_id: user,
                channel_id: channel,
                max_iterations,
                context: context.map(|c| parse_json("--context", &c)).transpose()?,
            })?;
            if quiet {
                out!("{}", s.id);
            } else {
                out.session(&s);
            }
        }
        Command::Show { id } => {
            let s = host.get(&id)?;
            let duration = host.duration(&id)?;
            if out.json {
                let mut v = serde_json::to_value(&s).map_err(anyhow::Error::from)?;
                v["progress"] = json!(s.progress());
                v["duration_ms"] = json!(duration);
                v["resumable"] = json!(s.is_resumable());
                out.print_json(&v);
            } else {
                out.session(&s);
                out!("progress     {:.1}%", s.progress());
                out!("duration     {}", human_duration(duration));
                out!("resumable    {}", s.is_resumable());
            }
        }
        Command::Events {
            id,
            from,
            limit,
            recent,
        } => {
            if recent {
                let events = host.recent_events(&id)?;
                out.events(&events, None);
            } else {
                let page = host.events(&id, from, limit)?;
                out.events(&page.events, page.next_seq);
            }
        }
        Command::Iterate { id, data } => {
            let data = data.map(|d| parse_json("--data", &d)).transpose()?;
            out.session(&host.iterate(&id, data.as_ref())?);
        }
        Command::ToolCall {
            id,
            name,
            input,
            output,
            duration_ms,
        } => {
            let call = ToolCall {
                name,
                input: parse_json("--input", &input)?,
                output: parse_json("--output", &output)?,
                duration_ms,
            };
            out.events(&[host.record_tool_call(&id, &call)?], None);
        }
        Command::Learn { id, insight, file } => {
            let learning = Learning {
                insight,
                expertise_file: file,
            };
            out.events(&[host.record_learning(&id, &learning)?], None);
        }
        Command::Record { id, kind, data } => {
            let data = parse_json("--data", &data)?;
            out.events(&[host.record_event(&id, &kind, &data)?], None);
        }
        Command::Context { id, set } => match set {
            Some(patch) => {
                let patch = parse_json("--set", &patch)?;
                out.session(&host.update_context(&id, &patch)?);
            }
            None => {
                let r = host.resumption_context(&id)?;
                if out.json {
                    out.print_json(&r);
                } else {
                    out.session(&r.session);
                    out!("resumable    {}", r.resumable);
                    out!("\nrecent events:");
                    out.events(&r.recent_events, None);
                }
            }
        },
        Command::Pause { id, reason } => out.session(&host.pause(&id, reason.as_deref())?),
        Command::Resume { id } => out.session(&host.resume(&id)?),
        Command::Complete { id, result } => {
            let result = result.map(|r| parse_json("--result", &r)).transpose()?;
            out.session(&host.complete(&id, result.as_ref())?);
        }
        Command::Fail { id, error } => out.session(&host.fail(&id, &error)?),
        Command::List {
            filter,
            limit,
            cursor,
        } => {
            let page = host.list(&filter.parse()?, cursor.as_deref(), limit)?;
            // Also with --json (which carries them in "unreadable"): a
            // listing with holes must not pass for a whole one.
            for u in &page.unreadable {
                eprintln!("warning: left out, unreadable: {}", term(u));
            }
            if !page.unreadable.is_empty() {
                eprintln!(
                    "warning: {} session(s) of this page could not be read; \
                     `agent-session fsck` checks them",
                    page.unreadable.len()
                );
            }
            if out.json {
                out.print_json(&page);
            } else {
                print_session_table(&page.sessions);
                if let Some(c) = page.next_cursor {
                    out!("\nmore: --cursor {c}");
                }
            }
        }
        Command::Stats { filter } => {
            let st = host.stats(&filter.parse()?)?;
            if out.json {
                out.print_json(&st);
            } else {
                out!("total               {}", st.total);
                for (status, n) in &st.by_status {
                    out!("  {:<18}{n}", status.as_str());
                }
                out!("by mode");
                for (mode, n) in &st.by_mode {
                    out!("  {:<18}{n}", term(mode));
                }
                out!("average iterations  {:.2}", st.average_iterations);
                out!("success rate        {:.1}%", st.success_rate * 100.0);
            }
        }
        Command::Cleanup {
            older_than,
            dry_run,
        } => {
            let r = host.cleanup(older_than, dry_run)?;
            // Finished webhook deliveries go with the same retention.
            let days = u64::from(older_than.unwrap_or(agent_session_core::DEFAULT_RETENTION_DAYS));
            let cutoff = (chrono::Utc::now().timestamp_millis().max(0) as u64)
                .saturating_sub(days * 86_400_000);
            let deliveries = outbox
                .prune(cutoff, dry_run)
                .context("removing old webhook deliveries")?;
            if out.json {
                let mut v = serde_json::to_value(&r).map_err(anyhow::Error::from)?;
                v["removed_deliveries"] = json!(deliveries);
                out.print_json(&v);
            } else {
                let verb = if r.dry_run { "would remove" } else { "removed" };
                out!("{verb} {} session(s)", r.removed.len());
                for id in &r.removed {
                    out!("  {id}");
                }
                if !deliveries.is_empty() {
                    out!("{verb} {} finished webhook deliveries", deliveries.len());
                }
            }
        }
        Command::Delete { id } => {
            // Deleted by id, so that what is printed is what was deleted.
            let id = match id.key {
                true => host.get(&id)?.id,
                false => id.session,
            };
            host.delete(&id)?;
            if out.json {
                out.print_json(&json!({ "deleted": id }));
            } else {
                out!("deleted {id}");
            }
        }
        Command::Export { id, output } => {
            let doc = host.export(&id)?;
            let text = serde_json::to_string_pretty(&doc).map_err(anyhow::Error::from)?;
            match output {
                Some(path) => std::fs::write(&path, text + "\n")
                    .with_context(|| format!("writing {}", path.display()))?,
                None => out!("{text}"),
            }
        }
        Command::Import { file } => {
            let bytes = read_input(&file, cli.max_input_bytes, "the export document", invalid)?;
            let text = String::from_utf8(bytes).map_err(|e| {
                invalid(format!(
                    "the export document {} is not UTF-8 text ({e})",
                    file.display()
                ))
            })?;
            out.session(&host.import_text(&text)?);
        }
        Command::Webhook(cmd) => match cmd {
            WebhookCommand::Set {
                url,
                secret,
                events,
                disabled,
            } => {
                if !disabled && reqwest_url_ok(&url) {
                    let s = sender(std::time::Duration::from_secs(15), None)?;
                    match runtime()?.block_on(s.check_endpoint(&url)) {
                        Err(EndpointError::Refused(r)) => return Err(invalid(r.to_string())),
                        // Not resolvable now: it may be later, and every
                        // request is checked anyway.
                        Err(e) => eprintln!("warning: {e}; every request checks it again"),
                        Ok(()) => {}
                    }
                }
                let c = host.set_webhook(&WebhookConfig {
                    url,
                    secret,
                    event_kinds: events,
                    enabled: !disabled,
                })?;
                out.webhook(Some(&c));
            }
            WebhookCommand::Show => out.webhook(host.get_webhook()?.as_ref()),
            WebhookCommand::Test { timeout } => {
                if host.get_webhook()?.is_none() {
                    return Err(invalid("no webhook endpoint is set".into()));
                }
                let attempt = runtime()?.block_on(sender(timeout, None)?.test())?;
                if out.json {
                    out.print_json(&attempt);
                } else {
                    print_attempts(std::slice::from_ref(&attempt));
                }
                if let Some(e) = attempt.error {
                    return Err(Failure::Undelivered(e));
                }
            }
            WebhookCommand::Clear => {
                host.clear_webhook()?;
                if out.json {
                    out.print_json(&json!({ "cleared": true }));
                } else {
                    out!("webhook endpoint removed");
                }
            }
        },
        Command::Deliver { once, delivery } => {
            let s = sender(delivery.timeout, Some(delivery))?;
            let rt = runtime()?;
            if once {
                let r = rt.block_on(s.deliver_due())?;
                if out.json {
                    out.print_json(&json!({
                        "delivered": r.delivered,
                        "failed": r.failed,
                        "discarded": r.discarded,
                        "pending": r.pending,
                        "next_due": r.next_due.map(rfc3339),
                    }));
                } else {
                    out!(
                        "delivered {}, failed {}, discarded {}, pending {}",
                        r.delivered,
                        r.failed,
                        r.discarded,
                        r.pending
                    );
                    if let Some(t) = r.next_due {
                        out!("next attempt due at {}", rfc3339(t));
                    }
                }
            } else {
                let from = match &cli.store {
                    Some(_) => "the database's outbox".to_owned(),
                    None => cli.dir.join("outbox").display().to_string(),
                };
                rt.block_on(async {
                    use tokio::signal::unix::{SignalKind, signal};
                    // Listening before saying so: a SIGINT or SIGTERM from
                    // then on stops it after the attempts in flight.
                    let mut int = signal(SignalKind::interrupt())?;
                    let mut term = signal(SignalKind::terminate())?;
                    eprintln!("delivering webhooks from {from} (Ctrl-C to stop)");
                    s.run(async {
                        tokio::select! {
                            _ = int.recv() => {}
                            _ = term.recv() => {}
                        }
                    })
                    .await
                })?;
            }
        }
        Command::Deliveries { id, state, limit } => match id {
            Some(id) => {
                let d = outbox
                    .find(&id)
                    .context("reading the outbox")?
                    .ok_or_else(|| not_found_delivery(&id))?;
                out.delivery(&d);
            }
            None => {
                let state = state.as_deref().map(parse_state).transpose()?;
                let mut all: Vec<Delivery> = outbox
                    .deliveries()
                    .context("reading the outbox")?
                    .into_iter()
                    .filter(|d| state.is_none_or(|s| d.state == s))
                    .collect();
                let older = all.len().saturating_sub(limit);
                let shown: Vec<Delivery> = all.drain(older..).map(masked).collect();
                if out.json {
                    out.print_json(&shown);
                } else {
                    print_delivery_table(&shown);
                    if older > 0 {
                        out!("\n{older} older not shown (--limit)");
                    }
                }
            }
        },
        Command::Plugin(cmd) => run_plugin(cmd, &cli.dir, cli.max_input_bytes, &out)?,
        Command::Redeliver { id, delivery } => {
            let s = sender(delivery.timeout, Some(delivery))?;
            match s.outbox().find(&id).context("reading the outbox")? {
                None => return Err(not_found_delivery(&id)),
                Some(d) if d.state == DeliveryState::Pending => {
                    return Err(Failure::Session(SessionError::InvalidTransition(format!(
                        "delivery {id} is still pending (attempt {} is due at {}); \
                         only a finished delivery can be sent again",
                        d.attempts.len() + 1,
                        rfc3339(d.next_attempt_at)
                    ))));
                }
                Some(_) => {}
            }
            let (d, attempted) = runtime()?.block_on(s.redeliver(&id))?;
            out.delivery(&d);
            if !attempted {
                if !out.json {
                    out!("\nqueued: a running sender will send it");
                }
            } else if d.state != DeliveryState::Delivered {
                let why = d
                    .reason
                    .clone()
                    .or_else(|| d.attempts.last().and_then(|a| a.error.clone()))
                    .unwrap_or_default();
                let next = match d.state {
                    DeliveryState::Pending => format!(
                        "; queued again, next attempt at {} by `agent-session deliver`",
                        rfc3339(d.next_attempt_at)
                    ),
                    _ => String::new(),
                };
                return Err(Failure::Undelivered(format!("{why}{next}")));
            }
        }
    }
    Ok(())
}

fn run_plugin(
    cmd: PluginCommand,
    dir: &std::path::Path,
    max_input: u64,
    out: &Output,
) -> Result<(), Failure> {
    let read = |path: &PathBuf| read_input(path, max_input, "the plugin", Failure::Plugin);
    let stem = |path: &PathBuf| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let not_found = |m: String| Failure::Session(SessionError::NotFound(m));
    let (wasm, namespace, sandbox) = match &cmd {
        PluginCommand::Run {
            plugin,
            sandbox,
            replace_plugin,
            ..
        } => {
            let wasm = read(plugin)?;
            let namespace = sandbox.namespace.clone().unwrap_or_else(|| stem(plugin));
            let kept = PluginRuntime::kept(dir, &namespace, max_input)?;
            if kept.is_some_and(|k| k != wasm) && !replace_plugin {
                return Err(invalid(format!(
                    "namespace {namespace} belongs to another plugin (a different one is kept \
                     there); run this one with another --namespace, or take the namespace \
                     over with --replace-plugin"
                )));
            }
            (wasm, namespace, sandbox)
        }
        PluginCommand::Resume {
            session_id,
            plugin,
            sandbox,
        } => {
            let (namespace, kept) = match &sandbox.namespace {
                Some(ns) => (ns.clone(), PluginRuntime::kept(dir, ns, max_input)?),
                None => match PluginRuntime::find(dir, session_id, CacheDir::Default, max_input)? {
                    Some((ns, wasm)) => (ns, Some(wasm)),
                    None => {
                        return Err(not_found(format!(
                            "no plugin namespace in {} holds session {session_id}",
                            dir.join("plugins").display()
                        )));
                    }
                },
            };
            let wasm = match plugin {
                Some(p) => read(p)?,
                None => kept.ok_or_else(|| {
                    not_found(format!(
                        "no plugin is kept in namespace {namespace}; name one with --plugin"
                    ))
                })?,
            };
            (wasm, namespace, sandbox)
        }
    };
    let limits = PluginLimits {
        timeout: sandbox.timeout,
        memory: (sandbox.memory as usize).saturating_mul(1 << 20),
        fuel: sandbox.fuel,
        calls: sandbox.calls,
    };
    let runtime = PluginRuntime::new(CacheDir::Default)?;
    let plugin = runtime.load(&wasm).map_err(|e| {
        Failure::Plugin(format!(
            "loading the plugin for namespace {namespace}: {e:#}"
        ))
    })?;
    let sessions = PluginRuntime::namespace(dir, &namespace, CacheDir::Default)?;
    if matches!(cmd, PluginCommand::Run { .. }) {
        PluginRuntime::remember(dir, &namespace, &wasm)?;
    }
    let run = match &cmd {
        PluginCommand::Run { task, config, .. } => {
            runtime.run(&plugin, &sessions, task, config, &limits)?
        }
        PluginCommand::Resume { session_id, .. } => {
            runtime.resume(&plugin, &sessions, session_id, &limits)?
        }
    };
    let (kind, text) = match &run.outcome {
        Outcome::Returned(Ok(r)) => ("returned", r.clone()),
        Outcome::Returned(Err(e)) => ("error", e.clone()),
        Outcome::TimedOut(e) => ("timed_out", e.clone()),
        Outcome::Trapped(e) => ("trapped", e.clone()),
    };
    if out.json {
        out.print_json(&json!({
            "namespace": namespace,
            "outcome": kind,
            "result": matches!(run.outcome, Outcome::Returned(Ok(_))).then_some(&text),
            "error": (!matches!(run.outcome, Outcome::Returned(Ok(_)))).then_some(&text),
            "sessions": run.sessions,
            "calls": run.calls,
        }));
    } else if kind == "returned" {
        out!("{}", term(&text));
    }
    match run.outcome {
        Outcome::Returned(Ok(_)) => Ok(()),
        _ => Err(Failure::Plugin(format!("{kind}: {text}"))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?)
}

/// Whether the core will take the URL far enough to be worth checking.
fn reqwest_url_ok(url: &str) -> bool {
    url.starts_with("http") && url::Url::parse(url).is_ok()
}

fn not_found_delivery(id: &str) -> Failure {
    Failure::Session(SessionError::NotFound(format!("no delivery with id {id}")))
}

fn parse_state(s: &str) -> Result<DeliveryState, Failure> {
    serde_json::from_value(json!(s)).map_err(|_| {
        invalid(format!(
            "unknown delivery state {s:?}; expected pending, delivered, failed or discarded"
        ))
    })
}

/// A delivery as shown: the signing secret masked.
fn masked(mut d: Delivery) -> Delivery {
    d.notification.secret = mask(&d.notification.secret);
    d
}

fn mask(secret: &str) -> String {
    let tail: Vec<char> = secret.chars().rev().take(4).collect();
    format!("whsec_…{}", tail.into_iter().rev().collect::<String>())
}

fn print_delivery_table(all: &[Delivery]) {
    if all.is_empty() {
        out!("no deliveries");
        return;
    }
    out!(
        "{:<44}  {:<18}  {:<10}  {:>8}  {:>4}  NEXT / REASON",
        "ID",
        "KIND",
        "STATE",
        "ATTEMPTS",
        "LAST"
    );
    for d in all {
        let last = d.attempts.last().map_or("-".to_owned(), |a| {
            a.status.map_or("err".into(), |s| s.to_string())
        });
        let note = match d.state {
            DeliveryState::Pending => format!("next {}", rfc3339(d.next_attempt_at)),
            _ => d.reason.clone().unwrap_or_default(),
        };
        out!(
            "{:<44}  {:<18}  {:<10}  {:>8}  {:>4}  {}",
            d.id(),
            d.notification.kind,
            d.state.as_str(),
            d.attempts.len(),
            last,
            clip(&note, 60)
        );
    }
}

fn print_attempts(attempts: &[agent_session_host::Attempt]) {
    out!(
        "{:>3}  {:<24}  {:>6}  {:>8}  ERROR",
        "#",
        "TIME",
        "STATUS",
        "TOOK"
    );
    for (i, a) in attempts.iter().enumerate() {
        out!(
            "{:>3}  {:<24}  {:>6}  {:>8}  {}",
            i + 1,
            rfc3339(a.at),
            a.status.map_or("-".into(), |s| s.to_string()),
            format!("{}ms", a.duration_ms),
            term(a.error.as_deref().unwrap_or(""))
        );
    }
}

fn migrate(
    host: &SessionHost,
    dir_store: &Arc<FsStore>,
    to: Option<String>,
    from: Option<String>,
    out: &Output,
) -> Result<(), Failure> {
    let (url, into_db) = match (to, from) {
        (Some(url), None) => (url, true),
        (None, Some(url)) => (url, false),
        _ => return Err(invalid("give one of --to and --from".into())),
    };
    let db = Arc::new(PgStore::connect(&url)?);
    let (source, target): (
        &dyn agent_session_core::Store,
        &dyn agent_session_core::Store,
    ) = if into_db {
        (&**dir_store, &*db)
    } else {
        (&*db, &**dir_store)
    };
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template("copying {spinner} {pos} sessions ({per_sec})")
            .map_err(anyhow::Error::from)?,
    );
    let copied = copy::copy(source, target, |n| bar.set_position(n));
    bar.finish_and_clear();
    let report = copied.map_err(|e| match e {
        copy::CopyError::TargetNotEmpty(_) => {
            invalid(format!("{e}; migrate copies into an empty store"))
        }
        e => Failure::Session(SessionError::Storage(e.to_string())),
    })?;
    // The index is derived: the core rebuilds it from the copied histories.
    let index = if into_db {
        SessionHost::builder(db, Arc::new(MemoryOutbox::new()))
            .build()?
            .rebuild_index(false)?
    } else {
        host.rebuild_index(false)?
    };
    if out.json {
        out.print_json(&json!({
            "direction": if into_db { "to" } else { "from" },
            "copied": report,
            "indexed": index.sessions,
            "unreadable": index.unreadable,
        }));
    } else {
        let (a, b) = if into_db {
            ("the directory", "the database")
        } else {
            ("the database", "the directory")
        };
        out!(
            "copied {} sessions ({} records, {} records of large values) and {} settings documents from {a} to {b}",
            report.sessions,
            report.records,
            report.blob_records,
            report.documents
        );
        out!("verified: counts and checksum {} match", report.checksum);
        out!("indexed {} sessions", index.sessions);
        for u in &index.unreadable {
            out!("not indexed: {}", term(u));
        }
    }
    Ok(())
}

fn fsck(host: &SessionHost, store: &FsStore, repair: bool, out: &Output) -> Result<(), Failure> {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("checking {bar:40} {pos}/{len} sessions ({eta})")
            .map_err(anyhow::Error::from)?,
    );
    let mut report = store
        .check(agent_session_core::SESSIONS, repair, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .context("checking the sessions")?;
    bar.finish_and_clear();
    let config = store
        .check(agent_session_core::CONFIG, repair, |_, _| {})
        .context("checking the settings")?;
    report.damaged.extend(config.damaged);
    report.torn_tails.extend(config.torn_tails);
    let index = if repair {
        host.repair_index_fs(store).map_err(Failure::Other)
    } else {
        host.rebuild_index(true).map_err(Failure::from)
    };
    let index = match index {
        Ok(r) => json!({ "sessions": r.sessions, "stale": r.stale, "unreadable": r.unreadable }),
        Err(Failure::Session(e)) => json!({ "error": e.message() }),
        Err(e) => return Err(e),
    };
    let damaged = !report.damaged.is_empty()
        || index.get("error").is_some()
        || index["unreadable"]
            .as_array()
            .is_some_and(|u| !u.is_empty());
    if out.json {
        out.print_json(
            &json!({ "repair": repair, "store": report, "index": index, "damaged": damaged }),
        );
    } else {
        out!(
            "checked {} sessions, {} records",
            report.checked,
            report.records
        );
        let verb = if repair {
            "cut"
        } else {
            "found (fsck --repair cuts them)"
        };
        out!("torn tails {verb}: {}", report.torn_tails.len());
        for t in &report.torn_tails {
            out!("  {t}");
        }
        for s in &report.dropped_snapshots {
            out!("dropped unreadable snapshot {s}");
        }
        for (entry, why) in &report.damaged {
            out!("DAMAGED {entry}: {why}");
        }
        match index.get("error") {
            Some(e) => out!("index: {e} (fsck --repair rebuilds it)"),
            None => {
                let stale = index["stale"].as_array().map_or(0, Vec::len);
                let verb = if repair { "refreshed" } else { "stale" };
                out!("index: {} sessions, {stale} {verb}", index["sessions"]);
                for u in index["unreadable"].as_array().into_iter().flatten() {
                    out!("UNREADABLE {}", u.as_str().unwrap_or_default());
                }
            }
        }
    }
    if damaged {
        return Err(Failure::Session(SessionError::Storage(
            "damage found (see above); the damaged sessions' histories need a person's attention"
                .into(),
        )));
    }
    Ok(())
}

/// JSON from the command line, by the rules the component applies to
/// every host's values (size, numbers that round-trip exactly).
fn parse_json(what: &str, text: &str) -> Result<Value, Failure> {
    Ok(agent_session_core::validate::json(what, text)?)
}

/// The bytes of a file the user named (`-`: standard input), refused with
/// `bad` before anything is read if it is not a regular file or is larger
/// than `max`; a missing file is `not-found`.
fn read_input(
    path: &std::path::Path,
    max: u64,
    what: &str,
    bad: fn(String) -> Failure,
) -> Result<Vec<u8>, Failure> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let shown = path.display();
    let too_large = || {
        bad(format!(
            "{what} {shown} is larger than {max} bytes (--max-input-bytes)"
        ))
    };
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("cannot read {what} from standard input: {e}")))?;
        return match bytes.len() as u64 > max {
            true => Err(too_large()),
            false => Ok(bytes),
        };
    }
    // Non-blocking, so that opening a FIFO does not wait for a writer
    // before it can be refused.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Failure::Session(SessionError::NotFound(format!(
                "{what} {shown} does not exist"
            ))),
            _ => bad(format!("cannot open {what} {shown}: {e}")),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| bad(format!("cannot read {what} {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(bad(format!(
            "{what} {shown} is not a regular file (a directory, device or pipe is refused)"
        )));
    }
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(meta.len() as usize)
        .map_err(|e| bad(format!("{what} {shown} does not fit in memory: {e}")))?;
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read {what} {shown}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// RFC 3339, a date (midnight UTC), or milliseconds since the epoch.
fn parse_time(what: &str, text: &str) -> Result<u64, Failure> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp_millis()
            })
        });
    match parsed {
        Ok(ms) if ms >= 0 => Ok(ms as u64),
        _ => Err(invalid(format!(
            "{what} {text:?} is not a time; use RFC 3339 (2026-11-28T10:00:00Z), a date (2026-11-28) or epoch milliseconds"
        ))),
    }
}

impl FilterArgs {
    fn parse(self) -> Result<SessionFilter, Failure> {
        let time = |what: &str, v: Option<String>| v.map(|t| parse_time(what, &t)).transpose();
        Ok(SessionFilter {
            status: self
                .status
                .as_deref()
                .map(SessionStatus::parse)
                .transpose()?,
            user_id: self.user,
            channel_id: self.channel,
            mode: self.mode,
            created_after: time("--created-after", self.created_after)?,
            created_before: time("--created-before", self.created_before)?,
            updated_after: time("--updated-after", self.updated_after)?,
            updated_before: time("--updated-before", self.updated_before)?,
        })
    }
}

struct Output {
    json: bool,
}

impl Output {
    fn print_json(&self, v: &impl Serialize) {
        match serde_json::to_string_pretty(v) {
            Ok(text) => out!("{text}"),
            Err(e) => eprintln!("error: cannot print JSON: {e}"),
        }
    }

    fn session(&self, s: &Session) {
        if self.json {
            return self.print_json(s);
        }
        out!("id           {}", s.id);
        out!("task         {}", term(&s.task));
        out!("status       {}", s.status);
        out!("mode         {}", term(&s.mode));
        out!("user         {}", term(s.user_id.as_deref().unwrap_or("-")));
        out!(
            "channel      {}",
            term(s.channel_id.as_deref().unwrap_or("-"))
        );
        out!("iteration    {}/{}", s.iteration, s.max_iterations);
        out!("created      {}", rfc3339(s.created_at));
        out!("updated      {}", rfc3339(s.updated_at));
        if let Some(t) = s.ended_at {
            out!("ended        {}", rfc3339(t));
        }
        if let Some(r) = &s.pause_reason {
            out!("paused for   {}", term(r));
        }
        if let Some(r) = &s.result {
            out!("result       {}", term(&r.to_string()));
        }
        if let Some(e) = &s.error {
            out!("error        {}", term(e));
        }
        if !s.context.is_empty() {
            out!(
                "context      {}",
                term(&Value::Object(s.context.clone()).to_string())
            );
        }
        out!("events       {}", s.event_count);
        out!("version      {}", s.version);
    }

    fn events(&self, events: &[Event], next: Option<u64>) {
        if self.json {
            return self.print_json(&json!({ "events": events, "next_seq": next }));
        }
        out!("{:>5}  {:<24}  {:<12}  DATA", "SEQ", "TIME", "KIND");
        for e in events {
            out!(
                "{:>5}  {:<24}  {:<12}  {}",
                e.seq,
                rfc3339(e.timestamp),
                e.kind,
                clip(&e.data.to_string(), 80)
            );
        }
        if let Some(n) = next {
            out!("\nmore: --from {n}");
        }
    }

    fn delivery(&self, d: &Delivery) {
        let d = masked(d.clone());
        if self.json {
            return self.print_json(&d);
        }
        let n = &d.notification;
        out!("id        {}", n.id);
        out!("kind      {}", n.kind);
        if !n.session_id.is_empty() {
            out!("session   {} (event {})", n.session_id, n.seq);
        }
        out!("url       {}", term(&n.url));
        out!("raised    {}", rfc3339(n.timestamp));
        out!("state     {}", d.state.as_str());
        match (&d.reason, d.state) {
            (Some(r), _) => out!("reason    {}", term(r)),
            (None, DeliveryState::Pending) => {
                out!("next      {}", rfc3339(d.next_attempt_at));
            }
            _ => {}
        }
        out!();
        print_attempts(&d.attempts);
    }

    fn webhook(&self, c: Option<&WebhookConfig>) {
        let masked = c.map(|c| WebhookConfig {
            secret: mask(&c.secret),
            ..c.clone()
        });
        if self.json {
            return self.print_json(&masked);
        }
        match masked {
            None => out!("no webhook endpoint is set"),
            Some(c) => {
                out!("url      {}", term(&c.url));
                out!("secret   {}", c.secret);
                let kinds = if c.event_kinds.is_empty() {
                    "all".to_owned()
                } else {
                    c.event_kinds.join(", ")
                };
                out!("events   {kinds}");
                out!("enabled  {}", c.enabled);
            }
        }
    }
}

fn print_session_table(sessions: &[Session]) {
    if sessions.is_empty() {
        out!("no sessions");
        return;
    }
    out!(
        "{:<36}  {:<9}  {:<10}  {:>9}  {:<10}  {:<10}  {:<24}  TASK",
        "ID",
        "STATUS",
        "MODE",
        "ITER",
        "USER",
        "CHANNEL",
        "UPDATED"
    );
    for s in sessions {
        out!(
            "{:<36}  {:<9}  {:<10}  {:>9}  {:<10}  {:<10}  {:<24}  {}",
            s.id,
            s.status.as_str(),
            clip(&s.mode, 10),
            format!("{}/{}", s.iteration, s.max_iterations),
            clip(s.user_id.as_deref().unwrap_or("-"), 10),
            clip(s.channel_id.as_deref().unwrap_or("-"), 10),
            rfc3339(s.updated_at),
            clip(&s.task, 40)
        );
    }
}

fn clip(s: &str, max: usize) -> String {
    let s = &*term(s);
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Text from a session as it may be shown on a terminal: control
/// characters (which could move the cursor or end a table row) and Unicode
/// bidirectional controls (which could make text read in another order
/// than it is stored, U+202E say) are printed escaped, as `\u{202e}`.
fn term(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return s.into();
    }
    s.chars()
        .map(|c| match unsafe_char(c) {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
}

fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{}.{:03}s", s, ms % 1000),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}
