//! Run metadata collected at init: host, OS, program and arguments, language, client version.
//! (System metrics, GPUs and git come with the telemetry work.)

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
    meta
}
