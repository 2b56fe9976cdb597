//! API keys saved per server by `cairn login`: one file per host under
//! `$CAIRN_CONFIG_DIR` (default `$XDG_CONFIG_HOME/cairn`, else `~/.config/cairn`), in
//! `keys/<scheme>_<host>_<port>`, mode 0600. A key is found, in order: given in code
//! (`cairn.init(api_key=...)`, `cairn.login(key=...)`), `CAIRN_API_KEY`, then this file.

use std::path::PathBuf;

use crate::error::{ClientError, ErrorKind, Result};

/// Where the configuration lives.
fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CAIRN_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("cairn"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config").join("cairn"))
}

/// `scheme_host_port` of a base URL (the port of the scheme when it names none), as a file
/// name: a key saved for https is not sent over plain http.
fn host_file_name(base_url: &str) -> Option<String> {
    let (scheme, rest, default_port) = match base_url.split_once("://") {
        Some(("https", rest)) => ("https", rest, 443),
        Some((_, rest)) => ("http", rest, 80),
        None => ("http", base_url, 80),
    };
    let authority = rest.split('/').next()?.to_ascii_lowercase();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host.to_owned(), after.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default_port))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (authority.clone(), default_port),
        },
    };
    let host: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    (!host.is_empty()).then(|| format!("{scheme}_{host}_{port}"))
}

/// The file that holds the key for the server at `base_url`.
pub fn key_file(base_url: &str) -> Option<PathBuf> {
    Some(config_dir()?.join("keys").join(host_file_name(base_url)?))
}

/// The key saved for `base_url`, if any.
pub fn saved_key(base_url: &str) -> Option<String> {
    let text = std::fs::read_to_string(key_file(base_url)?).ok()?;
    let key = text.trim();
    (!key.is_empty()).then(|| key.to_owned())
}

/// Saves `key` for `base_url`, readable by this user only; returns the file.
pub fn save_key(base_url: &str, key: &str) -> Result<PathBuf> {
    let key = key.trim();
    check_format(key)?;
    let path = key_file(base_url).ok_or_else(|| ClientError::new(ErrorKind::InvalidSetting, "no place for the key: set HOME or CAIRN_CONFIG_DIR"))?;
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).map_err(|e| ClientError::io("create", dir, e))?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| ClientError::io("write", &tmp, e))?;
        file.write_all(format!("{key}\n").as_bytes()).map_err(|e| ClientError::io("write", &tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| ClientError::io("write", &path, e))?;
    Ok(path)
}

/// A key is at least 40 characters of `[A-Za-z0-9_-]`.
pub fn check_format(key: &str) -> Result<()> {
    if key.len() < 40 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ClientError::new(
            ErrorKind::InvalidSetting,
            "an API key is at least 40 characters of letters, digits, '_' and '-' (create one with `cairn keys create` or in the UI's settings)",
        ));
    }
    Ok(())
}

/// The key for `base_url`: the one given, else `CAIRN_API_KEY`, else the saved one.
pub fn resolve(given: Option<String>, base_url: &str) -> Option<String> {
    given.filter(|k| !k.is_empty()).or_else(|| std::env::var(crate::settings::env::API_KEY).ok().filter(|v| !v.is_empty())).or_else(|| saved_key(base_url))
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_file_per_host_and_port() {
        use super::host_file_name as f;
        assert_eq!(f("http://127.0.0.1:8080").as_deref(), Some("http_127.0.0.1_8080"));
        assert_eq!(f("https://cairn.example.com/").as_deref(), Some("https_cairn.example.com_443"));
        assert_eq!(f("http://[::1]:9000/x").as_deref(), Some("http___1_9000"));
        assert_eq!(f("http://Host").as_deref(), Some("http_host_80"));
    }
}
