//! Key bindings: the k9s-style defaults and remapping from a tiny config file of
//! `command = key[, key...]` lines (`#` starts a comment, quotes are optional).

use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key does in normal mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Quit,
    Help,
    Up,
    Down,
    NextPane,
    PrevPane,
    Filter,
    CommandMode,
    Back,
    Kill,
    Scale,
    Repartition,
    Pipeline,
    Brokers,
}

impl Command {
    pub const ALL: [Command; 14] = [
        Command::Help,
        Command::Quit,
        Command::Down,
        Command::Up,
        Command::NextPane,
        Command::PrevPane,
        Command::Filter,
        Command::CommandMode,
        Command::Back,
        Command::Kill,
        Command::Scale,
        Command::Repartition,
        Command::Pipeline,
        Command::Brokers,
    ];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Command::Quit => "quit",
            Command::Help => "help",
            Command::Up => "up",
            Command::Down => "down",
            Command::NextPane => "next-pane",
            Command::PrevPane => "prev-pane",
            Command::Filter => "filter",
            Command::CommandMode => "command",
            Command::Back => "back",
            Command::Kill => "kill",
            Command::Scale => "scale",
            Command::Repartition => "repartition",
            Command::Pipeline => "pipeline",
            Command::Brokers => "brokers",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Command::Quit => "quit (terminal restored)",
            Command::Help => "this help",
            Command::Up => "move up",
            Command::Down => "move down",
            Command::NextPane => "next pane",
            Command::PrevPane => "previous pane",
            Command::Filter => "filter rows by text",
            Command::CommandMode => "command mode: a chat4allctl verb (below), :q, :help",
            Command::Back => "back: close, cancel, clear the filter",
            Command::Kill => "kill the selected instance / the selected partition's owner",
            Command::Scale => "scale routers (prefilled with the current count)",
            Command::Repartition => "repartition chat-events (prefilled with one more partition)",
            Command::Pipeline => "pipeline pane (relay, outbox, channels, DLQ, stalls); again: back",
            Command::Brokers => "brokers pane (controller, under-replicated); again: back",
        }
    }

    /// Whether it changes the running platform (hidden by --read-only).
    pub fn destructive(self) -> bool {
        matches!(self, Command::Kill | Command::Scale | Command::Repartition)
    }

    fn parse(s: &str) -> Option<Self> {
        Command::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// One key with its modifiers (only ctrl is distinguished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

impl Key {
    pub const fn plain(code: KeyCode) -> Self {
        Self { code, ctrl: false }
    }
    pub const fn ch(c: char) -> Self {
        Self::plain(KeyCode::Char(c))
    }

    pub fn from_event(e: &KeyEvent) -> Self {
        // Shift is part of the code already (`X`, BackTab); only ctrl is kept.
        Self { code: e.code, ctrl: e.modifiers.contains(KeyModifiers::CONTROL) }
    }

    /// `q`, `?`, `tab`, `backtab`, `esc`, `enter`, `up`, `down`, `left`, `right`, `space`, `ctrl-c`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("ctrl-") {
            let mut chars = rest.chars();
            return match (chars.next(), chars.next()) {
                (Some(c), None) => Some(Self { code: KeyCode::Char(c.to_ascii_lowercase()), ctrl: true }),
                _ => None,
            };
        }
        let code = match s {
            "tab" => KeyCode::Tab,
            "backtab" | "shift-tab" => KeyCode::BackTab,
            "esc" => KeyCode::Esc,
            "enter" => KeyCode::Enter,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "space" => KeyCode::Char(' '),
            _ => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => return None,
                }
            }
        };
        Some(Self::plain(code))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        match self.code {
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::BackTab => f.write_str("shift-tab"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            _ => f.write_str("?"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyMapError {
    #[error("line {line}: expected `command = key`, got {text:?}")]
    Syntax { line: usize, text: String },
    #[error("line {line}: unknown command {name:?} (known: {known})")]
    UnknownCommand { line: usize, name: String, known: String },
    #[error("line {line}: unknown key {key:?} (a character, tab, esc, enter, up, down, left, right, ctrl-X)")]
    UnknownKey { line: usize, key: String },
}

/// Key -> command, in normal mode.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMap {
    bindings: Vec<(Key, Command)>,
}

impl Default for KeyMap {
    fn default() -> Self {
        use Command::*;
        let b = |k: Key, c| (k, c);
        Self {
            bindings: vec![
                b(Key::ch('?'), Help),
                b(Key::ch('q'), Quit),
                b(Key::ch('j'), Down),
                b(Key::plain(KeyCode::Down), Down),
                b(Key::ch('k'), Up),
                b(Key::plain(KeyCode::Up), Up),
                b(Key::plain(KeyCode::Tab), NextPane),
                b(Key::plain(KeyCode::Right), NextPane),
                b(Key::plain(KeyCode::BackTab), PrevPane),
                b(Key::plain(KeyCode::Left), PrevPane),
                b(Key::ch('/'), Filter),
                b(Key::ch(':'), CommandMode),
                b(Key::plain(KeyCode::Esc), Back),
                b(Key::ch('x'), Kill),
                b(Key::ch('s'), Scale),
                b(Key::ch('p'), Repartition),
                b(Key::ch('o'), Pipeline),
                b(Key::ch('b'), Brokers),
            ],
        }
    }
}

impl KeyMap {
    /// The defaults with the commands named in `text` rebound (a named command loses its default keys).
    pub fn parse(text: &str) -> Result<Self, KeyMapError> {
        let mut map = KeyMap::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = strip_comment(raw).trim();
            if content.is_empty() || content.starts_with('[') {
                continue;
            }
            let (name, keys) =
                content.split_once('=').ok_or_else(|| KeyMapError::Syntax { line, text: raw.trim().to_string() })?;
            let name = name.trim().trim_matches('"');
            let cmd = Command::parse(name).ok_or_else(|| KeyMapError::UnknownCommand {
                line,
                name: name.to_string(),
                known: Command::ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
            })?;
            let keys = keys.trim().trim_start_matches('[').trim_end_matches(']');
            let mut parsed = Vec::new();
            for k in keys.split(',') {
                let k = k.trim().trim_matches('"');
                if k.is_empty() {
                    continue;
                }
                parsed.push(Key::parse(k).ok_or_else(|| KeyMapError::UnknownKey { line, key: k.to_string() })?);
            }
            if parsed.is_empty() {
                return Err(KeyMapError::Syntax { line, text: raw.trim().to_string() });
            }
            map.bindings.retain(|(_, c)| *c != cmd);
            for k in parsed {
                map.bindings.retain(|(bound, _)| *bound != k);
                map.bindings.push((k, cmd));
            }
        }
        Ok(map)
    }

    pub fn command(&self, key: Key) -> Option<Command> {
        self.bindings.iter().find(|(k, _)| *k == key).map(|(_, c)| *c)
    }

    /// Keys bound to `cmd`, in binding order.
    pub fn keys(&self, cmd: Command) -> Vec<Key> {
        self.bindings.iter().filter(|(_, c)| *c == cmd).map(|(k, _)| *k).collect()
    }

    /// `x` or `x/X`, for hints and help.
    pub fn label(&self, cmd: Command) -> String {
        let keys = self.keys(cmd);
        if keys.is_empty() {
            return "unbound".into();
        }
        keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join("/")
    }
}

/// A comment starts at a `#` at the line start or after whitespace (so `help = "#"` binds `#`).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_k9s() {
        let m = KeyMap::default();
        assert_eq!(m.command(Key::ch('?')), Some(Command::Help));
        assert_eq!(m.command(Key::ch(':')), Some(Command::CommandMode));
        assert_eq!(m.command(Key::plain(KeyCode::Esc)), Some(Command::Back));
        assert_eq!(m.command(Key::ch('x')), Some(Command::Kill));
        assert_eq!(m.command(Key::ch('z')), None);
    }

    #[test]
    fn config_rebinds_and_drops_the_default() {
        let m = KeyMap::parse("# mine\nkill = \"X\"  # shift\nquit = q, ctrl-d\n\nhelp = \"#\"\n").unwrap();
        assert_eq!(m.command(Key::ch('X')), Some(Command::Kill));
        assert_eq!(m.command(Key::ch('x')), None);
        assert_eq!(m.command(Key { code: KeyCode::Char('d'), ctrl: true }), Some(Command::Quit));
        assert_eq!(m.command(Key::ch('#')), Some(Command::Help));
        assert_eq!(m.command(Key::ch('?')), None);
        assert_eq!(m.label(Command::Quit), "q/ctrl-d");
    }

    #[test]
    fn a_key_bound_twice_belongs_to_the_last_command() {
        let m = KeyMap::parse("scale = x").unwrap();
        assert_eq!(m.command(Key::ch('x')), Some(Command::Scale));
        assert!(m.keys(Command::Kill).is_empty());
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        assert!(matches!(KeyMap::parse("kill"), Err(KeyMapError::Syntax { line: 1, .. })));
        assert!(matches!(KeyMap::parse("\nnuke = x"), Err(KeyMapError::UnknownCommand { line: 2, .. })));
        assert!(matches!(KeyMap::parse("kill = f13"), Err(KeyMapError::UnknownKey { line: 1, .. })));
        assert!(matches!(KeyMap::parse("kill = "), Err(KeyMapError::Syntax { .. })));
    }
}
