//! Command-line interface (clap derive). Doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::names::{parse_subject_list, Size, SubjectPattern, TenantName, UserName};
use crate::tenant::AuthKind;

/// Tenant management for natsd: accounts, users, permissions and credentials.
#[derive(Debug, Parser)]
#[command(
    name = "manage",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Deployment root holding config/, .credentials/ and .env (default: current directory).
    #[arg(long, global = true, env = "MANAGE_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true, conflicts_with = "json")]
    pub quiet: bool,
    /// Answer yes to confirmations (for scripts).
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// When to use colours (NO_COLOR is honoured in `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Hide spinners.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

/// `--color`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colours on a terminal unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// First-time setup: config/nats.conf, .env with a generated NATS_SYS_PASSWORD,
    /// .credentials/, the system account. Never overwrites an existing secret. With --nodes,
    /// also the cluster's description and node files, without starting anything.
    Init(InitArgs),
    /// Start natsd in the background and wait until it is healthy; with --nodes, a local
    /// nats-server cluster (config/cluster.toml), or the nodes of the deployment's cluster that
    /// are not running.
    Up(UpArgs),
    /// Stop natsd, or the cluster's nodes on this machine.
    Down(DownArgs),
    /// Whether natsd runs: pid, version, uptime, connections, tenants; every node of a cluster.
    Status,
    /// Create a tenant (account + admin user) with JetStream limits (default 64MB, 5GB).
    AddTenant(AddTenantArgs),
    /// Add a user to a tenant; without lists it has full access inside the tenant.
    AddUser(AddUserArgs),
    /// List tenants, users and permissions (with live usage when natsd runs).
    List,
    /// Show connection details of a tenant's admin user, or of one user.
    Show(TenantUserArgs),
    /// Remove a user from a tenant (closes its connections).
    RemoveUser(RemoveUserArgs),
    /// Remove a tenant and all its users.
    RemoveTenant(TenantArgs),
    /// Connect with the stored credentials and check every permission.
    Test(TenantUserArgs),
    /// Rebuild config/auth.conf, validate it, and reload the running natsd.
    Reload,
    /// Give a user a new password, or an NKEY user a new key pair; the old one stops working
    /// at once.
    Rotate(RotateArgs),
    /// Move this deployment's tenants and their JetStream data (streams with their messages,
    /// Key-Value and object buckets, durable consumers and their positions) into another
    /// deployment, typically a nats-server cluster; verifies counts and digests, safe to rerun.
    Migrate(MigrateArgs),
    /// Check the deployment after a crash or a hand edit: tenant files, credentials, auth.conf,
    /// the running server's configuration, file modes, leftovers. Exit 1 on problems.
    Check(CheckArgs),
}

/// `migrate`
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The deployment to move into (its root directory: config/, .env), set up and running,
    /// e.g. made with `./manage --config-dir DIR up --nodes 3`.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Replicas of every stream on the target (default: 3, or the target's node count if
    /// smaller). Each replica counts against its tenant's JetStream limits.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: Option<u8>,
    /// Move only this tenant (repeatable; default: every tenant).
    #[arg(long, value_parser = TenantName::new, value_name = "NAME")]
    pub tenant: Vec<TenantName>,
}

/// `init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Describe a cluster of this many local nodes (config/cluster.toml) and write every
    /// node's configuration (config/nodes/), as `up --nodes N` does, without starting them
    /// (for docker-compose.cluster.yml, or to edit the hosts first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=32))]
    pub nodes: Option<u16>,
}

/// `up`
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Run a nats-server cluster of this many nodes on this machine instead of natsd: node i
    /// (from 0) takes NATS_PORT+i, NATS_HTTP_PORT+i and NATS_CLUSTER_PORT+i (default 6222).
    /// Written to config/cluster.toml the first time; later runs start missing nodes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=32))]
    pub nodes: Option<u16>,
    /// Start only this node of the cluster (on the host whose address it has).
    #[arg(long, value_name = "NAME", conflicts_with = "nodes")]
    pub node: Option<String>,
}

/// `down`
#[derive(Debug, Args)]
pub struct DownArgs {
    /// Stop only this node of the cluster.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

/// `check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Repair what can be repaired (modes, auth.conf, the server's configuration, leftovers,
    /// stray credentials files).
    #[arg(long)]
    pub fix: bool,
}

/// `add-tenant`
#[derive(Debug, Args)]
pub struct AddTenantArgs {
    /// Tenant name (lower-case letters, digits, `_`, `-`); its account is the upper-case name.
    #[arg(value_parser = TenantName::new)]
    pub name: TenantName,
    /// JetStream memory limit, in nats.conf units: 64MB, 128MB, 1GB (binary), 1G (10^9 bytes).
    #[arg(value_parser = Size::parse, default_value = "64MB")]
    pub memory: Size,
    /// JetStream file storage limit, in nats.conf units: 5GB, 10GB (binary), 5G (decimal).
    #[arg(value_parser = Size::parse, default_value = "5GB")]
    pub storage: Size,
    /// How the admin user logs in: a generated password, or an NKEY key pair (passwordless:
    /// the server holds only the public key, the seed goes to the credentials).
    #[arg(long, value_enum, default_value_t = AuthKind::Password)]
    pub auth: AuthKind,
}

/// A comma-separated subject list.
#[derive(Debug, Clone)]
pub struct SubjectList(pub Vec<SubjectPattern>);

fn subject_list(text: &str) -> Result<SubjectList, String> {
    parse_subject_list(text).map(SubjectList)
}

/// `add-user`
#[derive(Debug, Args)]
pub struct AddUserArgs {
    /// The tenant.
    #[arg(value_parser = TenantName::new)]
    pub tenant: TenantName,
    /// The new user's name (unique across all tenants).
    #[arg(value_parser = UserName::new)]
    pub user: UserName,
    /// Subjects the user may publish to, comma-separated ("orders.*,events.order.*").
    #[arg(short = 'p', long, value_parser = subject_list, value_name = "SUBJECTS")]
    pub publish: Vec<SubjectList>,
    /// Subjects the user may subscribe to, comma-separated ("payments.*,inventory.*").
    #[arg(short = 's', long, value_parser = subject_list, value_name = "SUBJECTS")]
    pub subscribe: Vec<SubjectList>,
    /// Subjects the user may never publish to.
    #[arg(long, value_parser = subject_list, value_name = "SUBJECTS")]
    pub deny_publish: Vec<SubjectList>,
    /// Subjects the user may never subscribe to.
    #[arg(long, value_parser = subject_list, value_name = "SUBJECTS")]
    pub deny_subscribe: Vec<SubjectList>,
    /// Let the user publish replies to requests it received.
    #[arg(long)]
    pub allow_responses: bool,
    /// How the user logs in: a generated password, or an NKEY key pair (passwordless: the
    /// server holds only the public key, the seed goes to the credentials and a `.nk` file).
    #[arg(long, value_enum, default_value_t = AuthKind::Password)]
    pub auth: AuthKind,
}

/// `rotate`
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The tenant and user.
    #[command(flatten)]
    pub who: TenantUserArgs,
    /// Switch how the user logs in (default: as now; a password user gets a new password, an
    /// NKEY user a new key pair).
    #[arg(long, value_enum)]
    pub auth: Option<AuthKind>,
}

/// `<tenant> [user]`
#[derive(Debug, Args)]
pub struct TenantUserArgs {
    /// The tenant.
    #[arg(value_parser = TenantName::new)]
    pub tenant: TenantName,
    /// A user of the tenant (default: the tenant's admin user).
    #[arg(value_parser = UserName::new)]
    pub user: Option<UserName>,
}

impl TenantUserArgs {
    /// The user asked for, else the tenant's admin user.
    pub fn user_name(&self) -> UserName {
        self.user
            .clone()
            .unwrap_or_else(|| self.tenant.admin_user())
    }
}

/// `remove-user`
#[derive(Debug, Args)]
pub struct RemoveUserArgs {
    /// The tenant.
    #[arg(value_parser = TenantName::new)]
    pub tenant: TenantName,
    /// The user to remove.
    #[arg(value_parser = UserName::new)]
    pub user: UserName,
}

/// `<tenant>`
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// The tenant.
    #[arg(value_parser = TenantName::new)]
    pub tenant: TenantName,
}
