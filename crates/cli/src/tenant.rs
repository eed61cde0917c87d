//! `siyu tenant create|list`.

use crate::cli::{TenantArgs, TenantCommand};

pub fn run(args: TenantArgs) -> anyhow::Result<()> {
    match args.command {
        TenantCommand::Create { name, store, .. } => {
            let name = siyu_app::TenantName::parse(&name)?;
            let store = siyu_store::open(&store.location()?, siyu_store::Durability::Full)?;
            let keys = siyu_app::tenants::create(&*store, &name)?;
            println!("{}", serde_json::to_string(&keys)?);
        }
        TenantCommand::List { store, json } => {
            let store = siyu_store::open(&store.location()?, siyu_store::Durability::Full)?;
            let tenants = store.tenants()?;
            if json {
                let list: Vec<_> = tenants
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "tenant": t.name,
                            "created_at": siyu_domain::time::format_rfc3339(t.created_at),
                            "events": store.event_count(t.id).unwrap_or(0),
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "tenants": list }));
            } else {
                for t in tenants {
                    println!(
                        "{}\tcreated {}\t{} events",
                        t.name,
                        siyu_domain::time::format_rfc3339(t.created_at),
                        crate::output::n(store.event_count(t.id)?)
                    );
                }
            }
        }
    }
    Ok(())
}
