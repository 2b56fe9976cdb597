//! Media values: images, audio and video, logged as files and referenced from history.
//!
//! A stored media value is a typed reference: its kind, the file's SHA-256 and size, the run file
//! that holds it (`media/images/<key>/<sha>.png`), its format, its width and height, its caption,
//! and for an image larger than [`THUMB_PX`] a thumbnail (another run file). JSON writes it as W&B
//! does, `{"_type": "image-file", "path": ..., "sha256": ..., ...}`.
//!
//! A client logs media without encoding it on the training thread: the pixels (or samples, or the
//! file) are written to the run directory as they are, and the log record holds a *pending*
//! reference to them. Its uploader encodes them and replaces the pending reference by the stored
//! one before the record leaves the machine; a server refuses a pending reference.

use std::path::PathBuf;
use std::sync::Arc;

use crate::value::{Map, Value};

/// The longest side of a thumbnail, in pixels.
pub const THUMB_PX: u32 = 256;

/// The largest image, in pixels on a side.
pub const MAX_IMAGE_PX: u32 = 16_384;

/// The most audio channels, and the highest sample rate.
pub const MAX_AUDIO_CHANNELS: u16 = 32;
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// The largest media file a client takes, in bytes.
pub const MAX_MEDIA_BYTES: u64 = 4 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Audio,
    Video,
    /// A table kept as a JSON file (`{"columns": [...], "data": [[...]]}`), as the official
    /// wandb client logs `wandb.Table`; its width and height are its columns and rows.
    TableFile,
}

impl MediaKind {
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::TableFile => "table-file",
        }
    }

    /// The JSON `_type` (W&B's).
    pub fn json_type(self) -> &'static str {
        match self {
            MediaKind::Image => "image-file",
            MediaKind::Audio => "audio-file",
            MediaKind::Video => "video-file",
            MediaKind::TableFile => "table-file",
        }
    }

    pub fn from_json_type(t: &str) -> Option<MediaKind> {
        Some(match t {
            "image-file" => MediaKind::Image,
            "audio-file" => MediaKind::Audio,
            "video-file" => MediaKind::Video,
            "table-file" => MediaKind::TableFile,
            _ => return None,
        })
    }

    fn from_u8(b: u8) -> Option<MediaKind> {
        Some(match b {
            0 => MediaKind::Image,
            1 => MediaKind::Audio,
            2 => MediaKind::Video,
            3 => MediaKind::TableFile,
            _ => return None,
        })
    }

    fn to_u8(self) -> u8 {
        match self {
            MediaKind::Image => 0,
            MediaKind::Audio => 1,
            MediaKind::Video => 2,
            MediaKind::TableFile => 3,
        }
    }

    /// The folder of the run's files that holds this kind.
    pub fn folder(self) -> &'static str {
        match self {
            MediaKind::Image => "media/images",
            MediaKind::Audio => "media/audio",
            MediaKind::Video => "media/videos",
            MediaKind::TableFile => "media/table",
        }
    }

    /// The file formats (extensions) this kind may have.
    pub fn formats(self) -> &'static [&'static str] {
        match self {
            MediaKind::Image => &["png", "jpg", "jpeg", "gif", "webp", "bmp"],
            MediaKind::Audio => &["wav", "mp3", "ogg", "flac", "m4a", "webm"],
            MediaKind::Video => &["mp4", "webm", "ogg", "gif", "mov"],
            MediaKind::TableFile => &["json"],
        }
    }
}

/// A media value: what it is, and its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    pub kind: MediaKind,
    /// The file's format, as its extension in lower case (`png`, `wav`, `mp4`, ...).
    pub format: String,
    /// Pixels; 0 where unknown (audio, most videos).
    pub width: u32,
    pub height: u32,
    pub caption: Option<String>,
    pub file: MediaFile,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MediaFile {
    /// A run file of the run that logged it.
    Stored(StoredFile),
    /// Staged in the logging client's run directory as `id`, for its uploader to encode and
    /// store (never accepted by a server). `key` names the logged key, for the file's name.
    Pending { id: u64, key: String },
    /// Data in memory, not yet staged: what a binding hands the client's `log`.
    Raw(Arc<RawMedia>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    pub sha256: String,
    pub size: u64,
    /// The run file's name.
    pub path: String,
    /// The thumbnail's run file, for images larger than [`THUMB_PX`].
    pub thumb: Option<String>,
}

/// Media data as logged.
#[derive(Debug, PartialEq)]
pub enum RawMedia {
    /// 8-bit pixels, row by row, `channels` (1, 3 or 4: gray, RGB, RGBA) interleaved.
    Pixels { width: u32, height: u32, channels: u8, data: Vec<u8> },
    /// Audio samples in [-1, 1], `channels` interleaved, at `rate` per second.
    Samples { rate: u32, channels: u16, data: Vec<f32> },
    /// An encoded file's bytes.
    Bytes(Vec<u8>),
    /// An encoded file on disk.
    File(PathBuf),
}

impl Media {
    /// Media from raw data: checked, so that the uploader cannot fail on it later.
    pub fn raw(kind: MediaKind, format: &str, caption: Option<String>, raw: RawMedia) -> Result<Media, String> {
        let format = format.trim_start_matches('.').to_ascii_lowercase();
        let (width, height) = match &raw {
            RawMedia::Pixels { width, height, channels, data } => {
                if kind != MediaKind::Image {
                    return Err(format!("pixels make an image, not {}", kind.name()));
                }
                if *width == 0 || *height == 0 || *width > MAX_IMAGE_PX || *height > MAX_IMAGE_PX {
                    return Err(format!("an image is 1 to {MAX_IMAGE_PX} pixels on a side, not {width}×{height}"));
                }
                if !matches!(channels, 1 | 3 | 4) {
                    return Err(format!("an image has 1, 3 or 4 channels (gray, RGB, RGBA), not {channels}"));
                }
                let want = *width as usize * *height as usize * *channels as usize;
                if data.len() != want {
                    return Err(format!("{width}×{height}×{channels} pixels are {want} bytes, not {}", data.len()));
                }
                (*width, *height)
            }
            RawMedia::Samples { rate, channels, data } => {
                if kind != MediaKind::Audio {
                    return Err(format!("samples make audio, not {}", kind.name()));
                }
                if *rate == 0 || *rate > MAX_SAMPLE_RATE || *channels == 0 || *channels > MAX_AUDIO_CHANNELS {
                    return Err(format!("audio has 1 to {MAX_AUDIO_CHANNELS} channels at 1 to {MAX_SAMPLE_RATE} samples a second, not {channels} at {rate}"));
                }
                if data.is_empty() || data.len() % *channels as usize != 0 {
                    return Err(format!("audio needs whole frames of {channels} channels, not {} samples", data.len()));
                }
                if let Some(s) = data.iter().find(|s| !s.is_finite() || s.abs() > 1.0) {
                    return Err(format!("audio samples are floats in [-1, 1]; one is {s}"));
                }
                (0, 0)
            }
            RawMedia::Bytes(bytes) => {
                check_format(kind, &format)?;
                if bytes.is_empty() {
                    return Err(format!("an empty {} file", kind.name()));
                }
                sniff_size(bytes)
            }
            RawMedia::File(path) => {
                check_format(kind, &format)?;
                let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if !meta.is_file() || meta.len() > MAX_MEDIA_BYTES {
                    return Err(format!("{} is not a file of at most {MAX_MEDIA_BYTES} bytes", path.display()));
                }
                (0, 0)
            }
        };
        let format = match &raw {
            RawMedia::Pixels { .. } => "png".to_owned(),
            RawMedia::Samples { .. } => "wav".to_owned(),
            _ => format,
        };
        Ok(Media { kind, format, width, height, caption, file: MediaFile::Raw(Arc::new(raw)) })
    }

    pub fn stored(&self) -> Option<&StoredFile> {
        match &self.file {
            MediaFile::Stored(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn to_map(&self) -> Map {
        let mut map = Map::new();
        map.insert("_type".into(), Value::Str(self.kind.json_type().into()));
        map.insert("format".into(), Value::Str(self.format.clone()));
        let (w, h) = if self.kind == MediaKind::TableFile { ("ncols", "nrows") } else { ("width", "height") };
        if self.width > 0 || self.kind == MediaKind::TableFile {
            map.insert(w.into(), Value::Int(self.width as i64));
            map.insert(h.into(), Value::Int(self.height as i64));
        }
        if let Some(c) = &self.caption {
            map.insert("caption".into(), Value::Str(c.clone()));
        }
        match &self.file {
            MediaFile::Stored(f) => {
                map.insert("sha256".into(), Value::Str(f.sha256.clone()));
                map.insert("size".into(), Value::Int(f.size as i64));
                map.insert("path".into(), Value::Str(f.path.clone()));
                if let Some(t) = &f.thumb {
                    map.insert("thumb".into(), Value::Str(t.clone()));
                }
            }
            MediaFile::Pending { .. } | MediaFile::Raw(_) => {
                map.insert("pending".into(), Value::Bool(true));
            }
        }
        map
    }

    /// A stored reference from its JSON map.
    pub(crate) fn from_map(kind: MediaKind, map: &Map) -> Result<Media, String> {
        let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
        let int = |name: &str| map.get(name).and_then(|v| if let Value::Int(i) = v { Some(*i) } else { None });
        let sha256 = text("sha256").filter(|s| is_sha256(s)).ok_or_else(|| format!("{} needs its sha256 (64 hex digits)", kind.json_type()))?;
        let path = text("path").filter(|p| is_run_file_name(p)).ok_or_else(|| format!("{} needs the run file that holds it, a relative path", kind.json_type()))?;
        if text("thumb").is_some_and(|t| !is_run_file_name(&t)) {
            return Err(format!("{}'s thumb must be a relative path", kind.json_type()));
        }
        let size = int("size").filter(|s| *s >= 0).ok_or_else(|| format!("{} needs its size in bytes", kind.json_type()))? as u64;
        let dim = |name: &str| int(name).unwrap_or(0).clamp(0, u32::MAX as i64) as u32;
        let format = text("format").unwrap_or_else(|| path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default());
        let (w, h) = if kind == MediaKind::TableFile { ("ncols", "nrows") } else { ("width", "height") };
        Ok(Media { kind, format, width: dim(w), height: dim(h), caption: text("caption"), file: MediaFile::Stored(StoredFile { sha256, size, path, thumb: text("thumb") }) })
    }

    /// Writes the value after its tag: kind, format, size, caption, then the file (`0` stored:
    /// sha, size, path, thumb or ""; `1` pending: id, key).
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        use crate::wire::{put_str, put_varint};
        out.push(self.kind.to_u8());
        put_str(out, &self.format);
        put_varint(out, self.width as u64);
        put_varint(out, self.height as u64);
        match &self.caption {
            Some(c) => {
                out.push(1);
                put_str(out, c);
            }
            None => out.push(0),
        }
        match &self.file {
            MediaFile::Stored(f) => {
                out.push(0);
                put_str(out, &f.sha256);
                put_varint(out, f.size);
                put_str(out, &f.path);
                put_str(out, f.thumb.as_deref().unwrap_or(""));
            }
            MediaFile::Pending { id, key } => {
                out.push(1);
                put_varint(out, *id);
                put_str(out, key);
            }
            // Never written: the client stages raw media before its record is built.
            MediaFile::Raw(_) => {
                out.push(1);
                put_varint(out, 0);
                put_str(out, "");
            }
        }
    }

    pub(crate) fn read(r: &mut crate::wire::Reader<'_>) -> Result<Media, crate::wire::WireError> {
        use crate::wire::WireError;
        let kind = MediaKind::from_u8(r.u8()?).ok_or_else(|| WireError("unknown media kind".into()))?;
        let format = r.str()?.to_owned();
        let width = u32::try_from(r.varint()?).map_err(|_| WireError("media width out of range".into()))?;
        let height = u32::try_from(r.varint()?).map_err(|_| WireError("media height out of range".into()))?;
        let caption = match r.u8()? {
            0 => None,
            _ => Some(r.str()?.to_owned()),
        };
        let file = match r.u8()? {
            0 => {
                let sha256 = r.str()?.to_owned();
                if !is_sha256(&sha256) {
                    return Err(WireError("a media file's sha256 is not 64 hex digits".into()));
                }
                let size = r.varint()?;
                let path = r.str()?.to_owned();
                let thumb = Some(r.str()?.to_owned()).filter(|t| !t.is_empty());
                if !is_run_file_name(&path) || thumb.as_deref().is_some_and(|t| !is_run_file_name(t)) {
                    return Err(WireError("a media file's path must be a relative run file name".into()));
                }
                MediaFile::Stored(StoredFile { sha256, size, path, thumb })
            }
            1 => {
                let id = r.varint()?;
                MediaFile::Pending { id, key: r.str()?.to_owned() }
            }
            _ => return Err(WireError("unknown media file form".into())),
        };
        Ok(Media { kind, format, width, height, caption, file })
    }

    pub(crate) fn skip(r: &mut crate::wire::Reader<'_>) -> Result<(), crate::wire::WireError> {
        Media::read(r).map(|_| ())
    }
}

/// Whether `value` holds media that is not stored yet, anywhere in it (lists, maps, table cells).
pub fn holds_unstored(value: &Value) -> bool {
    match value {
        Value::Media(m) => !matches!(m.file, MediaFile::Stored(_)),
        Value::List(items) => items.iter().any(holds_unstored),
        Value::Map(map) => map.values().any(holds_unstored),
        Value::Table(t) => t.rows.iter().flatten().any(holds_unstored),
        _ => false,
    }
}

fn check_format(kind: MediaKind, format: &str) -> Result<(), String> {
    if kind.formats().contains(&format) { Ok(()) } else { Err(format!("{:?} is no {} format; one of {}", format, kind.name(), kind.formats().join(", "))) }
}

/// A run file's name: relative, with no empty, `.` or `..` part.
pub fn is_run_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('/') && !name.contains('\\') && name.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The width and height an encoded image's header gives (PNG, GIF, JPEG, BMP, WebP); `(0, 0)`
/// when it says nothing that is understood here.
pub fn sniff_size(b: &[u8]) -> (u32, u32) {
    let be32 = |i: usize| b.get(i..i + 4).map(|s| u32::from_be_bytes(s.try_into().unwrap()));
    let le16 = |i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes(s.try_into().unwrap()) as u32);
    let be16 = |i: usize| b.get(i..i + 2).map(|s| u16::from_be_bytes(s.try_into().unwrap()) as u32);
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return (be32(16).unwrap_or(0), be32(20).unwrap_or(0));
    }
    if b.starts_with(b"GIF8") {
        return (le16(6).unwrap_or(0), le16(8).unwrap_or(0));
    }
    if b.starts_with(b"BM") {
        let le32 = |i: usize| b.get(i..i + 4).map(|s| i32::from_le_bytes(s.try_into().unwrap()).unsigned_abs());
        return (le32(18).unwrap_or(0), le32(22).unwrap_or(0));
    }
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        return match b.get(12..16) {
            Some(b"VP8X") => {
                let le24 = |i: usize| b.get(i..i + 3).map(|s| u32::from_le_bytes([s[0], s[1], s[2], 0]) + 1);
                (le24(24).unwrap_or(0), le24(27).unwrap_or(0))
            }
            Some(b"VP8 ") => (le16(26).unwrap_or(0) & 0x3fff, le16(28).unwrap_or(0) & 0x3fff),
            Some(b"VP8L") => match b.get(21..25) {
                Some(s) => {
                    let v = u32::from_le_bytes(s.try_into().unwrap());
                    ((v & 0x3fff) + 1, ((v >> 14) & 0x3fff) + 1)
                }
                None => (0, 0),
            },
            _ => (0, 0),
        };
    }
    if b.starts_with(&[0xff, 0xd8]) {
        // JPEG: walk the segments to a start-of-frame.
        let mut i = 2;
        while i + 9 < b.len() {
            if b[i] != 0xff {
                return (0, 0);
            }
            let marker = b[i + 1];
            if marker == 0xff {
                i += 1;
                continue;
            }
            let len = be16(i + 2).unwrap_or(0) as usize;
            if matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
                return (be16(i + 7).unwrap_or(0), be16(i + 5).unwrap_or(0));
            }
            i += 2 + len;
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wandb_table_file_is_one_value_with_its_columns_and_rows() {
        let json = serde_json::json!({"_type": "table-file", "sha256": "a".repeat(64), "size": 120, "path": "media/table/predictions_30_abc.table.json", "ncols": 3, "nrows": 12});
        let Value::Media(m) = Value::from_json(&json) else { panic!("not media") };
        assert_eq!((m.kind, m.width, m.height, m.format.as_str()), (MediaKind::TableFile, 3, 12, "json"));
        let back = Value::Media(m.clone()).to_json();
        assert_eq!((back["_type"].as_str(), back["ncols"].as_i64(), back["nrows"].as_i64()), (Some("table-file"), Some(3), Some(12)));
        assert!(back.get("width").is_none());
        let mut wire = Vec::new();
        m.put(&mut wire);
        assert_eq!(Media::read(&mut crate::wire::Reader::new(&wire)).unwrap(), *m, "wire round trip");
    }

    use super::*;
    use crate::wire::{Reader, put_value};

    fn stored() -> Media {
        Media {
            kind: MediaKind::Image,
            format: "png".into(),
            width: 224,
            height: 100,
            caption: Some("a cat".into()),
            file: MediaFile::Stored(StoredFile { sha256: "ab".repeat(32), size: 1234, path: "media/images/x/ab.png".into(), thumb: Some("media/images/x/thumb.png".into()) }),
        }
    }

    #[test]
    fn stored_and_pending_media_round_trip_on_the_wire_and_in_json() {
        for media in [stored(), Media { file: MediaFile::Pending { id: 7, key: "samples/x".into() }, caption: None, ..stored() }] {
            let value = Value::Media(Box::new(media.clone()));
            let mut out = Vec::new();
            put_value(&mut out, &value);
            assert_eq!(Reader::new(&out).value().unwrap(), value);
            let mut r = Reader::new(&out);
            r.skip_value().unwrap();
            assert!(r.is_empty());
        }
        let value = Value::Media(Box::new(stored()));
        let json = value.to_json();
        assert_eq!(json["_type"], "image-file");
        assert_eq!(json["width"], 224);
        assert_eq!(Value::from_json(&json), value);
    }

    #[test]
    fn malformed_media_is_refused_with_the_reason() {
        let mut map = stored().to_map();
        map.insert("sha256".into(), Value::Str("nothex".into()));
        let err = crate::value::typed(map).unwrap_err();
        assert!(err.contains("sha256"), "{err}");
        let err = Media::raw(MediaKind::Image, "png", None, RawMedia::Pixels { width: 2, height: 2, channels: 2, data: vec![0; 8] }).unwrap_err();
        assert!(err.contains("1, 3 or 4 channels"), "{err}");
        let err = Media::raw(MediaKind::Image, "png", None, RawMedia::Pixels { width: 2, height: 2, channels: 3, data: vec![0; 8] }).unwrap_err();
        assert!(err.contains("12 bytes"), "{err}");
        let err = Media::raw(MediaKind::Audio, "wav", None, RawMedia::Samples { rate: 8000, channels: 1, data: vec![0.0, 2.0] }).unwrap_err();
        assert!(err.contains("[-1, 1]"), "{err}");
        let err = Media::raw(MediaKind::Video, "exe", None, RawMedia::Bytes(vec![1])).unwrap_err();
        assert!(err.contains("mp4"), "{err}");
    }

    #[test]
    fn image_headers_give_their_size() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(sniff_size(&png), (640, 480));
        let gif = [b"GIF89a".as_slice(), &[0x20, 0x01, 0x10, 0x00]].concat();
        assert_eq!(sniff_size(&gif), (288, 16));
        // JPEG: SOI, an APP0 of 16 bytes, then SOF0 with height 120 and width 160.
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        jpeg.extend_from_slice(&[0; 14]);
        jpeg.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x78, 0x00, 0xa0, 0x03, 0, 0, 0, 0, 0, 0]);
        assert_eq!(sniff_size(&jpeg), (160, 120));
        assert_eq!(sniff_size(b"nothing"), (0, 0));
    }
}
