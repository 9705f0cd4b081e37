//! `palisade schema`

use std::path::Path;

use super::{CannotRun, Status};

pub fn run(out: &Path, check: bool) -> Result<Status, CannotRun> {
    let mut stale = Vec::new();
    for (name, text) in crate::schema::all() {
        let path = out.join(name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(out)
                .map_err(|e| CannotRun(format!("cannot create `{}`: {e}", out.display())))?;
            std::fs::write(&path, text)
                .map_err(|e| CannotRun(format!("cannot write `{}`: {e}", path.display())))?;
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        Ok(Status::Ok)
    } else {
        println!(
            "stale: {} (run `palisade schema --out {}`)",
            stale.join(", "),
            out.display()
        );
        Ok(Status::Findings)
    }
}
