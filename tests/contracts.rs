//! Contract tests: the vendor documents are the contract.
//!
//! - The examples of every document in `vendor-apis/` are extracted into
//!   `src/emulator/documented/` (checked here against the documents whenever
//!   they are at hand; `DBOPS_UPDATE_CONTRACTS=1` rewrites them).
//! - Every client is run against a server that answers with the documented
//!   examples and nothing else, and against each emulator in strict mode.

#[path = "contracts/extract.rs"]
mod extract;

use std::path::PathBuf;

use dbops::emulator::documented::{DOCUMENTS, Document};

fn documents_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vendor-apis")
}

#[test]
fn the_extracted_examples_match_the_documents() {
    let dir = documents_dir();
    if !dir.is_dir() {
        eprintln!(
            "NOTE: {} is not here, so the extracted examples were not compared with the documents",
            dir.display()
        );
        return;
    }
    let update = std::env::var_os("DBOPS_UPDATE_CONTRACTS").is_some();
    for (name, committed) in DOCUMENTS {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let extracted = extract::extract(name, &text);
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/emulator/documented")
            .join(name.replace(".txt", ".json"));
        if update {
            let mut json = serde_json::to_string_pretty(&extracted).unwrap();
            json.push('\n');
            std::fs::write(&file, json).unwrap();
            continue;
        }
        let committed: Document = serde_json::from_str(committed).unwrap();
        assert!(
            committed == extracted,
            "{} no longer matches {name}: run DBOPS_UPDATE_CONTRACTS=1 cargo test --test contracts",
            file.display()
        );
    }
}
