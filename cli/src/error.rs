//! Domain errors: each names the thing and, where it helps, what to do about it. Every error has
//! a stable [`ManageError::code`] that `--json` output carries (docs/manage.md lists them).

use std::path::PathBuf;

/// Errors that the user can act on; rendered once by [`crate::run`].
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The tenant has no file under `config/tenants/`.
    #[error("tenant `{tenant}` does not exist")]
    TenantNotFound { tenant: String },
    /// A tenant file already exists.
    #[error("tenant `{tenant}` already exists")]
    TenantExists { tenant: String },
    /// The user is not in the tenant.
    #[error("user `{user}` does not exist in tenant `{tenant}`")]
    UserNotFound { tenant: String, user: String },
    /// NATS user names are global: another tenant (or the system account) has it.
    #[error(
        "user `{user}` already exists in tenant `{owner}` (user names are global across tenants)"
    )]
    UserTaken { user: String, owner: String },
    /// The admin user goes with its tenant.
    #[error("`{user}` is the admin user of tenant `{tenant}`; remove the tenant instead (./manage remove-tenant {tenant})")]
    AdminUser { tenant: String, user: String },
    /// A tenant file that does not parse or holds invalid values.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// JetStream reservations would exceed the server's limit.
    #[error("insufficient {resource} resources available: tenants would reserve {wanted} of {resource}, but {setting} in {} allows {allowed}", config.display())]
    OverLimit {
        resource: &'static str,
        setting: String,
        config: PathBuf,
        wanted: String,
        allowed: String,
    },
    /// The server configuration (nats.conf with the generated auth.conf) is refused, by the
    /// nats.conf parser or by the server binary's `-t`.
    #[error("the configuration is invalid ({checker}):\n{output}")]
    InvalidConfig { checker: String, output: String },
    /// A credentials file is missing or incomplete.
    #[error("no credentials for `{user}` in {}; run ./manage rotate {tenant} {user} to create new ones", path.display())]
    MissingCredentials {
        tenant: String,
        user: String,
        path: PathBuf,
    },
    /// A credentials file holds another user's credentials.
    #[error("{} holds the credentials of `{found}`, not of `{user}`; run ./manage check", path.display())]
    WrongCredentials {
        path: PathBuf,
        user: String,
        found: String,
    },
    /// The deployment has no `.env` system password yet.
    #[error("the deployment in {} is not initialised; run ./manage init", root.display())]
    NotInitialised { root: PathBuf },
    /// The server did not show the new configuration in time, or shows another one.
    #[error("the server did not confirm the new configuration: {reason} (its log: {log})")]
    ReloadNotConfirmed { reason: String, log: String },
    /// The server refused to reload (it keeps its previous configuration).
    #[error("the server refused to reload: {reason}")]
    ReloadFailed { reason: String },
    /// Something answers on the server's address, but manage cannot reach it as this
    /// deployment's system user, nor find its process (or signal its container).
    #[error("{reason}")]
    ServerUnreachable { reason: String },
    /// A pid that cannot be shown to be this deployment's server: never signalled.
    #[error("{} names pid {pid}, which cannot be verified as this deployment's natsd ({reason}); not signalling it", pid_file.display())]
    UnverifiedProcess {
        pid_file: PathBuf,
        pid: u32,
        reason: String,
    },
    /// The port the server would listen on is taken by something else.
    #[error("{addr} is already in use by a process that is not this deployment's natsd; not starting a second server (set NATS_PORT / NATS_HTTP_PORT in .env to use other ports)")]
    PortInUse { addr: String },
    /// No server binary was found.
    #[error(
        "no server binary found: set NATSD_BIN, or build natsd (cargo build --release -p natsd)"
    )]
    NoServerBinary,
    /// The server started but never became healthy.
    #[error("natsd did not become healthy: {reason}\n{log_tail}")]
    StartFailed { reason: String, log_tail: String },
    /// `manage check` found problems.
    #[error("{count} problem(s) found; ./manage check --fix repairs what can be repaired")]
    CheckFailed { count: usize },
    /// `config/cluster.toml` does not parse or holds an invalid value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    MalformedCluster {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A change reached some nodes of the cluster and not others.
    #[error("the change is saved and confirmed on {confirmed} of {total} nodes; {} missed it: run ./manage reload (or ./manage check --fix) once {} back", missed.join(", "), if missed.len() == 1 { "it is" } else { "they are" })]
    PartialReload {
        missed: Vec<String>,
        confirmed: usize,
        total: usize,
    },
    /// `up --nodes N` in a deployment whose cluster has another number of nodes.
    #[error("config/cluster.toml describes {described} nodes, not {asked}; edit it to change the cluster (then ./manage reload and ./manage up)")]
    ClusterMismatch { described: usize, asked: usize },
    /// A cluster command in a deployment without `config/cluster.toml`.
    #[error("the deployment in {} has no cluster (config/cluster.toml); create one with ./manage up --nodes 3", root.display())]
    NotACluster { root: PathBuf },
    /// A node name that `config/cluster.toml` does not have.
    #[error("config/cluster.toml has no node `{node}` (nodes: {})", known.join(", "))]
    NodeNotFound { node: String, known: Vec<String> },
    /// No nats-server binary for the cluster's nodes.
    #[error("no nats-server binary found for the cluster's nodes: set NATS_CLUSTER_BIN, or install it (scripts/test.sh puts one in .venv)")]
    NoClusterBinary,
    /// The cluster did not become healthy, complete and led in time.
    #[error("the cluster is not ready: {reason}")]
    ClusterNotReady { reason: String },
    /// `migrate`: the target already holds something manage did not put there.
    #[error("{what}: {reason}")]
    MigrateConflict { what: String, reason: String },
    /// `migrate`: a stream uses a feature its copy by publishing would get wrong.
    #[error("{what} uses {feature}, which migrate does not copy (its messages would be refused, taken twice or changed): nothing was moved; move that stream by hand, or remove it here")]
    MigrateUnsupported { what: String, feature: String },
    /// `migrate`: the copy does not match the source.
    #[error("{count} stream(s) do not match their source after the copy; run ./manage migrate again (it resumes), or see the report")]
    VerifyFailed { count: usize },
    /// A previous command's record of changes cannot be read, so manage cannot roll it back.
    #[error("{} cannot be read ({reason}); restore the files it names by hand, then delete it", path.display())]
    BrokenJournal { path: PathBuf, reason: String },
}

impl ManageError {
    /// The stable code `--json` errors carry.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TenantNotFound { .. } => "tenant_not_found",
            Self::TenantExists { .. } => "tenant_exists",
            Self::UserNotFound { .. } => "user_not_found",
            Self::UserTaken { .. } => "user_exists",
            Self::AdminUser { .. } => "admin_user",
            Self::Malformed { .. } => "malformed_tenant_file",
            Self::OverLimit { .. } => "limit_exceeded",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::MissingCredentials { .. } => "missing_credentials",
            Self::WrongCredentials { .. } => "wrong_credentials",
            Self::NotInitialised { .. } => "not_initialised",
            Self::ReloadNotConfirmed { .. } => "reload_not_confirmed",
            Self::ReloadFailed { .. } => "reload_failed",
            Self::ServerUnreachable { .. } => "server_unreachable",
            Self::UnverifiedProcess { .. } => "unverified_process",
            Self::PortInUse { .. } => "port_in_use",
            Self::NoServerBinary => "no_server_binary",
            Self::StartFailed { .. } => "start_failed",
            Self::CheckFailed { .. } => "check_failed",
            Self::BrokenJournal { .. } => "broken_journal",
            Self::MalformedCluster { .. } => "malformed_cluster_file",
            Self::PartialReload { .. } => "partial_reload",
            Self::ClusterMismatch { .. } => "cluster_mismatch",
            Self::NotACluster { .. } => "not_a_cluster",
            Self::NodeNotFound { .. } => "node_not_found",
            Self::NoClusterBinary => "no_server_binary",
            Self::ClusterNotReady { .. } => "cluster_not_ready",
            Self::MigrateConflict { .. } => "migrate_conflict",
            Self::MigrateUnsupported { .. } => "migrate_unsupported",
            Self::VerifyFailed { .. } => "verify_failed",
        }
    }
}

/// The code for any error: the domain error's, else `io_error` for a file system failure,
/// else `internal`.
pub fn code_of(error: &anyhow::Error) -> &'static str {
    if let Some(e) = error.downcast_ref::<ManageError>() {
        return e.code();
    }
    if error
        .chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some())
    {
        return "io_error";
    }
    "internal"
}
