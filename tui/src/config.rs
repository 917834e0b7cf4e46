//! Where the key map comes from: `--keys PATH`, else `$CHAT4ALL_HOME/tui.toml`, else
//! `$XDG_CONFIG_HOME/chat4all/tui.toml` (`~/.config/chat4all/tui.toml`); the defaults when none exists.

use std::path::{Path, PathBuf};

use crate::keys::KeyMap;

/// The candidate files, in order.
pub fn candidates(explicit: Option<&Path>, data_dir: &Path) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let mut v = vec![data_dir.join("tui.toml")];
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(c) = config_home {
        v.push(c.join("chat4all").join("tui.toml"));
    }
    v
}

/// The key map and the file it came from. An explicit path must exist; a bad file is an error
/// naming the file and line.
pub fn load(explicit: Option<&Path>, data_dir: &Path) -> anyhow::Result<(KeyMap, Option<PathBuf>)> {
    for path in candidates(explicit, data_dir) {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let map = KeyMap::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                return Ok((map, Some(path)));
            }
            Err(e) if explicit.is_some() => return Err(anyhow::anyhow!("{}: {e}", path.display())),
            Err(_) => continue,
        }
    }
    Ok((KeyMap::default(), None))
}
