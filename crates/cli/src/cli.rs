//! The flags, as clap sees them, and their conversion into checked values.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use siyu_store::Location;

/// Siyu (私域): one fan per person across Douyin's public, commercial and private domains.
///
/// Commands that read or write data take --data DIR (the embedded SQLite store, the default) or
/// --database-url postgres://... (PostgreSQL); those that work on one tenant also take
/// --tenant NAME (default: the only tenant).
///
/// New here? `siyu demo` generates a brand, imports it and shows what Siyu sees. The guides:
/// docs/ingest.md (events, files, HTTP), docs/identity.md, docs/layers.md, docs/segments.md,
/// docs/connectors.md; benchmarks in docs/BENCHMARKS.md.
#[derive(Parser, Debug)]
#[command(name = "siyu", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command asked for JSON output (errors then come as JSON too).
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Tenant(TenantArgs {
                command: TenantCommand::Create { json: _, .. } | TenantCommand::Rotate { .. },
            }) => true,
            Command::Tenant(TenantArgs {
                command: TenantCommand::List { json, .. },
            }) => *json,
            Command::Tenant(TenantArgs {
                command: TenantCommand::Set { .. } | TenantCommand::Rules { .. },
            }) => false,
            Command::Import(a) => a.json,
            Command::Demo(a) => a.json,
            Command::Bench(a) => a.json,
            Command::Fan(a) => a.json,
            Command::Identity(a) => a.json,
            Command::Report(a) => a.json,
            // Its output is always JSON, so its errors are too.
            Command::Connector(_) => true,
            Command::Segment(a) => a.json,
            Command::Tag(a) => a.json,
            // `journey apply` always prints one JSON object, so its errors are JSON too.
            Command::Journey(a) => a.json || matches!(a.command, JourneyCommand::Apply { .. }),
            Command::Task(a) => a.json,
            Command::Channel(a) => a.json,
            Command::Team(a) => a.json,
            Command::Agent(a) => a.json,
            Command::Route(a) => a.json,
            Command::Lead(a) => a.json,
            Command::Group(a) => a.json,
            Command::ImportSpend(a) => a.json,
            Command::Ltv(a) => a.json,
            Command::Gen(_) | Command::Serve(_) => false,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API (native and Segment-compatible ingest, Douyin webhooks, fans, reports,
    /// segments, tags, health, metrics) and run the Ocean Engine lead pollers.
    Serve(ServeArgs),
    /// Tenants (brands): create one with its API keys, list them, change settings and layer
    /// rules.
    Tenant(TenantArgs),
    /// Generate realistic synthetic events for one Douyin brand (JSON lines).
    Gen(GenArgs),
    /// Import events from JSON-lines or CSV files (docs/ingest.md); safe to run twice.
    Import(ImportArgs),
    /// Import acquisition spend 投放花费 from a CSV file (date,channel,domain,amount), the
    /// numerator of `siyu report cac`; safe to run again (a date, channel and domain's row is
    /// replaced, not added).
    #[command(name = "import-spend")]
    ImportSpend(ImportSpendArgs),
    /// Generate a brand, import it into the store, and show what Siyu sees.
    Demo(DemoArgs),
    /// Look at one fan, by id or by an identity value: layer, latest events, identities, merge
    /// history, possible duplicates.
    Fan(FanArgs),
    /// Identity resolution: possible duplicates, operator decisions, export, evaluation
    /// (docs/identity.md).
    Identity(IdentityArgs),
    /// Reports: fans per layer and how they moved (docs/layers.md), lead dedup (线索重复率,
    /// docs/identity.md).
    Report(ReportArgs),
    /// Segments: count, export and save the fans an expression selects; saved segments'
    /// members and triggers (docs/segments.md).
    Segment(SegmentArgs),
    /// Tags on fans: by hand, for an expression's fans, or automatic; and their history.
    Tag(TagArgs),
    /// Benchmarks: ingest, readers beside ingest, layers, segments, saved-segment triggers and
    /// identity resolution, against their peers (results in docs/BENCHMARKS.md).
    Bench(BenchArgs),
    /// Connect a tenant to Douyin webhooks and the Ocean Engine lead API (credentials are
    /// stored, never printed; docs/connectors.md).
    Connector(ConnectorArgs),
    /// SOP journeys: apply a journey file (TOML), list, show, pause and resume journeys, their
    /// reports per step and variant, dead letters and their retry, and the send policy (time
    /// zone, quiet hours, daily cap).
    Journey(JourneyArgs),
    /// The staff task inbox journeys fill (task steps, fallbacks): list, claim, complete.
    Task(TaskArgs),
    /// The channels journeys send through (webhook, douyin_im, wecom_robot): set them up, list
    /// them (credentials are stored sealed, never printed), kill and resume them.
    Channel(ChannelArgs),
    /// Lead teams (线索分配): create or change a team with its assignment strategy and service
    /// levels, list them.
    Team(TeamArgs),
    /// The agents (销售/顾问) leads are given to: add, change (capacity, daily cap, hours,
    /// weight, active), list with their load.
    Agent(AgentArgs),
    /// Lead routing rules: which team a new lead goes to, by a segment expression over the
    /// fan; add, list, remove.
    Route(RouteArgs),
    /// Leads (one person, one owner): list, show, log a follow-up, change the state, assign,
    /// claim from the pool.
    Lead(LeadArgs),
    /// Fan groups (粉丝群): open one with its capacity and owner, list them with their
    /// members and activity, show one day by day.
    ///
    /// Groups of one template (模板) fill in order: a journey's invite_group step places each
    /// fan in the template's first group with room (an invitation holds a seat for 3 days or
    /// until the fan joins), and when every one is full the next, "<template> N", is opened
    /// with the capacity and owner of the template's first group (满群自动开新群). Members and
    /// activity come from group_join, group_leave and group_message events naming the group in
    /// props.group_id; a group an event names that Siyu does not know is opened under that
    /// name with the template "external".
    Group(GroupArgs),
    /// Predictive customer lifetime value (客户终身价值): fit the BG/NBD and Gamma-Gamma
    /// models to a customer summary (docs/analytics.md, "Predictive LTV").
    Ltv(LtvArgs),
}

/// Where the data lives.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Data directory of the embedded store (SQLite).
    #[arg(long, env = "SIYU_DATA", default_value = "./siyu-data", global = true)]
    pub data: PathBuf,
    /// PostgreSQL URL (postgres://user@host:5432/db); takes precedence over --data.
    #[arg(long, env = "SIYU_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

impl StoreArgs {
    /// Takes the data directory's lock for a command that writes (SQLite; on PostgreSQL,
    /// `None`: tenants' leases keep servers apart, and a one-shot command writes only the log
    /// and operator tables, which servers take in). A running server holding the directory
    /// is named at once, never waited for and never written beside.
    pub fn lock_for(&self, command: &str) -> anyhow::Result<Option<siyu_store::DirLock>> {
        match self.location()? {
            Location::Sqlite(dir) => Ok(Some(siyu_store::DirLock::acquire(&dir, command)?)),
            Location::Postgres(_) => Ok(None),
        }
    }

    pub fn location(&self) -> anyhow::Result<Location> {
        Ok(match &self.database_url {
            Some(url) if !url.is_empty() => {
                anyhow::ensure!(
                    url.starts_with("postgres://") || url.starts_with("postgresql://"),
                    "--database-url must start with postgres:// (got {:?})",
                    url.split(':').next().unwrap_or("")
                );
                Location::Postgres(url.clone())
            }
            _ => Location::Sqlite(self.data.clone()),
        })
    }
}

/// Which event times are accepted, beyond the 24 h into the future every source allows.
#[derive(Args, Debug, Clone, Copy)]
pub struct TimeArgs {
    /// The earliest event time accepted (RFC 3339); older events are refused with
    /// `timestamp_too_old`.
    #[arg(
        long = "min-timestamp",
        value_name = "TIME",
        env = "SIYU_MIN_TIMESTAMP",
        default_value = "2000-01-01T00:00:00Z",
        value_parser = parse_timestamp
    )]
    pub min_ts: siyu_domain::Millis,
}

fn parse_timestamp(s: &str) -> Result<siyu_domain::Millis, String> {
    siyu_domain::time::parse_rfc3339(s).ok_or_else(|| {
        format!("{s:?} is not an RFC 3339 time with an offset, e.g. 2000-01-01T00:00:00Z")
    })
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "SIYU_ADDR")]
    pub addr: String,
    /// PostgreSQL only: seconds a node's lease on a tenant lasts without renewal (renewed every
    /// third of it). Several `siyu serve` nodes may share one database: each tenant is served
    /// by one node, and a dead node's tenants are taken over within this time.
    #[arg(long, default_value_t = 15, env = "SIYU_LEASE_TTL", value_parser = clap::value_parser!(u64).range(3..=600))]
    pub lease_ttl: u64,
    /// PostgreSQL only: the address other nodes forward requests to this node at (default:
    /// the address it listens on, which must then be reachable from them).
    #[arg(long, env = "SIYU_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// PostgreSQL only: what this node's id starts with (default: the host's name). A server
    /// restarted on the same host under the same name takes its dead predecessor's tenants at
    /// once; any other node's wait for their leases to expire.
    #[arg(long, env = "SIYU_NODE_NAME")]
    pub node_name: Option<String>,
    /// Seconds between rounds of the Ocean Engine lead poller once every tenant is caught up.
    #[arg(long, default_value_t = 60, env = "SIYU_POLL_INTERVAL")]
    pub poll_interval: u64,
    /// Seconds a poll window ends before now, so late-arriving leads are not missed.
    #[arg(long, default_value_t = 60, env = "SIYU_POLL_LAG")]
    pub poll_lag: u64,
    /// Connections open at once; beyond it new connections wait in the listen backlog until
    /// one closes.
    #[arg(long, default_value_t = 1024, env = "SIYU_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Requests per second per API key (a token bucket; over it: 429 with Retry-After);
    /// 0 for no limit.
    #[arg(long, default_value_t = 1000, env = "SIYU_RATE_LIMIT")]
    pub rate_limit: u32,
    /// Requests one API key may send at once before --rate-limit paces it.
    #[arg(long, default_value_t = 2000, env = "SIYU_RATE_BURST",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,
    /// Seconds a client has to send a request's headers (and that an idle kept-alive
    /// connection stays open); then the connection is closed.
    #[arg(long, default_value_t = 10, env = "SIYU_HEADER_TIMEOUT",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a client has to send a request's body once its headers are in; then 408.
    #[arg(long, default_value_t = 30, env = "SIYU_BODY_TIMEOUT",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
}

impl ServeArgs {
    /// The server's limits and timeouts, from the flags (docs/ingest.md, "Limits").
    pub fn server_settings(&self) -> siyu_server::Settings {
        siyu_server::Settings {
            max_connections: self.max_connections as usize,
            header_timeout: std::time::Duration::from_secs(self.header_timeout),
            body_timeout: std::time::Duration::from_secs(self.body_timeout),
            rate: (self.rate_limit > 0).then_some(siyu_server::Rate {
                per_second: f64::from(self.rate_limit),
                burst: self.rate_burst,
            }),
            ..siyu_server::Settings::default()
        }
    }
}

/// A credential given on the command line or in the environment; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretArg(pub String);

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(s.to_string()))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Args, Debug)]
pub struct ConnectorArgs {
    #[command(subcommand)]
    pub command: ConnectorCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
}

#[derive(Subcommand, Debug)]
pub enum ConnectorCommand {
    /// Set the Douyin app's client secret that signs webhook deliveries to
    /// /webhooks/douyin/TENANT; without --client-secret, show whether one is set.
    Douyin {
        /// The client secret (or env SIYU_DOUYIN_CLIENT_SECRET, which keeps it out of `ps`).
        #[arg(long, env = "SIYU_DOUYIN_CLIENT_SECRET", hide_env_values = true)]
        client_secret: Option<SecretArg>,
    },
    /// Set up the Ocean Engine lead poller that `siyu serve` runs; flags not given keep their
    /// value; without flags, show the settings and the poller's position.
    Oceanengine {
        /// The advertiser whose leads are pulled.
        #[arg(long)]
        advertiser_id: Option<String>,
        /// The access token (or env SIYU_OCEANENGINE_ACCESS_TOKEN).
        #[arg(long, env = "SIYU_OCEANENGINE_ACCESS_TOKEN", hide_env_values = true)]
        access_token: Option<SecretArg>,
        /// The lead API's origin (default https://api.oceanengine.com): https and a public host,
        /// unless SIYU_ALLOW_PRIVATE_TARGETS=1.
        #[arg(long)]
        base_url: Option<String>,
        /// Pull leads created from this time on (RFC 3339; default 30 days before set-up).
        #[arg(long)]
        start: Option<String>,
        /// Leads per page (1–100).
        #[arg(long)]
        page_size: Option<u32>,
    },
}

impl ConnectorCommand {
    /// Whether it changes a setting (without flags, it only shows them).
    pub fn changes(&self) -> bool {
        match self {
            ConnectorCommand::Douyin { client_secret } => client_secret.is_some(),
            ConnectorCommand::Oceanengine {
                advertiser_id,
                access_token,
                base_url,
                start,
                page_size,
            } => {
                advertiser_id.is_some()
                    || access_token.is_some()
                    || base_url.is_some()
                    || start.is_some()
                    || page_size.is_some()
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct TenantArgs {
    #[command(subcommand)]
    pub command: TenantCommand,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant; prints {"tenant", "write_key", "admin_key"} once — keep the keys.
    Create {
        /// 1–64 letters, digits, '-' or '_'.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Accepted for symmetry; the output is always JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a tenant's write or admin key; prints {"tenant", "write_key"} (or "admin_key")
    /// once — keep it. The old key stops working at once, or after --grace-seconds.
    Rotate {
        name: String,
        /// Which key: write or admin.
        #[arg(long, value_parser = ["write", "admin"])]
        key: String,
        /// Seconds the old key still works (0–604800, 7 days).
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put a layer rules file (TOML) in force for a tenant; a bad file is refused with the line
    /// and the reason, and the rules in force stay. See docs/layers.md.
    Rules {
        name: String,
        /// The rules file.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a tenant's settings.
    Set {
        name: String,
        /// Domain for custom events whose source cannot say (Segment tracks): public,
        /// commercial or private (公域, 商域, 私域).
        #[arg(long)]
        custom_domain: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The generated brand's size and seed (shared by `gen` and `demo`).
#[derive(Args, Debug, Clone)]
pub struct BrandArgs {
    /// Number of people in the brand's audience.
    #[arg(long, default_value_t = 100_000)]
    pub fans: u64,
    /// Days of activity, ending at --end (demo: ending today).
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Random seed; the same seed, size and end give the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    #[command(flatten)]
    pub brand: BrandArgs,
    /// End of the period (RFC 3339). Default: the start of today (UTC).
    #[arg(long)]
    pub end: Option<String>,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the true person of every identity value (CSV kind,value,person).
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Files to import: .jsonl/.ndjson (native events) or .csv; a .gz suffix is decompressed.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Tenant to import into (default: the only one).
    #[arg(long, env = "SIYU_TENANT")]
    pub tenant: Option<String>,
    /// Input format; by default taken from each file's extension. `oceanengine`: Ocean Engine
    /// lead exports (JSON lines or CSV by extension) with the lead API's field names.
    #[arg(long, value_enum)]
    pub format: Option<crate::import::Format>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub brand: BrandArgs,
    /// Then serve the HTTP API on --addr.
    #[arg(long)]
    pub serve: bool,
    /// Address to listen on with --serve.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Tests: set the demo tenant's quiet hours to none (00:00–00:00), so its sends go at any
    /// hour. Kept in the tenant's policy.
    #[arg(long, hide = true)]
    pub no_quiet_hours: bool,
}

/// The store and the tenant a command works on.
#[derive(Args, Debug, Clone)]
pub struct TenantStoreArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Tenant (default: the only one).
    #[arg(long, env = "SIYU_TENANT", global = true)]
    pub tenant: Option<String>,
}

impl TenantStoreArgs {
    /// Opens the store and picks the tenant; engines are replayed from the log on demand.
    pub fn open(&self) -> anyhow::Result<(siyu_app::App, siyu_store::Tenant)> {
        let store = siyu_store::open(&self.store.location()?, siyu_store::Durability::Full)?;
        let tenant = siyu_app::App::resolve_tenant(&*store, self.tenant.as_deref())?;
        let app = siyu_app::App::start(store, siyu_app::EngineMode::WriteOnly)?;
        Ok((app, tenant))
    }

    /// [`TenantStoreArgs::open`] with the connectors' safeguards from the environment
    /// (`crate::safeguards`): for commands that read or write sealed credentials.
    pub fn open_guarded(&self) -> anyhow::Result<(siyu_app::App, siyu_store::Tenant)> {
        let location = self.store.location()?;
        let guard = crate::safeguards::load(&location)?;
        let store = siyu_store::open(&location, siyu_store::Durability::Full)?;
        let tenant = siyu_app::App::resolve_tenant(&*store, self.tenant.as_deref())?;
        let app = siyu_app::App::start_with(
            store,
            siyu_app::EngineMode::WriteOnly,
            std::sync::Arc::new(siyu_domain::time::SystemClock),
            guard,
        )?;
        Ok((app, tenant))
    }
}

#[derive(Args, Debug)]
pub struct JourneyArgs {
    #[command(subcommand)]
    pub command: JourneyCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum JourneyCommand {
    /// Check a journey file (TOML; `-` reads standard input) and put it in force as a new
    /// version; prints {"journey", "version"} ("unchanged": true when the file is the version
    /// in force). A refused file names its line, field and code, and nothing changes. Runs
    /// already going finish on the version they started on.
    Apply {
        /// The journey file, or `-` for standard input.
        file: PathBuf,
    },
    /// The tenant's journeys: version, paused or active, trigger, number of steps.
    List,
    /// One journey: version, paused, trigger, its steps, and the definition in force.
    Show { name: String },
    /// Pause a journey (the kill switch): it starts no run and moves none until resumed.
    Pause { name: String },
    /// Resume a paused journey: held runs take up where they were.
    Resume { name: String },
    /// A journey's report: per step entered, waiting, sent, delivered, pending, failed,
    /// skipped by reason, fell back, converted, replied; the runs' totals; each variant's
    /// conversion rate with its 95% interval and the share of new entries it gets now.
    Report { name: String },
    /// Messages the channels gave up on (dead letters), newest first, with the channel's last
    /// answer.
    DeadLetters {
        /// Only this journey's.
        #[arg(long)]
        journey: Option<String>,
        /// Dead letters to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back in their channel's queue: these ids, or --all.
    Retry {
        /// Dead letter ids (from `siyu journey dead-letters`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every dead letter of the tenant.
        #[arg(long)]
        all: bool,
    },
    /// The tenant's send policy (time zone, quiet hours, daily cap per fan and channel,
    /// Douyin's private-message rules); `policy set KEY=VALUE...` changes it.
    Policy {
        #[command(subcommand)]
        command: Option<PolicyCommand>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Change some of the send policy: KEY=VALUE..., each value read as JSON when it is JSON,
    /// else as a string (daily_cap=5, time_zone=Asia/Shanghai, quiet_start=22:00,
    /// daily_cap=null for no cap). Keys: time_zone, quiet_start, quiet_end, daily_cap,
    /// douyin_reply_window, douyin_replies_per_message, douyin_proactive_per_day.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_assignment)]
        fields: Vec<(String, serde_json::Value)>,
    },
}

/// `KEY=VALUE`, the value as JSON when it parses as JSON, else as a string.
fn parse_assignment(s: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = s
        .split_once('=')
        .filter(|(k, _)| !k.trim().is_empty())
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE (e.g. daily_cap=5)"))?;
    let value = serde_json::from_str(value)
        .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    Ok((key.trim().to_string(), value))
}

#[derive(Args, Debug)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub command: TaskCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Staff tasks, oldest first: id, team, state, agent, due time (overdue marked), text.
    List {
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
        /// Only those this agent claimed.
        #[arg(long)]
        agent: Option<String>,
        /// Only tasks in this state.
        #[arg(long, value_parser = ["open", "claimed", "done"])]
        state: Option<String>,
        /// Tasks to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Claim an open task for an agent.
    Claim {
        id: i64,
        /// Who takes it.
        #[arg(long)]
        agent: String,
    },
    /// Complete a task with its outcome (recorded on the fan as an x_journey_task_done event,
    /// which journeys can react to).
    Done {
        id: i64,
        /// Who did it.
        #[arg(long)]
        agent: String,
        /// What came of it (1–1000 characters).
        #[arg(long)]
        outcome: String,
    },
}

#[derive(Args, Debug)]
pub struct ChannelArgs {
    #[command(subcommand)]
    pub command: ChannelCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The channels, as commands name them.
pub const CHANNEL_KINDS: [&str; 3] = ["webhook", "douyin_im", "wecom_robot"];

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Set up a channel, or change some of its settings (flags not given keep their value);
    /// credentials are stored sealed and never printed.
    Set {
        #[command(subcommand)]
        channel: ChannelSet,
    },
    /// Every channel: set up or not, killed or not, its concurrency and timeout, where it
    /// sends (never a credential).
    List,
    /// The kill switch: nothing is sent through the channel until it is resumed (messages
    /// wait in its queue).
    Kill {
        #[arg(value_parser = CHANNEL_KINDS)]
        kind: String,
    },
    /// Turn a channel's kill switch off: its queue is delivered again.
    Resume {
        #[arg(value_parser = CHANNEL_KINDS)]
        kind: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ChannelSet {
    /// The tenant's own HTTPS endpoint: each message is POSTed with an Idempotency-Key and
    /// an X-Siyu-Signature (HMAC-SHA256 of the body with the secret).
    Webhook {
        /// Where messages are posted (https and a public host, unless
        /// SIYU_ALLOW_PRIVATE_TARGETS=1).
        #[arg(long)]
        url: Option<String>,
        /// The signing secret (or env SIYU_WEBHOOK_SECRET, which keeps it out of `ps`).
        #[arg(long, env = "SIYU_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<SecretArg>,
        #[command(flatten)]
        limits: ChannelLimits,
    },
    /// Douyin private messages (抖音私信) sent as the tenant's business account.
    #[command(name = "douyin_im", alias = "douyin-im")]
    DouyinIm {
        /// The business account's access token, scope im.direct_message (or env
        /// SIYU_DOUYIN_ACCESS_TOKEN).
        #[arg(long, env = "SIYU_DOUYIN_ACCESS_TOKEN", hide_env_values = true)]
        access_token: Option<SecretArg>,
        /// The business account's open_id: messages are sent as it.
        #[arg(long)]
        open_id: Option<String>,
        /// The Open Platform's origin (default https://open.douyin.com).
        #[arg(long)]
        base: Option<String>,
        #[command(flatten)]
        limits: ChannelLimits,
    },
    /// A WeCom group robot (企业微信群机器人), at most 20 messages a minute.
    #[command(name = "wecom_robot", alias = "wecom-robot")]
    WecomRobot {
        /// The robot's webhook URL with its key (or env SIYU_WECOM_ROBOT_URL: the key is the
        /// robot's credential), e.g. https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY.
        #[arg(long, env = "SIYU_WECOM_ROBOT_URL", hide_env_values = true)]
        url: Option<SecretArg>,
        #[command(flatten)]
        limits: ChannelLimits,
    },
}

/// How hard a channel is driven.
#[derive(Args, Debug, Clone, Copy)]
pub struct ChannelLimits {
    /// Deliveries in flight at once (1–256).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// A request's whole time in milliseconds (100–120000; default 10000).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

#[derive(Args, Debug)]
pub struct TeamArgs {
    #[command(subcommand)]
    pub command: TeamCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum TeamCommand {
    /// Create a team, or change one of that name: how it hands out leads and its service
    /// levels. Every flag is checked before anything is stored.
    Create {
        /// The team's name (letters, digits, "_", "-", ".").
        name: String,
        /// How new leads are given to the team's agents: round_robin (default), least_loaded
        /// (fewest open leads) or weighted (by --weight).
        #[arg(long)]
        strategy: Option<String>,
        /// How soon an assigned lead must be first contacted (2h, 30m) before it escalates.
        #[arg(long)]
        first_contact: Option<String>,
        /// A lead nobody followed up for this long goes back to the pool (3d).
        #[arg(long)]
        recycle_after: Option<String>,
        /// The agent an overdue lead is escalated to.
        #[arg(long)]
        lead_agent: Option<String>,
        /// What an overdue first contact does: reassign (to another agent, default) or task
        /// (a staff task for the lead agent).
        #[arg(long)]
        escalate: Option<String>,
    },
    /// The teams: strategy, service levels, escalation and their agents.
    List,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What an agent can take.
#[derive(Args, Debug, Clone, Default)]
pub struct AgentLimits {
    /// Open leads the agent can hold at once (0 to 1000000; default: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pub capacity: Option<i64>,
    /// New leads a day at most (0 to 1000000; default: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pub daily_cap: Option<i64>,
    /// Working hours in the tenant's time zone, HH:MM-HH:MM (09:00-21:00), or "all"; outside
    /// them the agent is passed over.
    #[arg(long, allow_hyphen_values = true)]
    pub hours: Option<String>,
    /// The agent's share under the weighted strategy (1 to 1000; default 1).
    #[arg(long, allow_hyphen_values = true)]
    pub weight: Option<i64>,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Add an agent to a team (an agent of that name is changed).
    Add {
        /// The agent's name (letters, digits, "_", "-", ".").
        name: String,
        /// The team the agent works in.
        #[arg(long)]
        team: String,
        #[command(flatten)]
        limits: AgentLimits,
    },
    /// Change an agent: flags not given keep their value. A deactivated agent's open leads,
    /// or those of one moved to another team, go back to routing.
    Set {
        name: String,
        /// Move the agent to this team.
        #[arg(long)]
        team: Option<String>,
        #[command(flatten)]
        limits: AgentLimits,
        /// Active (true) or deactivated (false): a deactivated agent gets no new leads.
        #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true", conflicts_with = "inactive")]
        active: Option<bool>,
        /// Deactivate the agent (--active false).
        #[arg(long)]
        inactive: bool,
    },
    /// The agents: team, limits, hours, weight, active, open leads and today's count.
    List,
}

#[derive(Args, Debug)]
pub struct RouteArgs {
    #[command(subcommand)]
    pub command: RouteCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RouteCommand {
    /// Append a routing rule: a new lead whose fan matches the expression goes to the team
    /// (rules are tried in order, the first match wins). Every tag it names must exist.
    Add {
        /// A segment expression over the fan (tag("vip"), layer = "customer", …).
        #[arg(long = "if", value_name = "EXPRESSION")]
        expr: String,
        /// The team the lead goes to.
        #[arg(long)]
        team: String,
    },
    /// The routing rules in the order they are tried.
    List,
    /// Remove a routing rule by its id (from `siyu route list`).
    Remove { id: i64 },
}

#[derive(Args, Debug)]
pub struct LeadArgs {
    #[command(subcommand)]
    pub command: LeadCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum LeadCommand {
    /// Leads, newest first: state, owner (or the pool), team, channel, arrivals; --json prints
    /// a JSON array of leads with their arrivals.
    List {
        /// Only leads in this state (new, contacted, qualified, won, lost, invalid).
        #[arg(long)]
        state: Option<String>,
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
        /// Only leads without an owner (the pool).
        #[arg(long)]
        pool: bool,
        /// Leads to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One lead: its fields, every arrival (repeats too) and its log.
    Show { id: i64 },
    /// Log a follow-up: a call, message or visit is the first contact and moves a new lead
    /// to contacted; a note is only noted.
    Log {
        id: i64,
        /// call, message, visit or note.
        #[arg(long)]
        kind: String,
        /// What came of it.
        #[arg(long)]
        result: Option<String>,
        /// Who followed up.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Move a lead to a state, in the allowed order (new → contacted → qualified → won; lost
    /// or invalid from any open state).
    State {
        id: i64,
        /// The state to move to.
        state: String,
        /// Who changed it.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Give a lead to an agent (an operator's choice; the agent must be active).
    Assign {
        id: i64,
        /// Who gets it.
        #[arg(long)]
        agent: String,
    },
    /// An agent claims a lead from the pool (within their daily cap).
    Claim {
        id: i64,
        /// Who takes it.
        #[arg(long)]
        agent: String,
    },
    /// The leads report: leads by state, by channel and by agent, time to first contact
    /// (p50/p90) and the share in time, and the repeat leads each team absorbed (the
    /// follow-ups dedup saved).
    Report,
}

#[derive(Args, Debug)]
pub struct ImportSpendArgs {
    /// The CSV file: the header `date,channel,domain,amount`, then one row per local date
    /// (YYYY-MM-DD, the tenant's time zone), channel (qianchuan, live, ...: the names lead
    /// forms' props.channel use, so CAC per lead matches), domain (public, commercial or
    /// private) and amount (yuan, at most two decimals, 0 or more). The whole file is checked
    /// first: a bad line is refused with its number and column, and nothing is stored.
    pub file: std::path::PathBuf,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LtvArgs {
    #[command(subcommand)]
    pub command: LtvCommand,
    /// Print one JSON document instead of the table (errors come as JSON too).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum LtvCommand {
    /// Fit BG/NBD (will a customer buy again, and how often) and, with a monetary_value
    /// column, Gamma-Gamma (what a purchase is worth) to a customer summary, by maximum
    /// likelihood.
    ///
    /// FILE is a CSV with a header, one customer a row, in the BTYD ("buy till you die")
    /// layout: frequency (repeat purchases, not counting the first; a whole number), recency
    /// (the time of the last repeat purchase, counted from the first purchase; 0 without
    /// one), T (the time from the first purchase to the end of observation) and, optionally,
    /// monetary_value (the mean value of the repeat purchases; 0 or empty without one). Times
    /// are in whatever unit the file uses — days, weeks — as long as it is one unit
    /// throughout; alpha comes out in that unit, v in the file's money unit. Other columns
    /// (an ID) are ignored.
    ///
    /// Printed: for each model its parameters (BG/NBD: r, alpha, a, b; Gamma-Gamma: p, q,
    /// v), the full log-likelihood at them, the customers it was fitted to (Gamma-Gamma: those
    /// with frequency > 0), the repeat customers, the distinct rows after collapsing
    /// identical customers and the optimiser's iterations. A bad row is refused with its
    /// line and column (error[invalid_summary]); data that cannot identify a model gives
    /// error[no_repeat_buyers], error[not_identified] or error[did_not_converge].
    Fit {
        /// The customer summary (CSV with the header frequency,recency,T[,monetary_value]).
        file: PathBuf,
    },
    /// Predict the tenant's buyers: fits BG/NBD and Gamma-Gamma to every fan with an order
    /// (in local days: frequency = repeat purchase days, recency = first to last purchase
    /// day, T = first purchase day to --as-of; amounts in yuan), then per buyer the
    /// probability they are alive (will buy again), their expected orders and revenue over
    /// the next --days days; printed by layer and by acquisition cohort (the month of the
    /// fan's first event) with the fitted parameters. Fans who never ordered are not
    /// modelled; buyers whose first order is today are left out (no time observed).
    Predict {
        /// Days ahead (1 to 3650).
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Count orders up to this time (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
        #[command(flatten)]
        at: TenantStoreArgs,
    },
}

#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Open a fan group, empty: its members come from group_join events naming it
    /// (props.group_id: the group's name). Every flag is checked before anything is stored.
    Create {
        /// The group's name, unique in the tenant (1 to 100 characters): what events name.
        name: String,
        /// The template the group belongs to (default: its own name); groups of one template
        /// fill in order and overflow into "<template> N".
        #[arg(long)]
        template: Option<String>,
        /// Members at most (1 to 100000; default 500).
        #[arg(long, allow_hyphen_values = true)]
        capacity: Option<i64>,
        /// The agent who owns the group (see `siyu agent list`).
        #[arg(long)]
        owner: Option<String>,
    },
    /// The groups in the order they were opened: template, members of capacity, owner,
    /// members active in the last 7 days, and joins, leaves and messages over 30 days.
    List,
    /// One group, by its id or its name: its facts and its last 30 days, day by day.
    Show {
        /// The group's id or name.
        #[arg(value_name = "ID_OR_NAME")]
        key: String,
    },
}

#[derive(Args, Debug)]
pub struct FanArgs {
    #[command(subcommand)]
    pub command: FanCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum FanCommand {
    /// A fan by id (a merged-away id shows the fan that absorbed it).
    Show { id: i64 },
    /// The fans holding an identity value, normalized as at ingest
    /// (e.g. --kind phone --value '138 0013 8000').
    Lookup {
        /// douyin_open_id, douyin_union_id, wecom_external_id, wechat_union_id, phone, email,
        /// lead_id, user_id or anonymous_id.
        #[arg(long)]
        kind: String,
        /// The value as any source would send it.
        #[arg(long)]
        value: String,
    },
}

#[derive(Args, Debug)]
pub struct IdentityArgs {
    #[command(subcommand)]
    pub command: IdentityCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Pairs of fans kept apart by the guard (e.g. a shared family phone) for review.
    Duplicates,
    /// Two fans are one person: merge them.
    Confirm { a: i64, b: i64 },
    /// Two fans are different people: never merge or suggest them again.
    Distinct { a: i64, b: i64 },
    /// Undo the merge that absorbed fan FROM; everything derived is recomputed from the events.
    Undo { from: i64 },
    /// Write every identity value with its fan: CSV kind,value,fan_id.
    Export {
        /// The CSV file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Score fans against a truth file from `siyu gen --truth` (pairwise precision and recall).
    Eval {
        /// The truth file (CSV kind,value,person).
        #[arg(long)]
        truth: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct SegmentArgs {
    #[command(subcommand)]
    pub command: SegmentCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SegmentCommand {
    /// How many fans EXPR selects, e.g.
    /// 'layer >= favorable and count(live_watch, 7d) >= 2 and not count(order, 30d) > 0'.
    Count {
        /// The segment expression (quote it for the shell).
        expr: String,
        /// As of this time (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
        /// Also list this many of the fans.
        #[arg(long, default_value_t = 0)]
        sample: usize,
    },
    /// Write every fan EXPR selects to a CSV file (fan_id, layer, engagement_30d, orders_180d,
    /// identities).
    Export {
        /// The segment expression (quote it for the shell).
        expr: String,
        /// The CSV file to write.
        #[arg(long)]
        out: PathBuf,
        /// As of this time (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Save a segment: its members are kept live by `siyu serve`, each entry and exit stored as
    /// a segment_entered / segment_exited trigger.
    Save {
        /// The segment's name (unique in the tenant).
        name: String,
        /// The segment expression (quote it for the shell).
        expr: String,
        /// Members carry this tag (an automatic tag).
        #[arg(long)]
        tag: Option<String>,
    },
    /// Saved segments with their member counts.
    List,
    /// One saved segment (by name or id) and its count.
    Show { segment: String },
    /// A page of a saved segment's members.
    Members {
        /// The saved segment's name or id.
        segment: String,
        /// Members to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Members to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete a saved segment (its recorded triggers stay).
    Delete { segment: String },
    /// Recorded segment_entered / segment_exited triggers, oldest first.
    Triggers {
        /// Only those with an id above this.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Only this segment (name or id).
        #[arg(long)]
        segment: Option<String>,
        /// Triggers to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Args, Debug)]
pub struct TagArgs {
    #[command(subcommand)]
    pub command: TagCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum TagCommand {
    /// Add TAG to one fan (--fan) or to every fan an expression selects (--expr).
    Add {
        tag: String,
        #[arg(long, conflicts_with = "expr", required_unless_present = "expr")]
        fan: Option<i64>,
        #[arg(long)]
        expr: Option<String>,
    },
    /// Remove TAG from one fan (--fan) or from every fan an expression selects (--expr).
    Remove {
        tag: String,
        #[arg(long, conflicts_with = "expr", required_unless_present = "expr")]
        fan: Option<i64>,
        #[arg(long)]
        expr: Option<String>,
    },
    /// An automatic tag: fans carry TAG while EXPR selects them (a saved segment `tag:TAG`).
    Auto { tag: String, expr: String },
    /// A fan's tags now and their history.
    History { fan: i64 },
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
    #[command(flatten)]
    pub at: TenantStoreArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Fans per layer 潜在/路人/好感/真爱 (JSON keys potential, passerby, favorable, true_love).
    Layers {
        /// As of this time (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// How fans moved between layers from --from to --to, including fans new in between.
    Flow {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// The layer funnel 转化漏斗: of the fans in each layer at --from, how many stood in the
    /// next layer or above at --to (潜在→路人, 路人→好感, 好感→真爱), with the layer counts at
    /// both ends and the fans new in between. Default: the 30 days up to now.
    Funnel {
        /// The period's start (RFC 3339); default 30 days before --to.
        #[arg(long)]
        from: Option<String>,
        /// The period's end (RFC 3339); default now.
        #[arg(long)]
        to: Option<String>,
    },
    /// Three-domain attribution 三域归因 of the orders placed from --from to --to: orders and
    /// revenue by the domain (公域 public, 商域 commercial, 私域 private) of the buyer's first
    /// touch, of the last touch before each order, and linear (each touch of the 30 days
    /// before the order gets an equal share); and the share of orders whose path crossed
    /// domains. Touches are everything a fan did but orders, refunds, the brand's own
    /// messages and ads merely shown (docs/analytics.md).
    Attribution {
        /// Orders at or after this time (RFC 3339); default 30 days before --to.
        #[arg(long)]
        from: Option<String>,
        /// Orders before this time (RFC 3339); default now.
        #[arg(long)]
        to: Option<String>,
    },
    /// Historical lifetime value 生命周期价值: revenue per fan (orders less refunds) by
    /// acquisition cohort (the local month of the fan's first event), by first-touch domain
    /// and by layer, with buyers and the repeat-purchase rate 复购率 (buyers with two orders
    /// or more, over buyers).
    Ltv {
        /// Count events up to this time (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Weekly cohort retention 留存: fans grouped by the local week (Monday first) of their
    /// first activity (any touch or order), and the share of each cohort active in each week
    /// after; weeks not over by --as-of are left out.
    Retention {
        /// Cohorts first seen at or after this time (RFC 3339); default --weeks weeks before
        /// --to.
        #[arg(long)]
        from: Option<String>,
        /// Cohorts first seen before this time (RFC 3339); default now.
        #[arg(long)]
        to: Option<String>,
        /// Count activity up to this time (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
        /// Weeks followed per cohort (1 to 52).
        #[arg(long, default_value_t = 12)]
        weeks: usize,
    },
    /// Acquisition cost 获客成本 (CAC) from --from to --to, by channel and by first-touch
    /// domain: the spend imported for the local days of the period (`siyu import-spend`)
    /// over the new followers (fans whose first follow fell in the period) and over the
    /// unique leads (people whose first lead form fell in it, deduplicated across
    /// channels); repeat leads are shown, not counted as acquired.
    Cac {
        /// The period's start (RFC 3339); default 30 days before --to.
        #[arg(long)]
        from: Option<String>,
        /// The period's end (RFC 3339); default now.
        #[arg(long)]
        to: Option<String>,
    },
    /// Leads, unique people, repeat leads and the repeat ratio per channel, and how channels
    /// overlap.
    Dedup {
        /// Only leads at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Only leads before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
    /// Print only the result, as JSON (no progress on stderr).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Import, HTTP ingest and raw SQLite inserts of the same generated events, in one run.
    Ingest {
        /// Number of events to generate and ingest.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Also measure PostgreSQL at this URL (a fresh schema is created and dropped).
        #[arg(long, env = "SIYU_BENCH_DATABASE_URL")]
        postgres: Option<String>,
        /// Events per HTTP request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Analytics: build the engine from a generated brand, then time every report of
    /// docs/analytics.md on it (median of 5: funnel, flow with its daily series, attribution,
    /// acquisition, LTV, retention, the predictive fit); with --duckdb, attribution, LTV and
    /// retention in SQL (bench/analytics_duckdb.py) over the same events, figures compared.
    Analytics {
        /// People in the generated brand.
        #[arg(long, default_value_t = 1_000_000)]
        fans: u64,
        /// Days of activity.
        #[arg(long, default_value_t = 240)]
        days: u32,
        /// Also run DuckDB (needs `pip install duckdb`).
        #[arg(long)]
        duckdb: bool,
        /// Keep the events file for DuckDB here (default: a temporary folder).
        #[arg(long)]
        work: Option<std::path::PathBuf>,
    },
    /// Layers: build the engine from a generated brand, then recompute every fan's layer as of
    /// its end; with --duckdb, the same rules in SQL (bench/layers_duckdb.py) over the same
    /// events, counts compared.
    Layers {
        /// People in the generated brand.
        #[arg(long, default_value_t = 1_000_000)]
        fans: u64,
        /// Days of activity.
        #[arg(long, default_value_t = 240)]
        days: u32,
        /// Also run DuckDB (needs `pip install duckdb`).
        #[arg(long)]
        duckdb: bool,
        /// Where to write the events for DuckDB (default: a temp dir).
        #[arg(long)]
        work: Option<PathBuf>,
    },
    /// Segments: a five-clause expression over a generated brand, as of the live clock, as of
    /// an earlier instant (with today's path and the whole-snapshot path it replaced) and as of
    /// each of the last 30 days (a daily series); with --duckdb, the same query in SQL
    /// (bench/segments_duckdb.py) over the same events, as of the end and as of 15 days
    /// earlier, counts compared.
    Segments {
        /// People in the generated brand.
        #[arg(long, default_value_t = 1_000_000)]
        fans: u64,
        /// Days of activity.
        #[arg(long, default_value_t = 240)]
        days: u32,
        /// The expression (default: the one bench/segments_duckdb.py holds in SQL).
        #[arg(long, default_value = crate::bench::BENCH_SEGMENT)]
        expr: String,
        /// Also run DuckDB (needs `pip install duckdb`).
        #[arg(long)]
        duckdb: bool,
        /// Where to write the events for DuckDB (default: a temp dir).
        #[arg(long)]
        work: Option<PathBuf>,
    },
    /// Saved segments under load: HTTP ingest throughput with none and with --segments saved
    /// segments on the same events, then --probes single events timed from POST to
    /// acknowledgement and from acknowledgement to their segment_entered trigger.
    Triggers {
        /// About this many generated events.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Saved segments in the second run.
        #[arg(long, default_value_t = 100)]
        segments: usize,
        /// Single events timed after the load.
        #[arg(long, default_value_t = 300)]
        probes: usize,
    },
    /// Readers beside ingest: HTTP ingest throughput into a fresh server alone, then into
    /// another fresh server while --readers threads loop over the layers report, a fan page,
    /// stats and a segment preview until the ingest ends; both rates (medians of --rounds),
    /// their ratio, and every read's latency by endpoint. A reader answer other than 200 fails the bench.
    Readers {
        /// Number of events to generate and ingest (each run).
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Events per HTTP request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Concurrent HTTP ingest clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Reader threads, each with its own connection, reading without pause.
        #[arg(long, default_value_t = 4)]
        readers: usize,
        /// Rounds of the two phases (alone, beside readers), each on fresh servers; the
        /// report's rates are the medians over the rounds.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// SOP journeys end to end: --fans fans through a five-step journey (tag, branch, send by
    /// webhook to a local receiver, tag, exit) from a cold start; event → webhook latency at
    /// --rate segment entries a second; memory per fan waiting on a one-day wait and the
    /// restart with them waiting; Thompson sampling on a 3% / 6% population.
    Journeys {
        /// Fans entering the five-step journey.
        #[arg(long, default_value_t = 100_000)]
        fans: u64,
        /// Seconds of the latency run.
        #[arg(long, default_value_t = 20)]
        latency_seconds: u64,
        /// Segment entries a second in the latency run.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Fans left waiting on a one-day wait.
        #[arg(long, default_value_t = 100_000)]
        waiting: u64,
        /// Also run throughput and latency on PostgreSQL at this URL (a fresh schema is
        /// created and dropped).
        #[arg(long, env = "SIYU_BENCH_DATABASE_URL")]
        postgres: Option<String>,
    },
    /// Lead routing end to end: --leads lead forms (a --repeats share from people who left
    /// one before, through another channel) routed by the lead worker across --agents agents
    /// of one round-robin team, a tenth of them off hours and a tenth with a capacity of 50;
    /// assignments per second, round robin's fairness, and the second follow-ups the repeats
    /// created (0 is the point of dedup).
    Leads {
        /// Lead forms taken in.
        #[arg(long, default_value_t = 100_000)]
        leads: u64,
        /// Agents of the team (at least 10).
        #[arg(long, default_value_t = 200)]
        agents: u64,
        /// The share of forms from people who already left one.
        #[arg(long, default_value_t = 0.3)]
        repeats: f64,
        /// Also run on PostgreSQL at this URL (a fresh schema is created and dropped).
        #[arg(long, env = "SIYU_BENCH_DATABASE_URL")]
        postgres: Option<String>,
    },
    /// Predictive LTV: a seeded synthetic customer summary (the BG/NBD process with
    /// Gamma-Gamma monetary values, times in whole days), then the BG/NBD and Gamma-Gamma
    /// fits timed (fit only, not the generation); prints customers, distinct rows,
    /// seconds and the parameters. --write saves the summary as CSV for
    /// bench/ltv_lifetimes.py to fit the same data.
    Ltv {
        /// Customers in the summary.
        #[arg(long, default_value_t = 1_000_000)]
        customers: u64,
        /// The simulator's seed.
        #[arg(long, default_value_t = 15)]
        seed: u64,
        /// Also write the summary here (frequency,recency,T,monetary_value).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Identity resolution alone: events with two identities each (an open id and a phone,
    /// lead id, union id or WeCom id), resolved into fans; time and memory per value.
    Identity {
        /// Number of events (each carries two identity values).
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        /// Number of people behind them.
        #[arg(long, default_value_t = 1_000_000)]
        people: u64,
    },
}

/// Parses an RFC 3339 flag value, naming the flag when it is wrong.
pub fn parse_time(flag: &str, value: &str) -> anyhow::Result<i64> {
    siyu_domain::time::parse_rfc3339(value).with_context(|| {
        format!("{flag} {value:?} is not an RFC 3339 time such as 2026-10-31T00:00:00Z")
    })
}
