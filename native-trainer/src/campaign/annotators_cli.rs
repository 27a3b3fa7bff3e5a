//! `dpo annotators add | list | revoke`: the people allowed to label under
//! `dpo serve --access invite`. `add` prints an invite link and, as the last stdout line, the
//! token alone; the store keeps only the token's sha256. The link carries the token in its
//! fragment (`#invite=…`), which browsers never send to a server; the app stores it and
//! removes it from the address bar.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::label_analytics::annotator_agreement::agreement;
use crate::store::annotator_records::{new_token, token_hash};
use crate::store::open_store;

#[derive(Subcommand, Debug)]
pub enum AnnotatorsCommand {
    /// Invite an annotator: prints the invite link, then the bearer token alone (last line).
    Add(AddArgs),
    /// Every annotator with their labels, agreement with the majority and last activity.
    List(StoreArgs),
    /// Revoke an annotator's token: their requests are refused (403) from now on; their
    /// labels stay.
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Pair database: `sqlite:PATH` or `postgres://…`.
    #[arg(long)]
    pub db: String,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// What the annotator's pairs record as `annotator_id` (letters, digits, - _ . :).
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The app's address as annotators reach it, for the invite link.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server_url: String,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn check_name(name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !ok {
        bail!("annotator name `{name}`: use 1 to 128 letters, digits, - _ . or :");
    }
    if name.starts_with("anon-") {
        bail!("annotator name `{name}`: `anon-` names the open mode's anonymous labellers");
    }
    Ok(())
}

pub fn run(command: &AnnotatorsCommand) -> Result<()> {
    match command {
        AnnotatorsCommand::Add(args) => {
            check_name(&args.name)?;
            let token = new_token()?;
            open_store(&args.store.db)?.add_annotator(&args.name, &token_hash(&token))?;
            tracing::info!("invited {}", args.name);
            println!(
                "invite link for {}: {}/#invite={token}",
                args.name,
                args.server_url.trim_end_matches('/')
            );
            println!("{token}");
        }
        AnnotatorsCommand::Revoke(args) => {
            if !open_store(&args.store.db)?.revoke_annotator(&args.name)? {
                bail!("no annotator named `{}`", args.name);
            }
            println!("revoked {}", args.name);
        }
        AnnotatorsCommand::List(args) => {
            let store = open_store(&args.db)?;
            let pairs = store.all_pairs()?;
            let majority = agreement(&pairs).majority;
            println!("| annotator | status | labels | agreement with majority | last active |");
            println!("|---|---|---:|---:|---|");
            for annotator in store.annotators()? {
                let theirs = pairs.iter().filter(|p| p.annotator_id == annotator.name);
                let labels = theirs.clone().count();
                let last = theirs
                    .map(|p| p.voted_at)
                    .max()
                    .map(|t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default())
                    .unwrap_or_else(|| "-".into());
                let agreement = majority
                    .get(&annotator.name)
                    .and_then(|m| {
                        m.share()
                            .map(|s| format!("{s:.2} ({} compared)", m.compared))
                    })
                    .unwrap_or_else(|| "-".into());
                let status = match &annotator.revoked_at {
                    Some(at) => format!("revoked {at}"),
                    None => "active".into(),
                };
                println!(
                    "| {} | {status} | {labels} | {agreement} | {last} |",
                    annotator.name
                );
            }
        }
    }
    Ok(())
}
