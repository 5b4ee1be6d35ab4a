//! `rampart edge` (the edge gateway) and `rampart up` (the gateway on an embedded
//! default config in front of a built-in demo service). The gateway itself lives in
//! `rampart-edge`; this module parses arguments, sets up logging and the runtime, and
//! prints what it started.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rampart_edge::{ConfigSource, Gateway, RunOptions, hooks::Hooks};

use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
pub(crate) struct EdgeArgs {
    /// An EdgeGateway config file (YAML or JSON). Reloaded on SIGHUP and when it or a
    /// certificate it names changes.
    #[arg(short = 'c', long, conflicts_with_all = ["listen", "backend"])]
    config: Option<PathBuf>,
    /// Quick form: the address to listen on (HTTPS), e.g. 127.0.0.1:8443.
    #[arg(long, requires = "backend")]
    listen: Option<SocketAddr>,
    /// Quick form: a backend server (ip:port or host:port). Repeat for several (round
    /// robin with health checks).
    #[arg(long, requires = "listen")]
    backend: Vec<String>,
    /// Quick form: certificate chain (PEM). Without it a self-signed ECDSA P-256
    /// certificate for localhost is made and its fingerprint printed.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Quick form: private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Quick form: admin listener address (metrics, health).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Validate the config and exit.
    #[arg(long)]
    check: bool,
    /// Data-path worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Log format on standard error: text or json. Access logs always go to standard
    /// output as JSON lines.
    #[arg(long, default_value = "text")]
    log_format: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Where the edge listens.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Where the admin listener listens.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn quick_config(args: &EdgeArgs, listen: SocketAddr) -> String {
    let cert = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => format!(
            "        - certFile: {}\n          keyFile: {}\n",
            quote(&c.display().to_string()),
            quote(&k.display().to_string())
        ),
        _ => "        - selfSigned: [localhost, 127.0.0.1]\n".to_owned(),
    };
    let servers: String = args
        .backend
        .iter()
        .map(|b| format!("        - address: {}\n", quote(b)))
        .collect();
    let admin = args
        .admin
        .map(|a| format!("  admin:\n    address: {}\n", quote(&a.to_string())))
        .unwrap_or_default();
    let health = if args.backend.len() > 1 {
        "      healthCheck:\n        tcp: {}\n        interval: 2s\n"
    } else {
        ""
    };
    format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nmetadata:\n  name: quick\nspec:\n{admin}  listeners:\n    - name: https\n      address: {listen}\n      tls:\n        certificates:\n{cert}        defaultCertificate: cert-0\n      httpRoutes:\n        - name: all\n          backend: servers\n  backends:\n    - name: servers\n      servers:\n{servers}{health}",
        listen = quote(&listen.to_string()),
    )
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let access = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stdout)
        .with_filter(Targets::new().with_target("rampart_edge::access", tracing::Level::INFO));
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info"))
            .add_directive("rampart_edge::access=off".parse().unwrap_or_default())
    };
    let registry = tracing_subscriber::registry().with(access);
    match format {
        "json" => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter()),
            )
            .try_init()?,
        "text" => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter()),
            )
            .try_init()?,
        other => anyhow::bail!("--log-format must be text or json, not {other:?}"),
    }
    Ok(())
}

/// The control runtime (admin listener, health checks, reloads, signals); the data path
/// runs on the gateway's own worker threads.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn print_started(gw: &Gateway, title: &str) -> anyhow::Result<()> {
    let rt = gw.runtime();
    let bound = gw.bound_addresses();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{title} (config revision {}, sha256 {})",
        rt.revision,
        &rt.digest[..12]
    )?;
    for l in &rt.config.listeners {
        let addr = bound.get(&l.name).copied().unwrap_or(l.address);
        let kind = match (l.mode, l.tls.is_some()) {
            (rampart_edge::config::Mode::Tcp, _) => "tcp",
            (_, true) => "https (h2, http/1.1)",
            (_, false) => "http",
        };
        writeln!(out, "  listener {:<12} {kind} on {addr}", l.name)?;
    }
    for (listener, names, fp, generated) in &rt.certificates {
        writeln!(
            out,
            "  certificate   {listener}: {}{} sha256 {fp}",
            names.join(","),
            if *generated { " (self-signed)" } else { "" }
        )?;
    }
    if let Some(a) = bound.get("admin") {
        writeln!(out, "  admin         http://{a}/metrics  /healthz  /config")?;
    }
    out.flush()?;
    Ok(())
}

pub(crate) fn run_edge(args: EdgeArgs) -> Outcome {
    let source = match (&args.config, args.listen) {
        (Some(path), _) => ConfigSource::File(path.clone()),
        (None, Some(listen)) => ConfigSource::Text {
            name: "<command line>".to_owned(),
            text: quick_config(&args, listen),
        },
        (None, None) => anyhow::bail!("give --config FILE, or --listen ADDR --backend ADDR"),
    };
    if args.check {
        let config = rampart_edge::check(&source)?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "EdgeGateway {}: ok ({} listeners, {} backends)",
            config.name,
            config.listeners.len(),
            config.backends.len()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&args.log_format)?;
    if args.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    let workers = args.threads.unwrap_or(0);
    let rt = runtime()?;
    rt.block_on(async move {
        let gw = Gateway::start_with(source, Hooks::default(), workers)
            .await
            .map_err(start_error)?;
        print_started(&gw, "rampart edge: serving")?;
        let left = rampart_edge::run(gw, RunOptions::default()).await?;
        Ok(if left == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

fn start_error(e: rampart_edge::StartError) -> anyhow::Error {
    match e {
        rampart_edge::StartError::Invalid(d) => anyhow::Error::new(d),
        other => anyhow::Error::new(other),
    }
}

pub(crate) fn run_up(args: UpArgs) -> Outcome {
    init_logging("text")?;
    let rt = runtime()?;
    rt.block_on(async move {
        let demo = rampart_edge::demo::spawn("127.0.0.1:0".parse()?, "demo")
            .await
            .context("starting the demo service")?;
        let text = format!(
            "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nmetadata:\n  name: up\nspec:\n  admin:\n    address: \"{admin}\"\n  listeners:\n    - name: https\n      address: \"{listen}\"\n      tls:\n        certificates:\n          - name: local\n            selfSigned: [localhost, 127.0.0.1]\n        defaultCertificate: local\n      httpRoutes:\n        - name: demo\n          backend: demo\n          responseHeaders:\n            set:\n              strict-transport-security: max-age=31536000\n  backends:\n    - name: demo\n      servers:\n        - address: \"{demo}\"\n      healthCheck:\n        http:\n          path: /healthz\n        interval: 5s\n",
            admin = args.admin,
            listen = args.listen,
        );
        let source = ConfigSource::Text {
            name: "<embedded default>".to_owned(),
            text,
        };
        let gw = Gateway::start(source, Hooks::default()).await.map_err(start_error)?;
        print_started(&gw, "rampart up: the edge gateway is serving a demo service")?;
        {
            let bound = gw.bound_addresses();
            let https = bound.get("https").copied().unwrap_or(args.listen);
            let admin = bound.get("admin").copied().unwrap_or(args.admin);
            let mut out = std::io::stdout().lock();
            writeln!(out, "  demo service  http://{demo} (reached only through the edge)")?;
            writeln!(out, "\nTry it:\n  curl -k https://{https}/\n  curl http://{admin}/metrics\nStop with Ctrl-C.")?;
        }
        let left = rampart_edge::run(gw, RunOptions::default()).await?;
        Ok(if left == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}
