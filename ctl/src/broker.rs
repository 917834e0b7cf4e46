//! The embedded Kafka-protocol broker (nisshi 0.7.0-pre.2): where its binary is.

use std::path::PathBuf;

/// The version the set-up path installs (see docs/ARCHITECTURE.md for why this one).
pub const NISSHI_VERSION: &str = "0.7.0-pre.2";

/// Where `scripts/bootstrap.sh` installs tools: `$CHAT4ALL_TOOLS` or `~/.cache/chat4all/tools`.
pub fn tools_root() -> PathBuf {
    if let Ok(p) = std::env::var("CHAT4ALL_TOOLS") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/chat4all/tools")
}

/// `$CHAT4ALL_NISSHI`, then the tools cache, then `PATH`.
pub fn locate() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CHAT4ALL_NISSHI") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let cached = tools_root().join("bin/nisshi");
    if cached.is_file() {
        return Some(cached);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("nisshi")).find(|p| p.is_file()))
}
