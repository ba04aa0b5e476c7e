//! `locus-s3-server --root DIR --bucket NAME [--port 0] [--credentials-file PATH]`
//!
//! Serves an S3-compatible API on 127.0.0.1, prints one line of JSON
//! (`endpoint`, `bucket`, `region`, `writer`, `reader`) to stdout and serves
//! until SIGTERM or SIGINT.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "locus-s3-server",
    about = "Loopback S3-compatible server with SigV4 verification"
)]
struct Args {
    /// Storage root directory; each bucket is a sub-directory.
    #[arg(long)]
    root: PathBuf,
    /// Bucket to create and serve.
    #[arg(long)]
    bucket: String,
    /// TCP port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Also write the JSON description (with secrets) to this file, mode 0600.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        // The mode above only applies to new files.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    if let Some(dir) = dir
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("locus-s3-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let args = Args::parse();
    // Install the handlers before announcing readiness, so a signal sent
    // right after the JSON line is read still stops the server cleanly.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let server = locus_s3_server::start_on(&args.root, &args.bucket, args.port).await?;
    let line = serde_json::to_string(&server.to_json())?;
    if let Some(path) = &args.credentials_file {
        write_private(path, &format!("{line}\n"))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    server.stop().await;
    Ok(())
}
