//! Media values (images, audio, video): staged on the training thread, encoded and stored by the
//! uploader.
//!
//! `log` writes what it is given to `media/pending/<id>` in the run directory as it is (pixels,
//! samples or an encoded file's bytes: one write, no encoding) and records a pending reference in
//! the log. The uploader meets that reference when it builds a batch: it encodes the data (PNG for
//! pixels, with a thumbnail when the image is large; WAV for samples), hashes it, writes it under
//! `media/files/` as a run file saved with the run, notes the result in `media/stored/<id>.json`,
//! and sends the record with the stored reference in place of the pending one. Each step is redone
//! from what is on disk if the process dies, by the same uploader after a restart or by
//! `cairn sync`, so nothing that `log` accepted is lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_types::media::{MAX_MEDIA_BYTES, Media, MediaFile, MediaKind, RawMedia, StoredFile, THUMB_PX, holds_unstored};
use cairn_types::value::{Map, Table, Value};
use cairn_types::wire::{self, HISTORY_PENDING_MEDIA, payload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ClientError, ErrorKind, Result};

fn pending_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("media").join("pending")
}

fn stored_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("media").join("stored")
}

/// The folder whose files are saved with the run; a file's run name is its path below it.
pub fn files_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("media").join("files")
}

/// Files made ahead for raw media: creating a file costs more than writing 150 KB into one.
const SPARE_FILES: usize = 3;

/// Where a client stages media: its run directory, the next id, and files created ahead of time
/// by a thread of their own, so that `log` only writes into one.
#[derive(Debug)]
pub struct Stage {
    run_dir: PathBuf,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    spares: Option<std::sync::mpsc::Receiver<(u64, std::fs::File)>>,
}

impl Stage {
    pub fn new(run_dir: &Path) -> Stage {
        // Ids are unique within a run directory, across resumes in the same one.
        let next_id = Arc::new(std::sync::atomic::AtomicU64::new((crate::core::now_micros().max(0) as u64) << 8));
        Stage { run_dir: run_dir.to_owned(), next_id, spares: None }
    }

    /// Starts the thread that makes files ahead (at the first raw media: a run that logs none
    /// has none); it ends with the stage.
    fn start_spares(&mut self) {
        let (send, spares) = std::sync::mpsc::sync_channel(SPARE_FILES);
        let (dir, ids) = (pending_dir(&self.run_dir), Arc::clone(&self.next_id));
        let started = std::thread::Builder::new().name("cairn-media".into()).spawn(move || {
            if std::fs::create_dir_all(&dir).is_err() {
                return;
            }
            loop {
                let Ok((id, file)) = new_raw_file(&dir, &ids) else { return };
                let path = dir.join(format!("{id}.raw"));
                if send.send((id, file)).is_err() {
                    let _ = std::fs::remove_file(&path);
                    return;
                }
            }
        });
        if started.is_ok() {
            self.spares = Some(spares);
        }
    }

    fn take_id(&self) -> u64 {
        self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes the raw media in `value` (in lists, maps and table cells too) to the run directory
    /// and replaces each by a pending reference. Returns whether there was any.
    pub fn stage(&mut self, key: &str, value: &mut Value) -> Result<bool> {
        match value {
            Value::Media(m) => match &m.file {
                MediaFile::Raw(raw) => {
                    let raw = Arc::clone(raw);
                    let id = self.write(&raw).map_err(|e| ClientError::new(ErrorKind::Io, format!("cannot stage the {} of {key:?}: {e}", m.kind.name())))?;
                    m.file = MediaFile::Pending { id, key: key.to_owned() };
                    Ok(true)
                }
                MediaFile::Pending { .. } => Ok(true),
                MediaFile::Stored(_) => Ok(false),
            },
            Value::List(items) => {
                let mut any = false;
                for item in items {
                    any |= self.stage(key, item)?;
                }
                Ok(any)
            }
            Value::Map(map) => {
                let mut any = false;
                for item in map.values_mut() {
                    any |= self.stage(key, item)?;
                }
                Ok(any)
            }
            Value::Table(t) => {
                let mut any = false;
                for cell in t.rows.iter_mut().flatten() {
                    any |= self.stage(key, cell)?;
                }
                Ok(any)
            }
            _ => Ok(false),
        }
    }

    /// Writes raw media to a staged file of its own; returns its id.
    fn write(&mut self, raw: &RawMedia) -> std::io::Result<u64> {
        let dir = pending_dir(&self.run_dir);
        if self.spares.is_none() && matches!(raw, RawMedia::Pixels { .. } | RawMedia::Samples { .. }) {
            self.start_spares();
        }
        // A file made ahead, or (none ready: a burst of media) one made now.
        let raw_file = || -> std::io::Result<(u64, std::fs::File)> {
            if let Some(spare) = self.spares.as_ref().and_then(|r| r.try_recv().ok()) {
                return Ok(spare);
            }
            std::fs::create_dir_all(&dir)?;
            new_raw_file(&dir, &self.next_id)
        };
        match raw {
            RawMedia::Pixels { width, height, channels, data } => {
                let (id, file) = raw_file()?;
                write_raw(file, &RawHeader::Pixels { width: *width, height: *height, channels: *channels }, data)?;
                Ok(id)
            }
            RawMedia::Samples { rate, channels, data } => {
                let (id, file) = raw_file()?;
                let bytes: Vec<u8> = data.iter().flat_map(|s| s.to_le_bytes()).collect();
                write_raw(file, &RawHeader::Samples { rate: *rate, channels: *channels }, &bytes)?;
                Ok(id)
            }
            RawMedia::Bytes(bytes) => {
                std::fs::create_dir_all(&dir)?;
                let id = self.take_id();
                std::fs::write(dir.join(format!("{id}.file")), bytes)?;
                Ok(id)
            }
            RawMedia::File(path) => {
                std::fs::create_dir_all(&dir)?;
                let id = self.take_id();
                let to = dir.join(format!("{id}.file"));
                // A copy, not a link: programs rewrite the same file at every step (savefig).
                std::fs::copy(path, &to)?;
                Ok(id)
            }
        }
    }
}

impl Drop for Stage {
    /// The files made ahead and not used are removed.
    fn drop(&mut self) {
        let Some(spares) = self.spares.take() else { return };
        drop(spares);
        // Staged media always has its header: an empty file is a spare, made and never used.
        let Ok(entries) = std::fs::read_dir(pending_dir(&self.run_dir)) else { return };
        for entry in entries.flatten() {
            if entry.metadata().is_ok_and(|m| m.len() == 0) && entry.file_name().to_string_lossy().ends_with(".raw") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
enum RawHeader {
    Pixels { width: u32, height: u32, channels: u8 },
    Samples { rate: u32, channels: u16 },
}

fn write_raw(mut file: std::fs::File, header: &RawHeader, data: &[u8]) -> std::io::Result<()> {
    let mut head = serde_json::to_vec(header).expect("a header serializes");
    head.push(b'\n');
    file.write_all(&head)?;
    file.write_all(data)
}

/// A new, empty staged file with the next free id: never one that exists (ids come from the
/// clock, which may step back, and another process may stage in the same run directory).
fn new_raw_file(dir: &Path, ids: &std::sync::atomic::AtomicU64) -> std::io::Result<(u64, std::fs::File)> {
    loop {
        let id = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let taken = |id: u64| dir.join(format!("{id}.file")).exists() || dir.parent().is_some_and(|m| m.join("stored").join(format!("{id}.json")).exists());
        if taken(id) {
            continue;
        }
        match std::fs::File::options().write(true).create_new(true).open(dir.join(format!("{id}.raw"))) {
            Ok(file) => return Ok((id, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What became of a staged media value, once stored.
#[derive(Serialize, Deserialize)]
struct Done {
    sha256: String,
    size: u64,
    path: String,
    thumb: Option<String>,
    format: String,
    width: u32,
    height: u32,
}

/// A key as a folder name: letters, digits, `-`, `_`, `.` and `/` kept, anything else `_`.
fn folder_of(key: &str) -> String {
    let name: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/') { c } else { '_' }).collect();
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..").collect();
    if parts.is_empty() { "_".to_owned() } else { parts.join("/") }
}

/// Stores the staged media `id` (once: later calls read what the first one did).
fn store(run_dir: &Path, id: u64, key: &str, media: &Media) -> std::io::Result<Done> {
    let done_path = stored_dir(run_dir).join(format!("{id}.json"));
    if let Ok(bytes) = std::fs::read(&done_path)
        && let Ok(done) = serde_json::from_slice::<Done>(&bytes)
    {
        return Ok(done);
    }
    let pending = pending_dir(run_dir);
    let (raw_path, file_path) = (pending.join(format!("{id}.raw")), pending.join(format!("{id}.file")));
    let folder = format!("{}/{}", media.kind.folder(), folder_of(key));
    let files = files_dir(run_dir);
    let mut thumb = None;
    let (encoded, width, height, format) = if let Ok(bytes) = std::fs::read(&raw_path) {
        let split = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| invalid("a staged file without its header"))?;
        let header: RawHeader = serde_json::from_slice(&bytes[..split]).map_err(|e| invalid(&format!("a staged file's header: {e}")))?;
        let data = &bytes[split + 1..];
        match header {
            RawHeader::Pixels { width, height, channels } => {
                let png = encode_png(width, height, channels, data)?;
                if width.max(height) > THUMB_PX {
                    let (tw, th, small) = shrink(width, height, channels, data);
                    thumb = Some(encode_png(tw, th, channels, &small)?);
                }
                (png, width, height, "png".to_owned())
            }
            RawHeader::Samples { rate, channels } => {
                let samples: Vec<f32> = data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                (encode_wav(rate, channels, &samples), 0, 0, "wav".to_owned())
            }
        }
    } else {
        let bytes = std::fs::read(&file_path)?;
        if bytes.len() as u64 > MAX_MEDIA_BYTES {
            return Err(invalid("a media file over the size limit"));
        }
        let (w, h) = if media.kind == MediaKind::Image { cairn_types::media::sniff_size(&bytes) } else { (media.width, media.height) };
        if media.kind == MediaKind::Image && media.format == "png" && w.max(h) > THUMB_PX {
            thumb = png_thumbnail(&bytes);
        }
        (bytes, w, h, media.format.clone())
    };
    let sha256 = cairn_types::hex(&Sha256::digest(&encoded));
    let path = format!("{folder}/{}.{format}", &sha256[..20]);
    write_run_file(run_dir, &files, &path, &encoded)?;
    let thumb = match thumb {
        Some(bytes) => {
            let name = format!("{folder}/{}.thumb.png", &sha256[..20]);
            write_run_file(run_dir, &files, &name, &bytes)?;
            Some(name)
        }
        None => None,
    };
    let done = Done { sha256, size: encoded.len() as u64, path, thumb, format, width, height };
    std::fs::create_dir_all(stored_dir(run_dir))?;
    let tmp = done_path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&done).expect("serializes"))?;
    std::fs::rename(&tmp, &done_path)?;
    let _ = std::fs::remove_file(&raw_path);
    let _ = std::fs::remove_file(&file_path);
    Ok(done)
}

/// Writes a run file under `files` (unless the same content is there) and saves it with the run.
/// The save is recorded before the file appears (a save of a missing file waits), so a crash
/// between the two cannot leave a file that is never uploaded.
fn write_run_file(run_dir: &Path, files: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = files.join(name);
    if std::fs::metadata(&path).map(|m| m.len() == bytes.len() as u64).unwrap_or(false) {
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("a file in a folder"))?;
    let save = crate::files::Save::literal(&path, files, crate::files::Policy::Now).map_err(|e| invalid(&e.message))?;
    crate::files::record_save(run_dir, &save).map_err(|e| invalid(&e.message))?;
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// PNG, fast compression (fdeflate): a 224×224 RGB image takes about a millisecond.
pub fn encode_png(width: u32, height: u32, channels: u8, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(match channels {
            1 => png::ColorType::Grayscale,
            3 => png::ColorType::Rgb,
            _ => png::ColorType::Rgba,
        });
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(|e| invalid(&format!("png: {e}")))?;
        writer.write_image_data(data).map_err(|e| invalid(&format!("png: {e}")))?;
    }
    Ok(out)
}

/// The image shrunk to fit [`THUMB_PX`], each pixel the mean of the box it covers.
fn shrink(width: u32, height: u32, channels: u8, data: &[u8]) -> (u32, u32, Vec<u8>) {
    let scale = width.max(height) as f64 / THUMB_PX as f64;
    let (tw, th) = (((width as f64 / scale).round() as u32).max(1), ((height as f64 / scale).round() as u32).max(1));
    let c = channels as usize;
    let mut out = vec![0u8; tw as usize * th as usize * c];
    for ty in 0..th as usize {
        let (y0, y1) = ((ty as f64 * scale) as usize, (((ty + 1) as f64 * scale) as usize).min(height as usize).max(ty + 1));
        for tx in 0..tw as usize {
            let (x0, x1) = ((tx as f64 * scale) as usize, (((tx + 1) as f64 * scale) as usize).min(width as usize).max(tx + 1));
            let mut sums = [0u32; 4];
            let mut n = 0u32;
            for y in y0..y1.min(height as usize) {
                for x in x0..x1.min(width as usize) {
                    let at = (y * width as usize + x) * c;
                    for (s, v) in sums.iter_mut().zip(&data[at..at + c]) {
                        *s += *v as u32;
                    }
                    n += 1;
                }
            }
            let at = (ty * tw as usize + tx) * c;
            for (o, s) in out[at..at + c].iter_mut().zip(sums) {
                *o = (s / n.max(1)) as u8;
            }
        }
    }
    (tw, th, out)
}

/// A thumbnail of an 8-bit PNG file (other files get none: the UI shows them whole).
fn png_thumbnail(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut decoder = png::Decoder::new(bytes);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).ok()?;
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::GrayscaleAlpha => {
            // Gray and alpha, as RGBA.
            let rgba: Vec<u8> = buf[..info.buffer_size()].chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect();
            let (tw, th, small) = shrink(info.width, info.height, 4, &rgba);
            return encode_png(tw, th, 4, &small).ok();
        }
        png::ColorType::Indexed => return None,
    };
    let (tw, th, small) = shrink(info.width, info.height, channels, &buf[..info.buffer_size()]);
    encode_png(tw, th, channels, &small).ok()
}

/// 16-bit PCM WAV.
pub fn encode_wav(rate: u32, channels: u16, samples: &[f32]) -> Vec<u8> {
    let data_len = samples.len() as u32 * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    out
}

/// Replaces the pending media in `value` by stored references. A staged file that is gone or
/// corrupt cannot be stored: its value becomes null (noted in the debug log), so that the record
/// is not held back for good; any other error (a full disk, too many open files) is returned, and
/// the record waits for the next try.
fn resolve_value(run_dir: &Path, value: &mut Value) -> std::io::Result<()> {
    match value {
        Value::Media(m) => {
            let pending = if let MediaFile::Pending { id, key } = &m.file { Some((*id, key.clone())) } else { None };
            if let Some((id, key)) = pending {
                match store(run_dir, id, &key, m) {
                    Ok(done) => {
                        m.format = done.format;
                        m.width = done.width;
                        m.height = done.height;
                        m.file = MediaFile::Stored(StoredFile { sha256: done.sha256, size: done.size, path: done.path, thumb: done.thumb });
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidData) => {
                        crate::rundir::debug_log(run_dir, &format!("the {} logged as {key:?} (staged as {id}) is lost: {e}", m.kind.name()));
                        *value = Value::Null;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        Value::List(items) => items.iter_mut().try_for_each(|v| resolve_value(run_dir, v)),
        Value::Map(map) => map.values_mut().try_for_each(|v| resolve_value(run_dir, v)),
        Value::Table(t) => t.rows.iter_mut().flatten().try_for_each(|v| resolve_value(run_dir, v)),
        _ => Ok(()),
    }
}

/// A history record with pending media, as it is sent: each pending reference stored and
/// replaced, and the flag cleared. A record that does not parse is returned as it is; an error
/// that may pass (see `resolve_value`) holds it back.
pub fn resolve_history(run_dir: &Path, record: &[u8]) -> std::io::Result<Vec<u8>> {
    let Ok(wire::Record::History { seq, step, flags, timestamp_us, runtime_us, mut fields }) = wire::decode_record(record) else {
        return Ok(record.to_vec());
    };
    for (_, value) in &mut fields {
        resolve_value(run_dir, value)?;
    }
    let mut out = Vec::with_capacity(record.len());
    payload::history_head(&mut out, seq, step, flags & !HISTORY_PENDING_MEDIA, timestamp_us, runtime_us, fields.len());
    for (id, value) in &fields {
        payload::history_field(&mut out, *id, value);
    }
    Ok(out)
}

/// An image of 8-bit pixels (1, 3 or 4 channels: gray, RGB, RGBA), row by row.
pub fn image(width: u32, height: u32, channels: u8, pixels: Vec<u8>, caption: Option<&str>) -> Result<Value> {
    raw(MediaKind::Image, "png", caption, RawMedia::Pixels { width, height, channels, data: pixels })
}

/// An image, audio or video file, as it is (its extension gives its format).
pub fn file(kind: MediaKind, path: &Path, caption: Option<&str>) -> Result<Value> {
    let format = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    raw(kind, &format, caption, RawMedia::File(path.to_owned()))
}

/// Audio from samples in [-1, 1] (`channels` interleaved), stored as 16-bit WAV.
pub fn audio(rate: u32, channels: u16, samples: Vec<f32>, caption: Option<&str>) -> Result<Value> {
    raw(MediaKind::Audio, "wav", caption, RawMedia::Samples { rate, channels, data: samples })
}

pub fn raw(kind: MediaKind, format: &str, caption: Option<&str>, raw: RawMedia) -> Result<Value> {
    Media::raw(kind, format, caption.map(str::to_owned), raw).map(|m| Value::Media(Box::new(m))).map_err(|e| ClientError::new(ErrorKind::InvalidValue, e))
}

/// A table of the given columns and rows (cells may be images), checked.
pub fn table(columns: Vec<String>, rows: Vec<Vec<Value>>) -> Result<Value> {
    Table::new(columns, rows).map(Value::from).map_err(|e| ClientError::new(ErrorKind::InvalidValue, e))
}

/// [`holds_unstored`] for a map of updates: the error names the key.
pub fn refuse_raw(map: &Map, what: &str) -> Result<()> {
    match map.iter().find(|(_, v)| holds_unstored(v)) {
        Some((k, v)) => {
            Err(ClientError::new(ErrorKind::InvalidValue, format!("{k:?} is an {} in the {what}: log it with run.log (the summary keeps the last one logged)", v.type_name())))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_media_is_stored_once_and_the_record_says_where() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let mut stage = Stage::new(dir.path());
        let pixels: Vec<u8> = (0..300 * 200 * 3).map(|i| (i % 251) as u8).collect();
        let mut value = Value::List(vec![image(300, 200, 3, pixels.clone(), Some("noise")).unwrap(), audio(8000, 1, vec![0.0, 0.5, -0.5], None).unwrap()]);
        assert!(stage.stage("samples/x y", &mut value).unwrap());
        let mut record = Vec::new();
        payload::history_head(&mut record, 0, 3, HISTORY_PENDING_MEDIA | 1, 10, 20, 1);
        payload::history_field(&mut record, 5, &value);
        let sent = resolve_history(dir.path(), &record).unwrap();
        let again = resolve_history(dir.path(), &record).unwrap();
        assert_eq!(sent, again, "storing twice gives the same reference");
        let Ok(wire::Record::History { flags, step, fields, .. }) = wire::decode_record(&sent) else { panic!("a history record") };
        assert_eq!((flags, step), (1, 3));
        let Value::List(items) = &fields[0].1 else { panic!("a list") };
        let Value::Media(img) = &items[0] else { panic!("an image") };
        let stored = img.stored().expect("stored");
        assert_eq!((img.width, img.height, img.caption.as_deref()), (300, 200, Some("noise")));
        assert!(stored.path.starts_with("media/images/samples/x_y/"), "{}", stored.path);
        let bytes = std::fs::read(files_dir(dir.path()).join(&stored.path)).unwrap();
        assert_eq!(cairn_types::hex(&Sha256::digest(&bytes)), stored.sha256);
        // The PNG decodes to the pixels logged.
        let mut reader = png::Decoder::new(bytes.as_slice()).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(buf, pixels);
        let thumb = std::fs::read(files_dir(dir.path()).join(stored.thumb.as_ref().expect("a thumbnail"))).unwrap();
        assert_eq!(cairn_types::media::sniff_size(&thumb), (256, 171));
        let Value::Media(wav) = &items[1] else { panic!("audio") };
        assert_eq!(wav.stored().unwrap().size, 44 + 6);
        // Both files are saved with the run, and nothing is left staged once the stage ends (its
        // files made ahead are removed).
        drop(stage);
        let saves = crate::files::read_saves(dir.path());
        assert_eq!(saves.len(), 3);
        assert_eq!(std::fs::read_dir(pending_dir(dir.path())).unwrap().count(), 0);
    }

    #[test]
    fn keys_become_safe_folders() {
        assert_eq!(folder_of("a/b c/../d"), "a/b_c/d");
        assert_eq!(folder_of("///"), "_");
    }
}
