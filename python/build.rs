//! Puts the `cairn` binary (the server with its web UI, and every subcommand) into the Python
//! package as `cairn/_bin/cairn`, so that `pip install ./python`, and a wheel built from it,
//! give a `cairn` command that needs nothing else. The extension itself never links it: a
//! training process loads the client only.
//!
//! Only release builds (what pip and maturin make) do this; debug builds (`cargo test`) skip it.
//! - `CAIRN_SERVER_BINARY=path`: copy that binary (CI builds it once, with `cargo build --release`);
//! - `CAIRN_WHEEL_SERVER=0`: leave it out (a client-only package; its `cairn` command says so);
//! - otherwise it is built here, by a nested cargo with a target directory of its own
//!   (`target/bundled`), since the outer cargo holds the lock of `target/release`.
//!
//! The copy is stripped of debug information when `strip` is there: the wheel stays small.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CAIRN_SERVER_BINARY");
    println!("cargo:rerun-if-env-changed=CAIRN_WHEEL_SERVER");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dest = manifest.join("cairn").join("_bin").join("cairn");
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    if std::env::var("CAIRN_WHEEL_SERVER").as_deref() == Ok("0") {
        let _ = std::fs::remove_file(&dest);
        return;
    }
    let workspace = manifest.parent().expect("python/ is inside the workspace").to_path_buf();
    let built = match std::env::var("CAIRN_SERVER_BINARY") {
        Ok(path) => {
            let path = PathBuf::from(path);
            let path = if path.is_absolute() { path } else { workspace.join(path) };
            println!("cargo:rerun-if-changed={}", path.display());
            path
        }
        Err(_) => build_cli(&workspace),
    };
    if !built.is_file() {
        panic!("the cairn binary to bundle is not at {}", built.display());
    }
    std::fs::create_dir_all(dest.parent().expect("dest has a folder")).expect("create cairn/_bin");
    let _ = std::fs::remove_file(&dest);
    let stripped = Command::new("strip").arg("--strip-debug").arg("-o").arg(&dest).arg(&built).status().is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), dest.display()));
    }
    set_executable(&dest);
}

/// `cargo build --release -p cairn_cli` in `target/bundled`; returns the binary.
fn build_cli(workspace: &Path) -> PathBuf {
    let target_dir = workspace.join("target").join("bundled");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["build", "--release", "--locked", "-p", "cairn_cli", "--manifest-path"]).arg(workspace.join("Cargo.toml")).arg("--target-dir").arg(&target_dir);
    // What the outer build set for itself (its features, flags and jobserver) is not the CLI's.
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_FEATURE_") || key.starts_with("CARGO_CFG_") || key == "CARGO_ENCODED_RUSTFLAGS" || key == "CARGO_MAKEFLAGS" || key == "RUSTC_WRAPPER" {
            command.env_remove(&key);
        }
    }
    for dir in ["crates", "ui/dist", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    let status = command.status().expect("run cargo to build the cairn binary");
    assert!(status.success(), "building the cairn binary failed (set CAIRN_WHEEL_SERVER=0 for a package without it)");
    target_dir.join("release").join("cairn")
}

#[cfg(unix)]
fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path).expect("the bundled binary exists").permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).expect("make the bundled binary executable");
}

#[cfg(not(unix))]
fn set_executable(_: &Path) {}
