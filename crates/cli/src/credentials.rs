//! Credentials: `principal passwd` and `token create|list|revoke`. Passwords are read from the
//! terminal without echo (or one line of stdin); a token's secret is printed once.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::args::{Cli, parse_duration};
use crate::lake::open;
use crate::output::{self, made, print_rows, show};

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Make an API token for a principal and print it once (only its hash is kept); lake
    /// administrators only. It proves the principal wherever a bearer token is accepted
    /// (`Lake::authenticate_token`); it is not a PostgreSQL password.
    Create {
        /// The principal (yourself, or anyone if you are a lake administrator).
        name: String,
        /// How long it works, e.g. 30d, 12h (default: until revoked).
        #[arg(long)]
        expires: Option<String>,
        /// What it is for, shown in listings.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List tokens (of one principal, or of all for lake administrators): ids, labels, expiry.
    List { name: Option<String> },
    /// Revoke a token: it stops working at once.
    Revoke { name: String, id: String },
}

/// The password for `name`: typed twice on the terminal, or the first line of stdin.
pub fn read_password(name: &str, from_stdin: bool) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let pw = line.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            bail!("--password-stdin: the first line of standard input is empty");
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password of {name}: pass --password-stdin and write it to standard input");
    }
    let first = rpassword::prompt_password(format!("new password for {name}: ")).context("reading the password")?;
    let second = rpassword::prompt_password("again: ").context("reading the password")?;
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

/// `stratalake token ...`.
pub async fn token(cli: &Cli, cmd: &TokenCmd) -> Result<()> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    match cmd {
        TokenCmd::Create { name, expires, label } => {
            let valid_for = expires
                .as_deref()
                .map(parse_duration)
                .transpose()
                .context("--expires")?;
            let t = lake.access().create_token(name, label, valid_for).await?;
            let expires = t.expires_ms.map(stratalake::table::clock::fmt_ms);
            let doc = serde_json::json!({
                "principal": name,
                "id": t.id,
                "token": t.secret.as_str(),
                "expires": expires,
            });
            let human = |_| {
                println!("{}", t.secret.as_str());
                eprintln!(
                    "token {} for {name}{}: shown only now, keep it safe",
                    t.id,
                    expires
                        .as_ref()
                        .map(|e| format!(", valid until {e}"))
                        .unwrap_or_default()
                );
                Ok(())
            };
            show(fmt, &made(doc, human).with_style(output::JsonStyle::Line))?;
        }
        TokenCmd::List { name } => {
            let tokens = lake.access().tokens(name.as_deref()).await?;
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.principal.clone(),
                        t.label.clone(),
                        stratalake::table::clock::fmt_ms(t.created_ms),
                        t.expires_ms.map(stratalake::table::clock::fmt_ms).unwrap_or_default(),
                        if t.expired { "expired" } else { "valid" }.to_string(),
                    ]
                })
                .collect();
            print_rows(&["id", "principal", "label", "created", "expires", "state"], rows, fmt)?;
        }
        TokenCmd::Revoke { name, id } => {
            lake.access().revoke_token(name, id).await?;
            output::done(fmt, format!("token {id} of {name} revoked"))?;
        }
    }
    Ok(())
}
