//! `scripts/layers`, the house rule that `scripts/lint` enforces: it passes on src/ as it is, and
//! refuses a copy of src/ with an import up a layer, one between modules of a layer, or a loop.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the check on `src` and returns (success, output).
fn layers(src: &Path) -> (bool, String) {
    let out = Command::new(root().join("scripts/layers"))
        .arg(src)
        .output()
        .expect("scripts/layers runs (python3)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

/// A copy of src/ with `line` appended to `file`.
fn src_with(file: &str, line: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy(&root().join("src"), dir.path());
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n{line}\n")).unwrap();
    dir
}

fn copy(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&target).unwrap();
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn src_is_layered() {
    let (ok, text) = layers(&root().join("src"));
    assert!(ok, "{text}");
    assert!(text.contains("no import up a layer, no loop"), "{text}");
}

/// `scripts/layers` fails on a copy of src/ with `line` appended to `file`, saying `why`.
fn refused(file: &str, line: &str, why: &str) {
    let src = src_with(file, line);
    let (ok, text) = layers(src.path());
    assert!(!ok && text.contains(why), "{file} + {line:?}: {text}");
}

#[test]
fn an_import_up_a_layer_is_refused() {
    refused(
        "token/cache.rs",
        "use crate::authz::Decision;",
        "token/cache imports authz::Decision: authz is a layer above token",
    );
}

#[test]
fn modules_of_one_layer_do_not_import_each_other() {
    refused(
        "http/admin.rs",
        "fn f() { crate::grpc::convert::check_response(); }",
        "http and grpc share a layer",
    );
}

#[test]
fn a_loop_between_files_of_one_module_is_refused() {
    // decision.rs imports path.rs; path.rs importing decision.rs back closes a loop.
    refused(
        "authz/path.rs",
        "use super::decision::Decision;",
        "files in a loop: authz::decision, authz::path",
    );
}

#[test]
fn test_code_may_reach_anywhere() {
    let src = src_with(
        "token/cache.rs",
        "#[cfg(test)]\nmod more_tests {\n    use crate::app::Core;\n}",
    );
    let (ok, text) = layers(src.path());
    assert!(ok, "{text}");
}
