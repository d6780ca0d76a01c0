//! The `krillc` command line: flags, then dispatch to [`crate::commands`].
//! Global options are accepted before or after the subcommand.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::api::{self, Client};
use crate::commands::{self, nodes::NodeFields, Format};
use crate::config::{self, Selection};
use crate::failure::Failure;

const EXIT_STATUSES: &str = "\
Exit status:
  0  success
  1  local problem (profiles, key or pin file; trust declined)
  2  wrong command line
  3  server unreachable
  4  no pinned certificate, or the server presents another one
  5  API key refused (401), or none given
  6  not found (404)
  7  request refused as invalid (other 4xx)
  8  server error (5xx) or unreadable answer";

/// Command-line client for Krill servers: trust a server's certificate
/// once, then read and change nodes with its API key.
#[derive(Debug, Parser)]
#[command(name = "krillc", version, after_help = EXIT_STATUSES)]
pub struct Cli {
    /// Server address, https://HOST:PORT (default port 8442). Default:
    /// KRILL_SERVER, or the profile's server.
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,

    /// File holding the API key (the safe way to pass it).
    #[arg(long, global = true, value_name = "FILE")]
    api_key_file: Option<PathBuf>,

    /// The API key itself. Other users can see command lines: prefer
    /// --api-key-file or KRILL_API_KEY.
    #[arg(long, global = true, value_name = "KEY")]
    api_key: Option<String>,

    /// Profile from profiles.toml in the config directory (default:
    /// KRILL_PROFILE, or the file's `default`).
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,

    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    json: bool,

    /// Configuration directory (pins and profiles). Default:
    /// KRILLC_CONFIG_DIR, $XDG_CONFIG_HOME/krill or ~/.config/krill.
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch the server's certificate, show its fingerprint and pin it.
    Trust(TrustArgs),
    /// The server's health (no key needed).
    Health,
    /// Read and change nodes.
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Read and change the server's settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
struct TrustArgs {
    /// Server to trust, https://HOST:PORT (default: the --server setting).
    #[arg(value_name = "URL")]
    url: Option<String>,
    /// Pin without asking (check the fingerprint some other way).
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Debug, Subcommand)]
enum NodesCommand {
    /// List nodes.
    List {
        /// Only children of this node.
        #[arg(long, value_name = "ID")]
        parent: Option<String>,
        /// Only nodes of this type.
        #[arg(long = "type", value_name = "TYPE")]
        node_type: Option<String>,
        /// At most N nodes (default: all of them, following the server's
        /// pages).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Show one node.
    Get { id: String },
    /// Create a node (the server makes an id unless --id is given).
    Create {
        /// Id for the new node.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: NodeFields,
    },
    /// Change the given fields of a node (or replace it with --body).
    Update {
        id: String,
        #[command(flatten)]
        fields: NodeFields,
    },
    /// Delete a node and its whole subtree.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Show the settings, or one of them (dotted for nested ones, e.g.
    /// auth_throttle.max_failures).
    Get { field: Option<String> },
    /// Change settings: KEY=VALUE, e.g. display_name=Greenhouse or
    /// auth_throttle.max_failures=5 (VALUE is JSON if it parses, else text).
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<String>,
    },
}

/// Parses the command line, runs it, prints the result or one failure
/// message, and returns the documented exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("krillc: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`krillc nodes list | head`) is not an error.
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("krillc: {failure}");
            failure.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<String, Failure> {
    let format = if cli.json {
        Format::Json
    } else {
        Format::Human
    };
    let config_dir = config::config_dir(cli.config_dir.as_deref())?;
    let trust_url = match &cli.command {
        Command::Trust(args) => args.url.as_deref(),
        _ => None,
    };
    // `trust` takes the URL as an argument; it and `health` send no key.
    let selection = Selection {
        server: trust_url.or(cli.server.as_deref()),
        api_key_file: cli.api_key_file.as_deref(),
        api_key: cli.api_key.as_deref(),
        profile: cli.profile.as_deref(),
        want_key: !matches!(cli.command, Command::Trust(_) | Command::Health),
    };
    let resolved = config::resolve(&selection, config_dir)?;
    match cli.command {
        Command::Trust(args) => {
            let target = api::target(&resolved)?;
            commands::trust::run(&target, &resolved.config_dir, args.yes, format).await
        }
        other => dispatch(&Client::new(resolved)?, other, format).await,
    }
}

/// Runs a command that talks to a trusted server.
async fn dispatch(client: &Client, command: Command, format: Format) -> Result<String, Failure> {
    use commands::{config, health, nodes};
    match command {
        Command::Trust(_) => Err(Failure::Usage("trust is not a server call".into())),
        Command::Health => health::run(client, format).await,
        Command::Nodes(NodesCommand::List {
            parent,
            node_type,
            limit,
        }) => {
            let limit = limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            nodes::list(
                client,
                parent.as_deref(),
                node_type.as_deref(),
                limit,
                format,
            )
            .await
        }
        Command::Nodes(NodesCommand::Get { id }) => nodes::get(client, &id, format).await,
        Command::Nodes(NodesCommand::Create { id, fields }) => {
            nodes::create(client, id.as_deref(), &fields, format).await
        }
        Command::Nodes(NodesCommand::Update { id, fields }) => {
            nodes::update(client, &id, &fields, format).await
        }
        Command::Nodes(NodesCommand::Delete { id }) => nodes::delete(client, &id, format).await,
        Command::Config(ConfigCommand::Get { field }) => {
            config::get(client, field.as_deref(), format).await
        }
        Command::Config(ConfigCommand::Set { assignments }) => {
            config::set(client, &assignments, format).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let before = Cli::try_parse_from([
            "krillc",
            "--json",
            "--server",
            "https://a:1",
            "nodes",
            "list",
        ])
        .unwrap();
        let after = Cli::try_parse_from([
            "krillc",
            "nodes",
            "list",
            "--server",
            "https://a:1",
            "--json",
        ])
        .unwrap();
        assert!(before.json && after.json);
        assert_eq!(before.server, after.server);
    }
}
