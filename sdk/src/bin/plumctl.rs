//! `plumctl`: the command line for a Plum cluster. Parses the command (`cli`), runs it
//! (`commands`, talking to the cluster only through `api`), prints tables or JSON (`output`),
//! and ends with an exit code scripts can rely on (`error::exit`, also in `--help`).

// A binary's root resolves `mod x;` next to itself: point into plumctl/.
#[path = "plumctl/api.rs"]
mod api;
#[path = "plumctl/cli.rs"]
mod cli;
#[path = "plumctl/commands/mod.rs"]
mod commands;
#[path = "plumctl/error.rs"]
mod error;
#[path = "plumctl/output.rs"]
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit 2 and `--help` 0 (clap's own codes, which match ours).
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plumctl: cannot start: {e}");
            return ExitCode::from(error::exit::REFUSED);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::from(error::exit::OK),
        Err(error::CtlError::BrokenPipe) => ExitCode::from(error::exit::OK),
        Err(e) => {
            eprintln!("plumctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
