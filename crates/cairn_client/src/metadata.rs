//! Run metadata collected at init: host, OS, program and arguments, language, client version,
//! the hardware (CPU, memory, GPUs, CUDA driver) and the git state of the working directory.

use cairn_types::value::{Map, Value};

fn uname() -> Option<(String, String)> {
    // SAFETY: uname fills the struct we own.
    let mut info: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut info) } != 0 {
        return None;
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some((field(&info.nodename), field(&info.release)))
}

pub fn username() -> Option<String> {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).or_else(|| {
        // SAFETY: getpwuid returns a pointer into static storage or null; we copy out at once.
        unsafe {
            let pw = libc::getpwuid(libc::getuid());
            if pw.is_null() {
                return None;
            }
            Some(std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
        }
    })
}

/// What the client knows about the process without being asked.
pub fn collect() -> Map {
    let mut meta = Map::new();
    let (host, release) = uname().unwrap_or_default();
    meta.insert("host".into(), Value::from(host));
    meta.insert("os".into(), Value::from(format!("{}-{}-{}", std::env::consts::OS, release, std::env::consts::ARCH)));
    let args: Vec<String> = std::env::args().collect();
    if let Some(program) = args.first() {
        meta.insert("program".into(), Value::from(program.clone()));
    }
    meta.insert("args".into(), Value::List(args.iter().skip(1).map(|a| Value::from(a.clone())).collect()));
    meta.insert("command".into(), Value::from(args.join(" ")));
    if let Ok(exe) = std::env::current_exe() {
        meta.insert("executable".into(), Value::from(exe.display().to_string()));
    }
    if let Ok(cwd) = std::env::current_dir() {
        meta.insert("cwd".into(), Value::from(cwd.display().to_string()));
    }
    meta.insert("pid".into(), Value::from(std::process::id()));
    meta.insert("language".into(), Value::from("rust"));
    meta.insert("language_version".into(), Value::from(env!("CAIRN_RUSTC_VERSION")));
    meta.insert("client_version".into(), Value::from(env!("CARGO_PKG_VERSION")));
    if let Some(user) = username() {
        meta.insert("username".into(), Value::from(user));
    }
    if let Ok(n) = std::thread::available_parallelism() {
        meta.insert("cpu_count".into(), Value::from(n.get()));
    }
    meta.extend(crate::system::hardware());
    meta
}

/// The git state of `dir`: remote, branch, commit and whether the tree is dirty, plus the diff
/// against `HEAD` when it is (for `diff.patch`). `None` outside a repository or without git.
pub struct GitState {
    pub meta: Map,
    pub diff: Option<Vec<u8>>,
}

fn git(dir: &std::path::Path, args: &[&str]) -> Option<Vec<u8>> {
    let output = std::process::Command::new("git").args(args).current_dir(dir).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::null()).output().ok()?;
    output.status.success().then_some(output.stdout)
}

fn git_line(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    git(dir, args).map(|out| String::from_utf8_lossy(&out).trim().to_owned()).filter(|s| !s.is_empty())
}

/// Drops the password from `https://user:secret@host/...`, so it is not stored with the run.
fn without_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && !userinfo.contains('/')
    {
        let user = userinfo.split(':').next().unwrap_or("");
        return if user.is_empty() { format!("{scheme}://{host}") } else { format!("{scheme}://{user}@{host}") };
    }
    url.to_owned()
}

pub fn git_state(dir: &std::path::Path) -> Option<GitState> {
    let root = git_line(dir, &["rev-parse", "--show-toplevel"])?;
    let mut meta = Map::new();
    meta.insert("root".into(), Value::from(root));
    if let Some(commit) = git_line(dir, &["rev-parse", "HEAD"]) {
        meta.insert("commit".into(), Value::from(commit));
    }
    if let Some(branch) = git_line(dir, &["rev-parse", "--abbrev-ref", "HEAD"]) {
        meta.insert("branch".into(), Value::from(branch));
    }
    if let Some(remote) = git_line(dir, &["remote", "get-url", "origin"])
        .or_else(|| git_line(dir, &["remote"]).and_then(|r| r.lines().next().and_then(|name| git_line(dir, &["remote", "get-url", name]))))
    {
        meta.insert("remote".into(), Value::from(without_credentials(&remote)));
    }
    let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|out| !out.is_empty());
    meta.insert("dirty".into(), Value::Bool(dirty));
    let diff = if dirty { git(dir, &["diff", "HEAD", "--binary"]).filter(|d| !d.is_empty()) } else { None };
    Some(GitState { meta, diff })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_dropped_from_remotes() {
        assert_eq!(without_credentials("https://me:token@example.com/a/b.git"), "https://me@example.com/a/b.git");
        assert_eq!(without_credentials("https://example.com/a.git"), "https://example.com/a.git");
        assert_eq!(without_credentials("git@example.com:a/b.git"), "git@example.com:a/b.git");
    }

    #[test]
    fn git_state_of_a_clean_then_dirty_repository() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("git").args(args).current_dir(dir.path()).output().unwrap().status.success();
            assert!(ok, "git {args:?}");
        };
        assert!(git_state(dir.path()).is_none());
        run(&["init", "-q", "-b", "trunk"]);
        run(&["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "first"]);
        std::fs::write(dir.path().join("train.py"), "print(1)\n").unwrap();
        run(&["add", "train.py"]);
        run(&["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "second"]);
        run(&["remote", "add", "origin", "https://user:secret@example.com/team/repo.git"]);
        let clean = git_state(dir.path()).unwrap();
        assert_eq!(clean.meta["branch"], Value::from("trunk"));
        assert_eq!(clean.meta["remote"], Value::from("https://user@example.com/team/repo.git"));
        assert_eq!(clean.meta["dirty"], Value::Bool(false));
        assert_eq!(clean.meta["commit"].as_str().unwrap().len(), 40);
        assert!(clean.diff.is_none());
        std::fs::write(dir.path().join("train.py"), "print(2)\n").unwrap();
        let dirty = git_state(dir.path()).unwrap();
        assert_eq!(dirty.meta["dirty"], Value::Bool(true));
        let diff = String::from_utf8(dirty.diff.unwrap()).unwrap();
        assert!(diff.contains("-print(1)") && diff.contains("+print(2)"), "{diff}");
    }
}
