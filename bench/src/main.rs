//! `bench compare`: natsd against nats-server, side by side.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use bench::report::{BinaryInfo, Meta, Report};
use bench::runner::{Binaries, Runner};
use bench::scenarios::{catalog, AuthFixture, Scenario, Settings};
use bench::server::{remove_stale_workdirs, version_of};
use bench::sys;

#[derive(Parser)]
#[command(name = "bench", about = "Benchmark natsd against nats-server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the comparison.
    Compare(CompareArgs),
    /// List scenario names (for --only).
    List,
}

#[derive(Args)]
struct CompareArgs {
    /// natsd binary.
    #[arg(long, value_name = "PATH", default_value_os_t = default_natsd())]
    natsd: PathBuf,
    /// nats-server binary (looked up on PATH by default).
    #[arg(
        long = "nats-server",
        value_name = "PATH",
        default_value = "nats-server"
    )]
    nats_server: PathBuf,
    /// Rounds per scenario (default 5, or 3 with --quick).
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// Smaller message counts and 3 rounds.
    #[arg(long)]
    quick: bool,
    /// Print the markdown table (for the README).
    #[arg(long)]
    markdown: bool,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
    /// Run only scenarios whose name contains one of these substrings.
    #[arg(long, value_name = "TEXT", num_args = 1..)]
    only: Vec<String>,
    /// Override the message count per run at small payloads.
    #[arg(long, value_name = "N")]
    msgs: Option<u64>,
    /// How many MiB of deliveries a publisher may run ahead of its slowest
    /// subscriber (0: unbounded).
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    max_lag_mib: u64,
}

fn default_natsd() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/natsd")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::List => {
            for scenario in catalog(&Settings::full()) {
                println!("{}", scenario.name());
            }
            Ok(())
        }
        Command::Compare(args) => compare(args),
    }
}

fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let mut settings = if args.quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Some(msgs) = args.msgs {
        settings.large_msgs = (settings.large_msgs * msgs / settings.small_msgs.max(1)).max(1);
        settings.small_msgs = msgs;
    }
    settings.max_lag_bytes = args.max_lag_mib * 1024 * 1024;
    let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 5 });
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }

    let scenarios: Vec<Box<dyn Scenario>> = catalog(&settings)
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| s.name().contains(o.as_str())))
        .collect();
    if scenarios.is_empty() {
        bail!(
            "no scenario matches --only {:?} (see `bench list`)",
            args.only
        );
    }

    sys::raise_open_file_limit().context("raise the open-file limit")?;
    remove_stale_workdirs();
    let auth = AuthFixture::generate().context("hash the bcrypt password")?;
    let binaries = Binaries {
        natsd: args.natsd,
        nats_server: args.nats_server,
    };
    let info = |path: &std::path::Path| BinaryInfo {
        path: path.display().to_string(),
        version: version_of(path),
    };
    let load_before = load_average();
    eprintln!(
        "bench: {} scenarios × {rounds} rounds × 2 servers",
        scenarios.len()
    );
    let mut runner = Runner::new(&binaries, &settings, &auth);
    let results = runner.compare(&scenarios, rounds, &mut |line| eprintln!("{line}"));
    let meta = Meta {
        natsd: info(&binaries.natsd),
        nats_server: info(&binaries.nats_server),
        rounds,
        settings: settings.clone(),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        load_before,
        load_after: load_average(),
    };
    let report = Report::build(meta, &results);

    if !args.markdown && !args.json {
        print!("{}", report.to_text());
    }
    if args.markdown {
        print!("{}", report.to_markdown());
    }
    if args.json {
        println!("{}", report.to_json().context("serialize report")?);
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
