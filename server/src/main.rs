//! `natsd`: command line → options → logger → server, then signals until shutdown.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use natsd::config::flags::{self, Command, FlagOptions};
use natsd::config::{self, Loaded, Options};
use natsd::logging::{self, LogLevel};
use natsd::{Server, NATSD_VERSION, NATS_COMPAT_VERSION};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match flags::parse_args(&args) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("nats-server: {err}");
            eprintln!("{}", flags::usage());
            return ExitCode::from(1);
        }
    };
    match command {
        Command::Help => {
            println!("{}", flags::usage());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("nats-server: v{NATS_COMPAT_VERSION} (natsd {NATSD_VERSION})");
            ExitCode::SUCCESS
        }
        Command::Signal { command, target } => {
            match natsd::signal::send(command, target.as_deref()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("nats-server: {err}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Test(flags) => test_config(&flags),
        Command::Run(flags) => match run(flags) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                logging::fatal(&format!("{err:#}"));
                ExitCode::from(1)
            }
        },
    }
}

/// Load the file (if any) and apply the flags: what both `-t` and a start use.
fn load(flags: &FlagOptions) -> anyhow::Result<Loaded> {
    let mut loaded = match &flags.config_file {
        Some(path) => {
            let mut loaded = config::load_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            loaded.options.config_file = Some(path.clone());
            loaded
        }
        None => Loaded {
            options: Options::default(),
            warnings: Vec::new(),
            notices: Vec::new(),
            digest: String::new(),
        },
    };
    flags.apply(&mut loaded.options);
    loaded.options.resolve_store_dir();
    for flag in &flags.not_built {
        loaded.notices.push(format!("flag {flag} is accepted but not built in natsd (no clustering, leafnodes or syslog): ignored"));
    }
    Ok(loaded)
}

/// `-t`: like nats-server, warnings count as errors and the verdict goes to stderr.
fn test_config(flags: &FlagOptions) -> ExitCode {
    let Some(path) = &flags.config_file else {
        eprintln!(
            "nats-server: must specify [-c, --config] option to check configuration file syntax"
        );
        return ExitCode::from(1);
    };
    // nats-server reads the certificate and key while parsing, so `-t` catches a broken pair.
    let loaded = load(flags).and_then(|loaded| {
        if let Some(tls) = &loaded.options.tls {
            natsd::tls::acceptor(tls)?;
        }
        Ok(loaded)
    });
    match loaded {
        Ok(loaded) if loaded.warnings.is_empty() => {
            eprintln!(
                "nats-server: configuration file {} is valid ({})",
                path.display(),
                loaded.digest
            );
            ExitCode::SUCCESS
        }
        Ok(loaded) => {
            for w in loaded.warnings {
                eprintln!("nats-server: {w}");
            }
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("nats-server: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(flags: FlagOptions) -> anyhow::Result<()> {
    let Loaded {
        options,
        warnings,
        notices,
        digest,
    } = load(&flags)?;
    logging::init(
        LogLevel {
            debug: options.debug,
            trace: options.trace,
        },
        options.logtime,
        options.log_file.as_deref(),
    )
    .context("could not open log file")?;
    for w in warnings.iter().chain(&notices) {
        tracing::warn!("{}", w);
    }
    if let Some(pid_file) = &options.pid_file {
        write_pid_file(pid_file)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    runtime.block_on(async move {
        // Trapped before the server starts, as nats-server does: a signal sent right after
        // `Server is ready` must reach these handlers, not kill the process by default.
        let signals = Signals::trap()?;
        let overrides = {
            let flags = flags.clone();
            Box::new(move |o: &mut Options| flags.apply(o))
        };
        let server = Server::new(options, overrides, digest)?;
        natsd::start(&server).await?;
        wait_for_signals(server, signals).await
    })
}

fn write_pid_file(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("Could not write pidfile: {}", path.display()))?;
    write!(file, "{}", std::process::id())
        .with_context(|| format!("Could not write pidfile: {}", path.display()))
}

/// The signals natsd answers, trapped from the moment this exists.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn trap() -> std::io::Result<Self> {
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}

async fn wait_for_signals(server: Arc<Server>, signals: Signals) -> anyhow::Result<()> {
    let Signals {
        mut hup,
        mut term,
        mut int,
        mut usr1,
        mut usr2,
    } = signals;
    let mut stopped = server.shutdown_signal();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("Trapped \"hangup\" signal");
                if let Err(err) = server.reload().await {
                    tracing::error!("Failed to reload server configuration: {}", err);
                }
            }
            _ = term.recv() => {
                tracing::info!("Trapped \"terminated\" signal");
                server.shutdown().await;
                return Ok(());
            }
            _ = int.recv() => {
                tracing::info!("Trapped \"interrupt\" signal");
                server.shutdown().await;
                return Ok(());
            }
            _ = usr1.recv() => {
                tracing::info!("Trapped \"user defined signal 1\" signal: log file reopen is not needed by natsd (append mode)");
            }
            _ = usr2.recv() => {
                tracing::info!("Trapped \"user defined signal 2\" signal");
                let server = server.clone();
                tokio::spawn(async move { server.lame_duck().await });
            }
            _ = stopped.wait_for(|s| *s) => {
                // Lame duck finished and shut the server down.
                return Ok(());
            }
        }
    }
}
