//! Domain errors: each names the thing and, where it helps, what to do about it.

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
    /// A name the system account owns.
    #[error("`{name}` is reserved for the system account")]
    Reserved { name: String },
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
    #[error("insufficient {resource} resources available: tenants would reserve {wanted} of {resource}, but `{setting}` in {} allows {allowed}", config.display())]
    OverLimit {
        resource: &'static str,
        setting: &'static str,
        config: PathBuf,
        wanted: String,
        allowed: String,
    },
    /// The server binary rejected the generated configuration.
    #[error("the generated configuration is invalid ({} -t):\n{output}", binary.display())]
    InvalidConfig { binary: PathBuf, output: String },
    /// A credentials file is missing or incomplete.
    #[error("no credentials for `{user}` in {}; run ./manage rotate {tenant} {user} to create new ones", path.display())]
    MissingCredentials {
        tenant: String,
        user: String,
        path: PathBuf,
    },
    /// The deployment has no `.env` system password yet.
    #[error("the deployment in {} is not initialised; run ./manage init", root.display())]
    NotInitialised { root: PathBuf },
    /// The server did not confirm the reload.
    #[error("natsd did not load the new configuration within {seconds}s; see {}", log.display())]
    ReloadNotConfirmed { seconds: u64, log: PathBuf },
    /// No server binary was found.
    #[error(
        "no server binary found: set NATSD_BIN, or build natsd (cargo build --release -p natsd)"
    )]
    NoServerBinary,
    /// The server started but never became healthy.
    #[error("natsd did not become healthy: {reason}\n{log_tail}")]
    StartFailed { reason: String, log_tail: String },
}
