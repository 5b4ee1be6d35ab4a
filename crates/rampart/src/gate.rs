//! `rampart gate`: the access gateway for the Kubernetes API, and `rampart gate
//! authorize`, which answers "may this user make this request" from RBAC manifests.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use rampart_authz::{RequestInfo, UserInfo};
use rampart_resources::{Diagnostic, Diagnostics};

use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<GateCommand>,
    /// The AccessGateway configuration file (YAML or JSON).
    #[arg(short = 'c', long = "config", required = true)]
    config: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum GateCommand {
    /// Decide a request from RBAC manifests, as the gateway and the API server would.
    ///
    /// Give the request as an HTTP method and path (`--method GET --path
    /// /api/v1/namespaces/x/pods`), as attributes (`--verb list --resource pods
    /// --namespace x`), or as a non-resource URL (`--verb get --non-resource-path
    /// /healthz`). Exits 0 with the answer, allowed or not; with --fail-on-deny, exits 1
    /// when not allowed (like `kubectl auth can-i`).
    Authorize(Box<AuthorizeArgs>),
}

#[derive(Debug, clap::Args)]
struct AuthorizeArgs {
    /// RBAC manifests: files, directories or `-`. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// The user name.
    #[arg(long)]
    user: String,
    /// A group the user is in. Repeatable.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// HTTP method of the request (with --path).
    #[arg(long, requires = "path")]
    method: Option<String>,
    /// Request path with an optional query (with --method).
    #[arg(long, requires = "method")]
    path: Option<String>,
    /// Verb: get, list, watch, create, update, patch, delete, deletecollection, ...
    #[arg(long, conflicts_with_all = ["method", "path"])]
    verb: Option<String>,
    /// Resource, e.g. pods.
    #[arg(long, requires = "verb")]
    resource: Option<String>,
    /// Subresource, e.g. log.
    #[arg(long, requires = "resource")]
    subresource: Option<String>,
    /// Namespace (none for cluster-scoped requests).
    #[arg(short = 'n', long, requires = "resource")]
    namespace: Option<String>,
    /// API group ("" for the core group).
    #[arg(long, requires = "resource")]
    api_group: Option<String>,
    /// Object name.
    #[arg(long, requires = "resource")]
    name: Option<String>,
    /// Non-resource URL path, e.g. /healthz.
    #[arg(long, requires = "verb", conflicts_with = "resource")]
    non_resource_path: Option<String>,
    /// Add the API server's bootstrap policy for authenticated users (discovery,
    /// health and version, self-reviews), as the gateway does by default.
    #[arg(long)]
    bootstrap_policy: bool,
    /// Exit with status 1 when the request is not allowed.
    #[arg(long)]
    fail_on_deny: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

pub(crate) fn run(args: Args) -> Outcome {
    match args.command {
        Some(GateCommand::Authorize(a)) => authorize(*a),
        None => {
            let config = args.config.context("--config is required")?;
            serve(&config)
        }
    }
}

fn serve(path: &str) -> Outcome {
    let config = rampart_gate::load_config(path).map_err(invalid_or_failure)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAMPART_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let gate = rampart_gate::Gate::bind(config)
            .await
            .map_err(invalid_or_failure)?;
        tokio::select! {
            result = gate.serve() => result.map_err(anyhow::Error::from)?,
            _ = shutdown_signal() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Invalid configuration exits with 2 (a `Diagnostics`), anything else with 1.
fn invalid_or_failure(e: rampart_gate::GateError) -> anyhow::Error {
    match e {
        rampart_gate::GateError::Invalid(d) => anyhow::Error::new(d),
        other => anyhow::Error::new(other),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

fn authorize(args: AuthorizeArgs) -> Outcome {
    let request = request_from_args(&args)?;
    let loaded =
        rampart_gate::load_rbac(&args.files, args.bootstrap_policy).map_err(invalid_or_failure)?;
    let mut stderr = std::io::stderr().lock();
    for w in loaded.warnings.iter() {
        writeln!(stderr, "{w}")?;
    }
    let decision = loaded.rbac.authorize(
        UserInfo {
            name: &args.user,
            groups: &args.groups,
        },
        &request,
    );
    let allowed = decision.is_allowed();
    let reason = if allowed {
        decision.reason().to_owned()
    } else {
        let message = rampart_authz::forbidden_message(&args.user, &request);
        if decision.reason().is_empty() {
            format!("{message}: no RBAC rule allows it")
        } else {
            format!("{message}: {}", decision.reason())
        }
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let answer = Answer {
                allowed,
                reason: &reason,
                request: &request,
            };
            serde_json::to_writer(&mut out, &answer)?;
            writeln!(out)?;
        }
        Output::Text => {
            writeln!(
                out,
                "{}: {reason}",
                if allowed { "allowed" } else { "denied" }
            )?;
        }
    }
    Ok(if allowed || !args.fail_on_deny {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The JSON answer of `rampart gate authorize -o json`.
#[derive(serde::Serialize)]
struct Answer<'a> {
    allowed: bool,
    reason: &'a str,
    request: &'a RequestInfo,
}

fn request_from_args(args: &AuthorizeArgs) -> Result<RequestInfo, Diagnostics> {
    let invalid = |m: &str| Diagnostics::from(Diagnostic::error(m));
    if let (Some(method), Some(path)) = (&args.method, &args.path) {
        if !path.starts_with('/') {
            return Err(invalid("--path must start with '/'"));
        }
        // The method is taken as given: HTTP methods are case-sensitive, and the API
        // server reads `get` as an unknown method (verb "").
        return RequestInfo::parse(method, path).map_err(|e| invalid(&format!("--path: {e}")));
    }
    let Some(verb) = &args.verb else {
        return Err(invalid(
            "give the request as --method and --path, as --verb and --resource, or as --verb and --non-resource-path",
        ));
    };
    if let Some(path) = &args.non_resource_path {
        return Ok(RequestInfo {
            is_resource_request: false,
            verb: verb.clone(),
            path: path.clone(),
            ..RequestInfo::default()
        });
    }
    let Some(resource) = &args.resource else {
        return Err(invalid("--verb needs --resource or --non-resource-path"));
    };
    Ok(RequestInfo {
        is_resource_request: true,
        verb: verb.clone(),
        api_group: args.api_group.clone().unwrap_or_default(),
        namespace: args.namespace.clone().unwrap_or_default(),
        resource: resource.clone(),
        subresource: args.subresource.clone().unwrap_or_default(),
        name: args.name.clone().unwrap_or_default(),
        ..RequestInfo::default()
    })
}
