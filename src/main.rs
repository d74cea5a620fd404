//! The `portcullis` command: serve, check-config, gen-secret.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use portcullis::bootstrap::{self, Endpoints, HostPort};
use portcullis::config::{self, Config, ConfigError};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Envoy external authorization: OpenID Connect login and bearer JWTs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ext_authz gRPC service and the admin port.
    Serve {
        /// The config file; without one, the environment alone (PORTCULLIS_*, a flaskoidc .env).
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate the config and reach every issuer's discovery document and keys.
    CheckConfig {
        /// The config file; without one, the environment alone (PORTCULLIS_*, a flaskoidc .env).
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// First print the effective config (the file with the environment over it, secrets
        /// redacted): what each variable became.
        #[arg(long)]
        print: bool,
    },
    /// Print a fresh random secret for session.secret.
    GenSecret,
    /// Print an Envoy bootstrap with the native fast path, generated from the config.
    EnvoyConfig {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// Where Envoy listens.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// The upstream Envoy protects.
        #[arg(long, default_value = "127.0.0.1:5000")]
        upstream: HostPort,
        /// portcullis's gRPC port as Envoy reaches it (default: listen.grpc).
        #[arg(long)]
        portcullis_grpc: Option<HostPort>,
        /// portcullis's admin port as Envoy reaches it (default: listen.admin), for the pass keys.
        #[arg(long)]
        portcullis_admin: Option<HostPort>,
        /// portcullis's HTTP port as Envoy reaches it (default: listen.http_authz), for the
        /// provider's back-channel logout.
        #[arg(long)]
        portcullis_http: Option<HostPort>,
        /// Envoy's own admin interface.
        #[arg(long, default_value = "127.0.0.1:9901")]
        envoy_admin: std::net::SocketAddr,
        /// What sets the identity headers of a verified JWT: `lua` (Envoy alone) or `native`
        /// (portcullis's Envoy filter, libportcullis_envoy.so; cheaper); or `callout`, that filter
        /// alone, asking portcullis over HTTP and letting what it allowed through again (cheapest).
        #[arg(long, default_value = "lua")]
        fast_path_filter: bootstrap::Step,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::GenSecret => {
            println!("{}", portcullis::secret::generate_base64(32));
            ExitCode::SUCCESS
        }
        Command::Serve { config } => {
            let Some(config) = load(config.as_deref()) else {
                return ExitCode::from(2);
            };
            let served = runtime().block_on(async {
                // In the runtime: the span exporter, when tracing is on, runs on it.
                let telemetry = portcullis::telemetry::init(config.log.format, &config.log.level);
                let served = portcullis::app::serve(config).await;
                // The exporter's last batch goes out on this runtime: wait without blocking it.
                tokio::task::block_in_place(|| telemetry.shutdown());
                served
            });
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::EnvoyConfig {
            config,
            listen,
            upstream,
            portcullis_grpc,
            portcullis_admin,
            portcullis_http,
            envoy_admin,
            fast_path_filter,
        } => {
            let Some(config) = load(Some(&config)) else {
                return ExitCode::from(2);
            };
            let endpoints = Endpoints {
                listen,
                upstream,
                grpc: portcullis_grpc.unwrap_or_else(|| HostPort::reaching(config.listen.grpc)),
                admin: portcullis_admin.unwrap_or_else(|| HostPort::reaching(config.listen.admin)),
                http: portcullis_http.or_else(|| config.listen.http_authz.map(HostPort::reaching)),
                envoy_admin,
            };
            let client = portcullis::idp::IdpClient::new(Default::default());
            match runtime().block_on(bootstrap::generate(
                &config,
                &endpoints,
                fast_path_filter,
                &client,
            )) {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    for p in problems {
                        eprintln!("error: {p}");
                    }
                    ExitCode::from(2)
                }
            }
        }
        Command::CheckConfig { config, print } => {
            if print && !print_effective(config.as_deref()) {
                return ExitCode::from(2);
            }
            let Some(config) = load(config.as_deref()) else {
                return ExitCode::from(2);
            };
            if runtime().block_on(portcullis::app::check_providers(&config)) {
                println!("config ok");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The config from `path` with the environment over it, or from the environment alone.
fn load(path: Option<&std::path::Path>) -> Option<Config> {
    let env = config::process_env();
    let loaded = match path {
        Some(path) => Config::load(path, &env),
        None => Config::from_yaml("", &env, None),
    };
    match loaded {
        Ok(c) => Some(c),
        Err(ConfigError::Invalid(problems)) => {
            for p in problems {
                eprintln!("error: {p}");
            }
            if path.is_none() {
                eprintln!(
                    "error: (no --config: read from the environment alone; give --config FILE or \
                     PORTCULLIS_CONFIG, or set PORTCULLIS_PROVIDER__ISSUER and friends or a \
                     flaskoidc .env's FLASK_OIDC_* names)"
                );
            }
            None
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// `check-config --print`: the effective config, secrets redacted. False when it cannot be read.
fn print_effective(path: Option<&std::path::Path>) -> bool {
    let text = match path {
        None => String::new(),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return false;
            }
        },
    };
    let base = path.and_then(std::path::Path::parent);
    match Config::effective(&text, &config::process_env(), base) {
        Ok(yaml) => {
            println!("# the effective config: the file, then the environment over it");
            print!("{yaml}");
            true
        }
        Err(e) => {
            eprintln!("error: {e}");
            false
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}
