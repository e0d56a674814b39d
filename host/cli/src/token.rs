//! `tether token create|list|revoke`: API tokens for `tether serve`, kept (hashed) in
//! the journal's database.

use std::process::ExitCode;

use tether_app::{App, NewToken};
use tether_runtime::LeaseConfig;
use tether_types::access::{Role, TokenRecord};

use crate::cli::TokenCommand;
use crate::Failure;

pub(crate) fn token(command: TokenCommand) -> Result<ExitCode, Failure> {
    let rt = crate::setup::async_runtime()?;
    rt.block_on(async {
        match command {
            TokenCommand::Create(args) => {
                let mut roles = Vec::new();
                for name in &args.roles {
                    roles.push(Role::parse(name).ok_or_else(|| {
                        Failure::usage(format!(
                            "--role `{name}`: not a role (viewer, runner, approver, operator, admin)"
                        ))
                    })?);
                }
                let expires_us = match &args.expires_in {
                    None => None,
                    Some(d) => {
                        let d = humantime::parse_duration(d).map_err(|e| {
                            Failure::usage(format!("--expires-in `{d}`: {e}; write a duration such as 90d"))
                        })?;
                        Some(crate::output::now_us() + d.as_micros() as u64)
                    }
                };
                let store = args.db.open().await?;
                let app = App::new(store, tether_runtime::RuntimeConfig::default(), LeaseConfig::default());
                let new = NewToken { name: args.name.clone(), identity: args.identity.clone(), roles, expires_us };
                let (token, record) = app.create_token(new).await?;
                if args.json {
                    let doc = serde_json::json!({ "token": token, "record": record });
                    println!("{}", crate::output::json(&doc));
                } else {
                    println!("{token}");
                    eprintln!(
                        "token `{}` acts as {} ({}); it is shown only now: keep it (TETHER_TOKEN) and pass it as \
                         `Authorization: Bearer TOKEN`",
                        record.name,
                        record.identity,
                        roles_text(&record)
                    );
                }
            }
            TokenCommand::List(args) => {
                let tokens = args.db.reader().await?.tokens().await?;
                if args.json {
                    println!("{}", crate::output::json(&serde_json::json!({ "tokens": tokens })));
                } else if tokens.is_empty() {
                    eprintln!("no tokens; make one with `tether token create NAME --identity WHO --role ROLE`");
                } else {
                    for t in &tokens {
                        let state = match (t.revoked_us, t.expires_us) {
                            (Some(_), _) => "revoked".to_string(),
                            (None, Some(e)) if e <= crate::output::now_us() => "expired".to_string(),
                            (None, Some(e)) => format!("expires {}", crate::output::rfc3339(e)),
                            (None, None) => "active".to_string(),
                        };
                        println!("{:<24} {:<16} {:<28} {}", t.name, t.identity, roles_text(t), state);
                    }
                }
            }
            TokenCommand::Revoke(args) => {
                let record = args.db.reader().await?.revoke_token(&args.name).await?;
                eprintln!("token `{}` ({}) is revoked", record.name, record.identity);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn roles_text(t: &TokenRecord) -> String {
    t.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}
