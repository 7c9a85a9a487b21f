//! `logpipe`: the server and its command-line client.

#![deny(unsafe_code)]

mod client;
mod inspect;
mod serve;

use clap::{Parser, Subcommand};

/// Ingest allocates and frees many small strings on several threads at once; mimalloc handles
/// that pattern with far less contention and fragmentation than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "logpipe", version, about = "Log storage and query server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded single node: WAL and segments in a data directory).
    Serve(Box<serve::ServeArgs>),
    /// Query a server and print the records, a count or a histogram.
    Query(Box<client::QueryArgs>),
    /// Follow new records that match a query as they are acknowledged.
    Tail(Box<client::TailArgs>),
    /// Send NDJSON records or plain text lines from files or stdin to a server.
    Ingest(client::IngestArgs),
    /// Show the partitions, segments, sizes and record counts of a data directory.
    Inspect(inspect::InspectArgs),
    /// Exit 0 when a server is ready (its `/ready` answers 200), else print why and exit 1.
    Health(client::HealthArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Serve(a) => serve::run(*a),
        Command::Query(a) => client::query(*a),
        Command::Tail(a) => client::tail(*a),
        Command::Ingest(a) => client::ingest(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Health(a) => client::health(a),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logpipe: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
