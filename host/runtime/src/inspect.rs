//! Tells, before compiling anything, whether bytes are a Courier plugin and of which kind, and
//! otherwise exactly why not (not wasm, a core module, other exports, another contract version).

use wasmparser::{Encoding, Parser, Payload};

use crate::bindings::{CONTRACT_VERSION, DESTINATION_EXPORT, HANDLER_EXPORT};
use crate::error::LoadError;
use crate::model::PluginKind;

const WASM_MAGIC: &[u8] = b"\0asm";

/// The kind of plugin `bytes` is, judged by its top-level exports.
pub(crate) fn plugin_kind(bytes: &[u8]) -> Result<PluginKind, LoadError> {
    if !bytes.starts_with(WASM_MAGIC) {
        return Err(LoadError::NotWasm);
    }
    let exports = top_level_exports(bytes)?;
    let handler = exports.iter().any(|e| e == HANDLER_EXPORT);
    let destination = exports.iter().any(|e| e == DESTINATION_EXPORT);
    match (handler, destination) {
        (true, true) => Err(LoadError::BothKinds),
        (true, false) => Ok(PluginKind::Handler),
        (false, true) => Ok(PluginKind::Destination),
        (false, false) => {
            let other_version = exports.iter().find(|export| {
                let unversioned = export.split('@').next().unwrap_or("");
                unversioned == "courier:plugin/handler"
                    || unversioned == "courier:plugin/destination"
            });
            match other_version {
                Some(found) => Err(LoadError::ContractVersion {
                    found: found.clone(),
                    supported: CONTRACT_VERSION,
                }),
                None => Err(LoadError::NotAPlugin { exports }),
            }
        }
    }
}

/// The names the component exports at its top level (not those of nested modules and
/// components).
fn top_level_exports(bytes: &[u8]) -> Result<Vec<String>, LoadError> {
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|error| LoadError::Malformed(error.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } if depth == 0 && encoding == Encoding::Module => {
                return Err(LoadError::CoreModule);
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let export = export.map_err(|error| LoadError::Malformed(error.to_string()))?;
                    exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_wasm() {
        assert!(matches!(plugin_kind(b"hello"), Err(LoadError::NotWasm)));
        assert!(matches!(plugin_kind(b""), Err(LoadError::NotWasm)));
    }

    #[test]
    fn core_module() {
        let module = b"\0asm\x01\0\0\0";
        assert!(matches!(plugin_kind(module), Err(LoadError::CoreModule)));
    }

    #[test]
    fn empty_component() {
        let component = b"\0asm\x0d\0\x01\0";
        match plugin_kind(component) {
            Err(LoadError::NotAPlugin { exports }) => assert!(exports.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated() {
        let component = b"\0asm\x0d\0\x01\0\x0b\x05";
        assert!(matches!(
            plugin_kind(component),
            Err(LoadError::Malformed(_))
        ));
    }
}
