//! System metrics, sampled on a background thread, under W&B's key names (`system.cpu`,
//! `system.gpu.0.temp`, ...) so that dashboards carry over.
//!
//! CPU, memory, disk and network come from sysinfo; NVIDIA GPUs from NVML, loaded at run time
//! (nvml-wrapper opens `libnvidia-ml.so` when asked): without a driver there are no GPU keys and
//! no error. Counters (disk I/O, network) are reported since the sampler started.

use std::path::Path;
use std::time::Duration;

use cairn_types::value::{Map, Value};
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

const MB: f64 = 1024.0 * 1024.0;
const GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Takes samples; keep one for the life of the run (CPU usage is measured between samples).
pub struct Sampler {
    system: System,
    disks: Disks,
    networks: Networks,
    nvml: Option<Nvml>,
    pid: Pid,
    /// Mount points whose usage is reported (W&B's default: `/`).
    mounts: Vec<String>,
    disk_io_start: (u64, u64),
    network_start: (u64, u64),
}

fn disk_io(disks: &Disks) -> (u64, u64) {
    disks.list().iter().fold((0, 0), |(r, w), d| {
        let u = d.usage();
        (r + u.total_read_bytes, w + u.total_written_bytes)
    })
}

fn network_totals(networks: &Networks) -> (u64, u64) {
    networks.list().iter().filter(|(name, _)| name.as_str() != "lo").fold((0, 0), |(s, r), (_, n)| (s + n.total_transmitted(), r + n.total_received()))
}

impl Sampler {
    pub fn new() -> Sampler {
        let mut system = System::new();
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        let disks = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage().with_io_usage());
        let networks = Networks::new_with_refreshed_list();
        let pid = Pid::from_u32(std::process::id());
        let mut sampler = Sampler {
            disk_io_start: disk_io(&disks),
            network_start: network_totals(&networks),
            system,
            disks,
            networks,
            nvml: Nvml::init().ok(),
            pid,
            mounts: vec!["/".to_owned()],
        };
        sampler.refresh_processes();
        sampler
    }

    fn refresh_processes(&mut self) {
        self.system.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing().with_cpu().with_memory());
    }

    /// The process and its descendants.
    fn process_tree(&self) -> Vec<Pid> {
        let processes = self.system.processes();
        let mut tree = vec![self.pid];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(processes.iter().filter(|(_, p)| p.parent() == Some(parent)).map(|(pid, _)| *pid));
            i += 1;
        }
        tree
    }

    /// One sample: `(key, value)` pairs with the `system.` prefix.
    pub fn sample(&mut self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::with_capacity(32);
        self.system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        self.system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.refresh_processes();
        let cpus = self.system.cpus().len().max(1) as f64;
        let tree = self.process_tree();
        let processes = self.system.processes();
        let (cpu, rss) = tree.iter().filter_map(|pid| processes.get(pid)).fold((0.0f64, 0u64), |(c, m), p| (c + f64::from(p.cpu_usage()), m + p.memory()));
        // W&B's `cpu`: the process's share of the whole machine, in percent.
        out.push(("system.cpu".into(), cpu / cpus));
        for (i, core) in self.system.cpus().iter().enumerate() {
            out.push((format!("system.cpu.{i}.cpu_percent"), f64::from(core.cpu_usage())));
        }
        let total = self.system.total_memory() as f64;
        let available = self.system.available_memory() as f64;
        if total > 0.0 {
            out.push(("system.memory_percent".into(), (total - available) / total * 100.0));
            out.push(("system.proc.memory.percent".into(), rss as f64 / total * 100.0));
        }
        out.push(("system.proc.memory.rssMB".into(), rss as f64 / MB));
        out.push(("system.proc.memory.availableMB".into(), available / MB));

        self.disks.refresh_specifics(false, DiskRefreshKind::nothing().with_storage().with_io_usage());
        for mount in &self.mounts {
            if let Some(disk) = self.disks.list().iter().find(|d| d.mount_point() == Path::new(mount)) {
                let size = disk.total_space() as f64;
                let used = size - disk.available_space() as f64;
                if size > 0.0 {
                    out.push((format!("system.disk.{mount}.usagePercent"), used / size * 100.0));
                }
                out.push((format!("system.disk.{mount}.usageGB"), used / GB));
            }
        }
        let (read, written) = disk_io(&self.disks);
        out.push(("system.disk.in".into(), read.saturating_sub(self.disk_io_start.0) as f64 / MB));
        out.push(("system.disk.out".into(), written.saturating_sub(self.disk_io_start.1) as f64 / MB));

        self.networks.refresh(true);
        let (sent, received) = network_totals(&self.networks);
        out.push(("system.network.sent".into(), sent.saturating_sub(self.network_start.0) as f64));
        out.push(("system.network.recv".into(), received.saturating_sub(self.network_start.1) as f64));

        if let Some(nvml) = &self.nvml {
            gpu_sample(nvml, &mut out);
        }
        out
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

fn gpu_sample(nvml: &Nvml, out: &mut Vec<(String, f64)>) {
    let count = nvml.device_count().unwrap_or(0);
    for i in 0..count {
        let Ok(device) = nvml.device_by_index(i) else { continue };
        let key = |name: &str| format!("system.gpu.{i}.{name}");
        if let Ok(u) = device.utilization_rates() {
            out.push((key("gpu"), f64::from(u.gpu)));
            out.push((key("memory"), f64::from(u.memory)));
        }
        if let Ok(m) = device.memory_info()
            && m.total > 0
        {
            out.push((key("memoryAllocated"), m.used as f64 / m.total as f64 * 100.0));
            out.push((key("memoryAllocatedBytes"), m.used as f64));
        }
        if let Ok(t) = device.temperature(TemperatureSensor::Gpu) {
            out.push((key("temp"), f64::from(t)));
        }
        if let Ok(mw) = device.power_usage() {
            out.push((key("powerWatts"), f64::from(mw) / 1000.0));
            if let Ok(limit) = device.enforced_power_limit()
                && limit > 0
            {
                out.push((key("powerPercent"), f64::from(mw) / f64::from(limit) * 100.0));
            }
        }
    }
}

/// The machine, for the run's metadata: CPU model and count, memory, GPUs and the CUDA driver.
pub fn hardware() -> Map {
    let mut meta = Map::new();
    let mut system = System::new();
    system.refresh_cpu_list(CpuRefreshKind::nothing());
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    if let Some(cpu) = system.cpus().first() {
        meta.insert("cpu_model".into(), Value::from(cpu.brand().trim().to_owned()));
    }
    meta.insert("cpu_count_logical".into(), Value::from(system.cpus().len()));
    if let Some(physical) = System::physical_core_count() {
        meta.insert("cpu_count".into(), Value::from(physical));
    }
    meta.insert("memory_gb".into(), Value::from((system.total_memory() as f64 / GB * 100.0).round() / 100.0));
    if let Ok(nvml) = Nvml::init() {
        let count = nvml.device_count().unwrap_or(0);
        meta.insert("gpu_count".into(), Value::from(count));
        let mut gpus = Vec::new();
        for i in 0..count {
            let Ok(device) = nvml.device_by_index(i) else { continue };
            let mut gpu = Map::new();
            gpu.insert("name".into(), Value::from(device.name().unwrap_or_default()));
            if let Ok(m) = device.memory_info() {
                gpu.insert("memory_gb".into(), Value::from((m.total as f64 / GB * 100.0).round() / 100.0));
            }
            gpus.push(Value::Map(gpu));
        }
        if let Some(Value::Map(first)) = gpus.first() {
            meta.insert("gpu_name".into(), first.get("name").cloned().unwrap_or(Value::Null));
            meta.insert("gpu_memory_gb".into(), first.get("memory_gb").cloned().unwrap_or(Value::Null));
        }
        meta.insert("gpu_devices".into(), Value::List(gpus));
        if let Ok(driver) = nvml.sys_driver_version() {
            meta.insert("gpu_driver_version".into(), Value::from(driver));
        }
        if let Ok(cuda) = nvml.sys_cuda_driver_version() {
            meta.insert("cuda_version".into(), Value::from(format!("{}.{}", cuda / 1000, (cuda % 1000) / 10)));
        }
    }
    meta
}

/// CPU time this thread has used, for the cost of sampling.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_has_the_wandb_keys_with_plausible_values() {
        let mut sampler = Sampler::new();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let sample: std::collections::HashMap<String, f64> = sampler.sample().into_iter().collect();
        for key in [
            "system.cpu",
            "system.cpu.0.cpu_percent",
            "system.memory_percent",
            "system.proc.memory.rssMB",
            "system.proc.memory.percent",
            "system.proc.memory.availableMB",
            "system.disk.in",
            "system.disk.out",
            "system.network.sent",
            "system.network.recv",
        ] {
            let v = sample.get(key).unwrap_or_else(|| panic!("{key} missing from {sample:?}"));
            assert!(v.is_finite() && *v >= 0.0, "{key} = {v}");
        }
        assert!(sample["system.memory_percent"] > 0.0 && sample["system.memory_percent"] <= 100.0);
        // This test process holds at least a megabyte.
        assert!(sample["system.proc.memory.rssMB"] > 1.0, "{sample:?}");
        let hw = hardware();
        assert!(hw.contains_key("cpu_count_logical") && hw.contains_key("memory_gb"), "{hw:?}");
    }
}
