//! manage: the tenant CLI for natsd.
//!
//! # Layout
//! - `cli`: clap definitions (one Args struct per command).
//! - `commands`: one file per command, plus `apply` (render, validate, reload).
//! - `tenant`: the tenant file model (`model`), editing (`document`), files (`repo`).
//! - `render`: generated `auth.conf` and credentials `.env` files, from `templates/`.
//! - `server`: server binary, its configuration (the shared nats.conf rules), the verified process,
//!   the system account over NATS, the monitoring API; bringing the server to the files.
//! - `cluster`: a deployment's nats-server cluster (`config/cluster.toml`), the node
//!   configurations rendered from it, and the nodes at run time.
//! - `client`: a minimal blocking NATS client for `manage test`, system requests and `migrate`.
//! - `jetstream`: one account's JetStream API over that client (what `migrate` reads and writes).
//! - `journal`: all-or-nothing changes to the deployment's files.
//! - `credentials`: users' credentials files, checked to belong to their user.
//! - `settings`: `.env` plus environment, deployment paths.
//! - `nkey`: NKEY user key pairs, seeds and nonce signatures.
//! - `names`: validated tenant/user names, subjects, sizes (by the server's rules).
//! - `printer`: output (text, JSON, spinners). `fs`: atomic writes, modes, the deployment lock.

pub mod cli;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod credentials;
pub mod error;
pub mod fs;
pub mod jetstream;
pub mod journal;
pub mod names;
pub mod nkey;
pub mod printer;
pub mod render;
pub mod server;
pub mod settings;
pub mod tenant;

use std::io::IsTerminal as _;

use anyhow::Context as _;

use crate::cli::{Cli, ColorChoice, Command};
use crate::commands::ExitStatus;
use crate::error::ManageError;
use crate::printer::{style, Mode, Printer};
use crate::settings::{Paths, Settings};

/// What every command gets.
#[derive(Debug)]
pub struct Context {
    /// Where the deployment's files are.
    pub paths: Paths,
    /// `.env` plus the environment.
    pub settings: Settings,
    /// `--yes`
    pub yes: bool,
}

impl Context {
    /// Re-read `.env` after `init` changed it.
    pub fn reload_settings(&mut self) -> anyhow::Result<()> {
        self.settings = Settings::load(&self.paths)?;
        Ok(())
    }
}

fn configure_colors(choice: ColorChoice) {
    let enabled = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    };
    console::set_colors_enabled(enabled);
    console::set_colors_enabled_stderr(
        enabled && (choice == ColorChoice::Always || std::io::stderr().is_terminal()),
    );
}

/// Run one command; errors are printed here, once.
pub fn run(cli: Cli) -> ExitStatus {
    configure_colors(cli.global.color);
    let mode = if cli.global.json {
        Mode::Json
    } else if cli.global.quiet {
        Mode::Quiet
    } else {
        Mode::Human
    };
    let printer = Printer::new(mode, !cli.global.no_progress);
    match dispatch(cli, printer) {
        Ok(status) => status,
        Err(error) => {
            report(&error, printer);
            // A change some nodes of a cluster missed has its own exit status wherever it
            // surfaces.
            if error::code_of(&error) == "partial_reload" {
                ExitStatus::Partial
            } else {
                ExitStatus::Failure
            }
        }
    }
}

/// A command line clap refused: its message on stderr and, with `--json` among the arguments,
/// a JSON document with code `usage` on stdout. Exit 2 (0 for `--help` / `--version`).
pub fn usage_error(error: &clap::Error, args: &[std::ffi::OsString]) -> ExitStatus {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) && error.exit_code() == 0
    {
        let _ = error.print();
        return ExitStatus::Success;
    }
    if args.iter().any(|a| a == "--json") {
        let message = error.kind().as_str().map_or_else(
            || {
                error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            },
            str::to_owned,
        );
        let detail = error.to_string();
        Printer::new(Mode::Json, false).json(&serde_json::json!({
            "ok": false, "code": "usage", "error": message,
            "causes": [detail.lines().next().unwrap_or_default().trim_start_matches("error: ")],
        }));
    }
    let _ = error.print();
    ExitStatus::Usage
}

fn dispatch(cli: Cli, printer: Printer) -> anyhow::Result<ExitStatus> {
    let root = match cli.global.config_dir {
        Some(dir) => dir,
        None => std::env::current_dir().context("failed to read the current directory")?,
    };
    let root = if root.is_absolute() {
        root
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(&root))
            .unwrap_or(root)
    };
    let paths = Paths { root };
    let settings = Settings::load(&paths)?;
    // The server runs in the deployment root and reads relative paths (certificates, includes
    // of includes, the store) from there: manage reads its configuration from there too.
    if paths.root.is_dir() {
        std::env::set_current_dir(&paths.root)
            .with_context(|| format!("failed to enter {}", paths.root.display()))?;
    }
    let mut ctx = Context {
        paths,
        settings,
        yes: cli.global.yes,
    };
    use crate::commands as c;
    match cli.command {
        Command::Init(args) => c::init::init(&args, &mut ctx, printer),
        Command::Up(args) => c::server_up::up(&args, &mut ctx, printer),
        Command::Down(args) => c::server_up::down(&args, &ctx, printer),
        Command::Status => c::server_up::status(&ctx, printer),
        Command::AddTenant(args) => c::tenant_add::tenant_add(&args, &mut ctx, printer),
        Command::AddUser(args) => c::user_add::user_add(&args, &mut ctx, printer),
        Command::List => c::tenant_list::tenant_list(&ctx, printer),
        Command::Show(args) => c::show::show(&args, &ctx, printer),
        Command::RemoveUser(args) => c::remove::user_remove(&args, &mut ctx, printer),
        Command::RemoveTenant(args) => c::remove::tenant_remove(&args, &mut ctx, printer),
        Command::Test(args) => c::test::test(&args, &ctx, printer),
        Command::Reload => c::reload::reload(&mut ctx, printer),
        Command::Rotate(args) => c::rotate::rotate(&args, &mut ctx, printer),
        Command::Check(args) => c::check::check(&args, &mut ctx, printer),
        Command::Migrate(args) => c::migrate::migrate(&args, &mut ctx, printer),
    }
}

fn report(error: &anyhow::Error, printer: Printer) {
    if printer.is_json() {
        let mut chain = error.chain();
        let head = chain.next().map(ToString::to_string).unwrap_or_default();
        let causes: Vec<String> = chain.map(ToString::to_string).collect();
        printer.json(&serde_json::json!({
            "ok": false, "code": error::code_of(error), "error": head, "causes": causes,
        }));
    }
    report_human(error);
}

/// `error: ...` and its causes on stderr, with a hint where one helps.
pub fn report_human(error: &anyhow::Error) {
    let mut chain = error.chain();
    let head = chain.next().map(ToString::to_string).unwrap_or_default();
    eprintln!("{} {head}", style::error().apply_to("error:"));
    for cause in chain {
        eprintln!("  caused by: {cause}");
    }
    if let Some(ManageError::OverLimit { .. }) = error.downcast_ref::<ManageError>() {
        crate::commands::hint(
            "reduce per-tenant limits (./manage add-tenant smallapp 32MB 1GB) or increase the \
             global limit in config/nats.conf; ./manage list shows current tenant limits",
        );
    }
}
