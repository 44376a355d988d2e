//! The counts export: `export` (the folder of JSON-lines files, how big one grows and
//! how many are kept).

use super::fields::{error, Fields, Result};
use crate::config::yaml::{Key, Node};
use crate::config::ExportConfig;

/// `export: { dir: …, max_file_size: 64MiB, keep_files: 10 }`
pub(super) fn export(key: &Key, node: &Node) -> Result<ExportConfig> {
    let f = Fields::new(
        node,
        "export",
        key.pos,
        &["dir", "max_file_size", "keep_files"],
    )?;
    let Some(dir) = f.path("dir")? else {
        return error(
            key.pos,
            "export",
            "missing key `dir` (where the JSON-lines files go)",
        );
    };
    let max_file_size = f.size(
        "max_file_size",
        DEFAULT_EXPORT_FILE_SIZE,
        MIN_EXPORT_FILE_SIZE,
        MAX_EXPORT_FILE_SIZE,
    )?;
    let keep_files = f.whole("keep_files", DEFAULT_EXPORT_KEEP_FILES as u64, 0, 100_000)? as usize;
    Ok(ExportConfig {
        dir,
        max_file_size,
        keep_files,
    })
}

const DEFAULT_EXPORT_FILE_SIZE: u64 = 64 * 1024 * 1024;
const MIN_EXPORT_FILE_SIZE: u64 = 1024;
const MAX_EXPORT_FILE_SIZE: u64 = 4 * 1024 * 1024 * 1024;
const DEFAULT_EXPORT_KEEP_FILES: usize = 10;
