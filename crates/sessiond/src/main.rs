//! `sessiond`: parses arguments and hands over to the library (serve) or the admin client.

mod admin;
mod backup;
mod cli;
mod commands;
mod config;
mod error;
mod output;
mod serve;
mod telemetry;

use clap::Parser;
use cli::{Cli, Command, ConfigCommand};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Sessions { remote, command } => commands::sessions(&remote, command).await,
        Command::Rooms { remote, command } => commands::rooms(&remote, command).await,
        Command::Audit(args) => commands::audit(args).await,
        Command::Completions { shell } => commands::completions(shell),
        Command::Config { command } => match command {
            ConfigCommand::Check(args) => config::check(&args),
            ConfigCommand::Print(args) => config::print(&args),
        },
        Command::Backup(args) => backup::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessiond: error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping causes its own message already includes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
