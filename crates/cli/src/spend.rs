//! `siyu import-spend FILE.csv`: acquisition spend into the store (or through the server
//! that holds it), checked whole first (`siyu_app::spend`).

use anyhow::Context;

use crate::cli::ImportSpendArgs;
use crate::lead::{Target, target};
use crate::output;

pub fn run(args: ImportSpendArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let done = match target(&args.at, "import-spend", true)? {
        Target::Remote(remote) => {
            remote.send_raw("POST", "/api/spend", "text/csv", text.as_bytes())?
        }
        Target::Local(_lock) => {
            let (app, tenant) = args.at.open()?;
            let r = app
                .import_spend(tenant.id, &text)
                .with_context(|| format!("{} was not imported", args.file.display()))?;
            serde_json::to_value(r)?
        }
    };
    if args.json {
        return output::json(&done);
    }
    outln!(
        "imported {} spend rows ({} replaced), {} to {}, {} in all",
        done["rows"],
        done["replaced"],
        done["first_date"].as_str().unwrap_or("-"),
        done["last_date"].as_str().unwrap_or("-"),
        crate::report::yuan(done["amount_fen"].as_f64().unwrap_or(0.0))
    );
    Ok(())
}
