//! Where files live: local paths and object-store URIs behind one small, blocking API.
//! Writes are atomic everywhere (temporary name + rename locally, a single put or a
//! completed multipart upload on object stores), so no reader ever sees a partial file.
//! This module does not know any file format; it moves bytes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{At, Result, ShardError};

/// Size of one multipart-upload part when committing to an object store (bytes).
/// S3 requires at least 5 MiB for every part but the last.
const UPLOAD_PART_BYTES: usize = 16 << 20;

/// A file or directory, local or in an object store.
///
/// Accepted forms: a plain path (`out/ingest`), `file:///abs/path`, `memory://name/key`
/// (an in-process store, for tests), and `s3://`, `gs://`, `az://` URIs when grist is
/// built with the `cloud` feature (credentials and endpoints from the usual environment
/// variables, e.g. `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`).
#[derive(Clone)]
pub struct Loc {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Local(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        /// `scheme://bucket`, without a trailing slash.
        root: String,
        key: ObjPath,
    },
}

impl std::fmt::Debug for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loc({})", self)
    }
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Local(p) => write!(f, "{}", p.display()),
            Inner::Object { root, key, .. } => write!(f, "{root}/{key}"),
        }
    }
}

impl PartialEq for Loc {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// In-process object stores by name, so `memory://name/...` refers to the same store
/// everywhere in one process.
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let map = STORES.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(name.to_string()).or_insert_with(|| Arc::new(InMemory::new())).clone()
}

/// Runs a storage future to completion. Local and in-memory stores need no runtime; the
/// cloud clients (feature `cloud`) run on a small shared tokio runtime, which may be entered
/// from many rayon threads at once.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    #[cfg(feature = "cloud")]
    {
        static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("grist-io")
                .enable_all()
                .build()
                .expect("cannot start the I/O runtime")
        })
        .block_on(f)
    }
    #[cfg(not(feature = "cloud"))]
    futures::executor::block_on(f)
}

/// The client for an `s3://`, `gs://` or `az://` root, configured from the environment
/// (`AWS_*`, `GOOGLE_*`, `AZURE_*`, as `object_store` reads them), one per bucket per process.
#[cfg(feature = "cloud")]
fn cloud_store(uri: &str, root: &str) -> Result<Arc<dyn ObjectStore>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let map = STORES.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = map.get(root) {
        return Ok(s.clone());
    }
    let url = url::Url::parse(root).map_err(|e| ShardError::Storage {
        uri: uri.to_string(),
        msg: format!("not a valid URL: {e}"),
        hint: "write object-store paths as s3://bucket/key, gs://bucket/key or az://container/key",
    })?;
    let (store, _) = object_store::parse_url_opts(&url, std::env::vars()).map_err(|e| ShardError::Storage {
        uri: uri.to_string(),
        msg: e.to_string(),
        hint: "check the credentials and endpoint variables (AWS_*, GOOGLE_*, AZURE_*)",
    })?;
    let store: Arc<dyn ObjectStore> = Arc::from(store);
    map.insert(root.to_string(), store.clone());
    Ok(store)
}

#[cfg(not(feature = "cloud"))]
fn cloud_store(uri: &str, root: &str) -> Result<Arc<dyn ObjectStore>> {
    let scheme = root.split("://").next().unwrap_or_default();
    Err(ShardError::Storage {
        uri: uri.to_string(),
        msg: format!("`{scheme}://` needs grist built with the `cloud` feature"),
        hint: "rebuild with `cargo build --release --features cloud`, or stage the data on a shared filesystem",
    })
}

impl Loc {
    /// Parses a path or URI. Fails only for schemes this build cannot open.
    pub fn parse(s: &str) -> Result<Loc> {
        if let Some(rest) = s.strip_prefix("file://") {
            return Ok(Loc::local(rest));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(Loc::local(s));
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let root = format!("{scheme}://{bucket}");
        let key = ObjPath::from(key.trim_end_matches('/'));
        let store: Arc<dyn ObjectStore> = match scheme {
            "memory" => memory_store(bucket),
            "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" => cloud_store(s, &root)?,
            other => {
                return Err(ShardError::Storage {
                    uri: s.to_string(),
                    msg: format!("unknown scheme `{other}`"),
                    hint: "use a local path, file://, or memory://",
                });
            }
        };
        Ok(Loc { inner: Inner::Object { store, root, key } })
    }

    /// A local path.
    pub fn local(p: impl Into<PathBuf>) -> Loc {
        Loc { inner: Inner::Local(p.into()) }
    }

    /// The local path, when this is a local file (for memory-mapping).
    pub fn as_local(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Local(p) => Some(p),
            Inner::Object { .. } => None,
        }
    }

    /// A child of this location.
    pub fn join(&self, name: &str) -> Loc {
        match &self.inner {
            Inner::Local(p) => Loc::local(p.join(name)),
            Inner::Object { store, root, key } => {
                let mut parts: Vec<String> = key.parts().map(|p| p.as_ref().to_string()).collect();
                parts.extend(name.split('/').filter(|s| !s.is_empty()).map(str::to_string));
                Loc {
                    inner: Inner::Object { store: store.clone(), root: root.clone(), key: ObjPath::from_iter(parts) },
                }
            }
        }
    }

    /// The last path component.
    pub fn file_name(&self) -> String {
        match &self.inner {
            Inner::Local(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            Inner::Object { key, .. } => key.filename().unwrap_or_default().to_string(),
        }
    }

    fn at(&self) -> At {
        At::file(self.to_string())
    }

    /// Whether a file exists here.
    pub fn exists(&self) -> Result<bool> {
        match &self.inner {
            Inner::Local(p) => Ok(p.is_file()),
            Inner::Object { store, key, .. } => match block_on(store.head(key)) {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(source) => Err(ShardError::Store { at: self.at(), source }),
            },
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> Result<u64> {
        match &self.inner {
            Inner::Local(p) => fs::metadata(p).map(|m| m.len()).map_err(|e| self.io_err(e)),
            Inner::Object { store, key, .. } => {
                block_on(store.head(key)).map(|m| m.size).map_err(|source| self.store_err(source))
            }
        }
    }

    /// Size in bytes and modification time (ns since the Unix epoch, where known).
    pub fn stat(&self) -> Result<(u64, Option<i64>)> {
        match &self.inner {
            Inner::Local(p) => {
                let m = fs::metadata(p).map_err(|e| self.io_err(e))?;
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos() as i64);
                Ok((m.len(), modified))
            }
            Inner::Object { store, key, .. } => block_on(store.head(key))
                .map(|m| (m.size, m.last_modified.timestamp_nanos_opt()))
                .map_err(|source| self.store_err(source)),
        }
    }

    /// Reads the whole file.
    pub fn read(&self) -> Result<Bytes> {
        match &self.inner {
            Inner::Local(p) => fs::read(p).map(Bytes::from).map_err(|e| self.io_err(e)),
            Inner::Object { store, key, .. } => {
                block_on(async { store.get(key).await?.bytes().await }).map_err(|source| self.store_err(source))
            }
        }
    }

    /// Reads bytes `start..start + len` (a ranged GET for an object); an error if the file is
    /// shorter.
    pub fn read_range(&self, start: u64, len: u64) -> Result<Bytes> {
        match &self.inner {
            Inner::Local(p) => {
                use std::os::unix::fs::FileExt;
                let f = File::open(p).map_err(|e| self.io_err(e))?;
                let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
                f.read_exact_at(&mut buf, start).map_err(|e| self.io_err(e))?;
                Ok(Bytes::from(buf))
            }
            Inner::Object { store, key, .. } => {
                let end = start.saturating_add(len);
                let got = block_on(store.get_range(key, start..end)).map_err(|source| self.store_err(source))?;
                if got.len() as u64 != len {
                    return Err(ShardError::Truncated {
                        at: At::byte(self.to_string(), start),
                        expected: len,
                        got: got.len() as u64,
                    });
                }
                Ok(got)
            }
        }
    }

    /// Opens for streaming reads: a local file directly, an object as a streamed GET
    /// (memory stays at one network chunk, whatever the object's size).
    pub fn open(&self) -> Result<Box<dyn io::Read + Send>> {
        match &self.inner {
            Inner::Local(p) => Ok(Box::new(File::open(p).map_err(|e| self.io_err(e))?)),
            Inner::Object { store, key, .. } => {
                let got = block_on(store.get(key)).map_err(|source| self.store_err(source))?;
                Ok(Box::new(ObjectReader { stream: got.into_stream(), chunk: Bytes::new() }))
            }
        }
    }

    /// Files under this directory (recursively), sorted by name, hidden and temporary
    /// files excluded.
    pub fn list(&self) -> Result<Vec<Loc>> {
        let mut out = Vec::new();
        match &self.inner {
            Inner::Local(p) => {
                if !p.exists() {
                    return Ok(out);
                }
                walk(p, &mut out).map_err(|e| self.io_err(e))?;
            }
            Inner::Object { store, root, key } => {
                let items: Vec<_> = block_on(store.list(Some(key)).collect::<Vec<_>>());
                for item in items {
                    let meta = item.map_err(|source| self.store_err(source))?;
                    out.push(Loc {
                        inner: Inner::Object { store: store.clone(), root: root.clone(), key: meta.location },
                    });
                }
            }
        }
        out.retain(|l| !l.file_name().starts_with('.'));
        out.sort_by_key(|l| l.to_string());
        Ok(out)
    }

    /// Writes `bytes` atomically.
    pub fn write_atomic(&self, bytes: &[u8]) -> Result<()> {
        let mut w = self.create()?;
        w.write_all(bytes).map_err(|e| self.io_err(e))?;
        w.commit()
    }

    /// Starts an atomic write; nothing is visible at this location until
    /// [`AtomicFile::commit`]. Dropping it uncommitted removes the temporary file.
    pub fn create(&self) -> Result<AtomicFile> {
        let (tmp, target) = match &self.inner {
            Inner::Local(p) => {
                let dir = p.parent().unwrap_or(Path::new("."));
                fs::create_dir_all(dir).map_err(|e| self.io_err(e))?;
                (dir.join(temp_name(&self.file_name())), Target::Rename(p.clone()))
            }
            Inner::Object { store, key, .. } => {
                (staging_dir()?.join(temp_name(&self.file_name())), Target::Upload(store.clone(), key.clone()))
            }
        };
        // Created exclusively: a name another writer holds is an error, never shared.
        let file = fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| ShardError::io(At::file(tmp.display().to_string()), e))?;
        Ok(AtomicFile { file: Some(file), tmp, target, display: self.to_string() })
    }

    /// Removes the file if it exists.
    pub fn remove(&self) -> Result<()> {
        match &self.inner {
            Inner::Local(p) => match fs::remove_file(p) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.io_err(e)),
            },
            Inner::Object { store, key, .. } => match block_on(store.delete(key)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(source) => Err(self.store_err(source)),
            },
        }
    }

    /// In a local directory, removes temporary files that an interrupted writer left for
    /// targets whose names start with `prefix`. Returns how many were removed. Object stores
    /// never hold temporary files (they are staged locally), so there it does nothing.
    pub fn clean_temps(&self, prefix: &str) -> Result<usize> {
        let Inner::Local(dir) = &self.inner else { return Ok(0) };
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io_err(e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err(e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!(".{prefix}")) && name.ends_with(".tmp") {
                fs::remove_file(entry.path()).map_err(|e| self.io_err(e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn io_err(&self, e: io::Error) -> ShardError {
        if e.kind() == io::ErrorKind::NotFound {
            ShardError::NotFound { at: self.at(), hint: "check the path; run the stage that makes it first".into() }
        } else {
            ShardError::io(self.at(), e)
        }
    }

    fn store_err(&self, source: object_store::Error) -> ShardError {
        if matches!(source, object_store::Error::NotFound { .. }) {
            ShardError::NotFound { at: self.at(), hint: "check the URI; run the stage that makes it first".into() }
        } else {
            ShardError::Store { at: self.at(), source }
        }
    }
}

/// Bytes of a remote file per block fetched and cached.
pub const REMOTE_BLOCK: u64 = 4 << 20;
/// Blocks fetched by one ranged GET on a miss (read-ahead for sequential reading).
pub const REMOTE_READ_AHEAD: u64 = 4;
/// Blocks a remote file holds at most: its memory is at most this x `REMOTE_BLOCK` (32 MiB),
/// whatever the shard's size.
pub const REMOTE_CACHE_BLOCKS: usize = 8;

/// A file on an object store read at random positions: fetched on demand in blocks of
/// `REMOTE_BLOCK`, a miss fetching `REMOTE_READ_AHEAD` blocks in one ranged GET, at most
/// `REMOTE_CACHE_BLOCKS` held (the least recently used dropped first). Token shards and the
/// blend's order files are read through it.
pub struct Remote {
    loc: Loc,
    size: u64,
    cache: std::sync::Mutex<BlockCache>,
}

#[derive(Default)]
struct BlockCache {
    /// (block index, bytes), most recently used last.
    blocks: std::collections::VecDeque<(u64, bytes::Bytes)>,
    /// Bytes fetched so far, and the most held at once (for tests and statistics).
    fetched: u64,
    peak: u64,
}

impl Remote {
    /// `loc`, of `size` bytes.
    pub fn new(loc: &Loc, size: u64) -> Remote {
        Remote { loc: loc.clone(), size, cache: Default::default() }
    }

    /// Bytes fetched so far and the most held at once.
    pub fn stats(&self) -> (u64, u64) {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        (c.fetched, c.peak)
    }

    /// Copies bytes `start..start + out.len()` of the file into `out`.
    pub fn read(&self, start: u64, out: &mut [u8]) -> Result<()> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0usize;
        while done < out.len() {
            let at = start + done as u64;
            let block = at / REMOTE_BLOCK;
            let bytes = match cache.blocks.iter().position(|b| b.0 == block) {
                Some(i) => {
                    let b = cache.blocks.remove(i).expect("found above");
                    cache.blocks.push_back(b.clone());
                    b.1
                }
                None => {
                    let first = block * REMOTE_BLOCK;
                    let end = ((block + REMOTE_READ_AHEAD) * REMOTE_BLOCK).min(self.size);
                    let got = self.loc.read_range(first, end - first)?;
                    cache.fetched += got.len() as u64;
                    let mut mine = bytes::Bytes::new();
                    for (j, chunk) in got.chunks(REMOTE_BLOCK as usize).enumerate() {
                        let b = got.slice_ref(chunk);
                        if j == 0 {
                            mine = b.clone();
                        }
                        if let Some(i) = cache.blocks.iter().position(|x| x.0 == block + j as u64) {
                            cache.blocks.remove(i);
                        }
                        cache.blocks.push_back((block + j as u64, b));
                    }
                    // The block asked for stays; the oldest others go.
                    while cache.blocks.len() > REMOTE_CACHE_BLOCKS {
                        let oldest = cache.blocks.iter().position(|x| x.0 != block).unwrap_or(0);
                        cache.blocks.remove(oldest);
                    }
                    let held: u64 = cache.blocks.iter().map(|b| b.1.len() as u64).sum();
                    cache.peak = cache.peak.max(held);
                    mine
                }
            };
            let off = (at - block * REMOTE_BLOCK) as usize;
            let n = (bytes.len().saturating_sub(off)).min(out.len() - done);
            if n == 0 {
                return Err(ShardError::Truncated {
                    at: At::byte(self.loc.to_string(), at),
                    expected: self.size,
                    got: at,
                });
            }
            out[done..done + n].copy_from_slice(&bytes[off..off + n]);
            done += n;
        }
        Ok(())
    }
}

fn walk(dir: &Path, out: &mut Vec<Loc>) -> io::Result<()> {
    if dir.is_file() {
        out.push(Loc::local(dir));
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(Loc::local(path));
        }
    }
    Ok(())
}

/// This machine's name, as temporary names carry it (`/proc/sys/kernel/hostname`, else
/// `$HOSTNAME`), reduced to characters safe in a file name.
fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "host".into());
        let clean: String =
            raw.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(63).collect();
        if clean.is_empty() { "host".into() } else { clean }
    })
}

/// A temporary name beside the target, unique across hosts, pods and processes sharing a
/// directory: hidden (leading dot) so listings skip it; the host name, the process id, a
/// per-process random tag (pods on one node can share a pid) and a counter.
fn temp_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static TAG: OnceLock<u64> = OnceLock::new();
    // The standard library seeds every RandomState from the OS's random source.
    let tag = TAG.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.{}.{}.{:08x}.{n}.tmp", host(), std::process::id(), tag & 0xffff_ffff)
}

/// Where uploads to an object store are staged: `$TMPDIR/grist-staging`. The first use in a
/// process removes staging files that a killed grist on this host left (their process is
/// gone), so an interrupted upload leaves nothing behind after the next run.
fn staging_dir() -> Result<PathBuf> {
    static CLEANED: OnceLock<()> = OnceLock::new();
    let dir = std::env::temp_dir().join("grist-staging");
    fs::create_dir_all(&dir).map_err(|e| ShardError::io(At::file(dir.display().to_string()), e))?;
    CLEANED.get_or_init(|| {
        clean_staging(&dir);
    });
    Ok(dir)
}

/// Removes the staging files in `dir` whose writer, a process on this host, is gone. Returns
/// how many.
fn clean_staging(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = staging_owner(&name)
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// The process id in a temporary name written on this host: `.{name}.{host}.{pid}.{tag}.{n}.tmp`.
fn staging_owner(name: &str) -> Option<u32> {
    let parts: Vec<&str> = name.strip_suffix(".tmp")?.rsplitn(5, '.').collect();
    // parts: [n, tag, pid, host, rest]
    (parts.len() == 5 && parts[3] == host()).then(|| parts[2].parse().ok()).flatten()
}

enum Target {
    Rename(PathBuf),
    Upload(Arc<dyn ObjectStore>, ObjPath),
}

/// A file being written under a temporary name. Implements `Write` and `Seek`.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    target: Target,
    display: String,
}

impl AtomicFile {
    /// The file handle, e.g. to seek back and patch a header.
    pub fn file_mut(&mut self) -> &mut File {
        self.file.as_mut().expect("AtomicFile used after commit")
    }

    /// Makes the file durable and visible under its final name.
    pub fn commit(mut self) -> Result<()> {
        let at = At::file(self.display.clone());
        let file = self.file.take().expect("AtomicFile committed twice");
        file.sync_all().map_err(|e| ShardError::io(at.clone(), e))?;
        drop(file);
        match &self.target {
            Target::Rename(dest) => {
                fs::rename(&self.tmp, dest).map_err(|e| ShardError::io(at.clone(), e))?;
                if let Some(dir) = dest.parent() {
                    // Durable rename: sync the directory entry too (best effort: not all
                    // filesystems allow opening a directory).
                    if let Ok(d) = File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
            }
            Target::Upload(store, key) => {
                let result = upload(store.as_ref(), key, &self.tmp);
                let _ = fs::remove_file(&self.tmp);
                result.map_err(|source| ShardError::Store { at: at.clone(), source })?;
            }
        }
        Ok(())
    }
}

/// Sends a staged file: one PUT when small, else a multipart upload read from the file one
/// part at a time (memory stays at one part), aborted if any part fails.
fn upload(store: &dyn ObjectStore, key: &ObjPath, tmp: &Path) -> object_store::Result<()> {
    let local = |e: io::Error| object_store::Error::Generic { store: "local staging file", source: Box::new(e) };
    let mut file = File::open(tmp).map_err(local)?;
    let len = file.metadata().map_err(local)?.len() as usize;
    let mut part = vec![0u8; len.min(UPLOAD_PART_BYTES)];
    if len <= UPLOAD_PART_BYTES {
        file.read_exact(&mut part).map_err(local)?;
        return block_on(store.put(key, PutPayload::from(part))).map(|_| ());
    }
    let mut upload = block_on(store.put_multipart(key))?;
    let mut sent = 0;
    let result = (|| {
        while sent < len {
            let n = (len - sent).min(UPLOAD_PART_BYTES);
            file.read_exact(&mut part[..n]).map_err(local)?;
            block_on(upload.put_part(PutPayload::from(part[..n].to_vec())))?;
            sent += n;
        }
        block_on(upload.complete()).map(|_| ())
    })();
    if result.is_err() {
        let _ = block_on(upload.abort());
    }
    result
}

/// A streaming reader over an object's GET response, one network chunk at a time.
struct ObjectReader {
    stream: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
}

impl io::Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file_mut().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file_mut().write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file_mut().flush()
    }
}

impl io::Seek for AtomicFile {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.file_mut().seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_carry_host_pid_and_a_random_tag_and_dead_writers_staging_goes() {
        let a = temp_name("part-00001.parquet");
        let b = temp_name("part-00001.parquet");
        assert_ne!(a, b);
        assert!(a.starts_with(".part-00001.parquet.") && a.ends_with(".tmp"), "{a}");
        assert!(a.contains(&format!(".{}.{}.", host(), std::process::id())), "{a}");
        assert_eq!(staging_owner(&a), Some(std::process::id()));
        // A staging file of a process that is gone is removed; ours and other hosts' stay.
        let dir = tempfile::tempdir().unwrap();
        let dead = format!(".x.parquet.{}.{}.0000abcd.0.tmp", host(), u32::MAX - 7);
        let other_host = format!(".x.parquet.elsewhere-9.{}.0000abcd.0.tmp", u32::MAX - 7);
        for n in [&a, &dead, &other_host] {
            std::fs::write(dir.path().join(n), b"partial upload").unwrap();
        }
        assert_eq!(clean_staging(dir.path()), 1);
        assert!(!dir.path().join(&dead).exists());
        assert!(dir.path().join(&a).exists() && dir.path().join(&other_host).exists());
        // Writers never share a temporary file: it is created exclusively.
        let loc = Loc::local(dir.path().join("out.bin"));
        let (w1, w2) = (loc.create().unwrap(), loc.create().unwrap());
        assert_ne!(w1.tmp, w2.tmp);
    }

    #[test]
    fn local_atomic_write_is_invisible_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("a/b.bin"));
        let mut w = loc.create().unwrap();
        w.write_all(b"hello").unwrap();
        assert!(!loc.exists().unwrap());
        assert!(Loc::local(dir.path().join("a")).list().unwrap().is_empty(), "temp file must be hidden");
        w.commit().unwrap();
        assert_eq!(&loc.read().unwrap()[..], b"hello");
    }

    #[test]
    fn clean_temps_removes_only_matching_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        for name in [".part-00001.parquet.9.0.tmp", ".part-00002.parquet.9.1.tmp", "part-00001.parquet"] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(Loc::local(dir.path()).clean_temps("part-00001.").unwrap(), 1);
        let mut left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, [".part-00002.parquet.9.1.tmp", "part-00001.parquet"]);
    }

    #[test]
    fn dropped_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("x.bin"));
        let mut w = loc.create().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn memory_store_round_trip_and_listing() {
        let root = Loc::parse("memory://storage-test/run").unwrap();
        root.join("b/2.txt").write_atomic(b"two").unwrap();
        root.join("a.txt").write_atomic(b"one").unwrap();
        let again = Loc::parse("memory://storage-test/run/a.txt").unwrap();
        assert_eq!(&again.read().unwrap()[..], b"one");
        let names: Vec<String> = root.list().unwrap().iter().map(|l| l.to_string()).collect();
        assert_eq!(names, ["memory://storage-test/run/a.txt", "memory://storage-test/run/b/2.txt"]);
        assert_eq!(again.size().unwrap(), 3);
        again.remove().unwrap();
        assert!(!again.exists().unwrap());
    }

    #[test]
    fn large_memory_upload_goes_multipart_and_streams_back() {
        let loc = Loc::parse("memory://storage-test/big.bin").unwrap();
        let data: Vec<u8> = (0..2 * UPLOAD_PART_BYTES + 1000).map(|i| (i % 251) as u8).collect();
        loc.write_atomic(&data).unwrap();
        assert_eq!(&loc.read().unwrap()[..], &data[..]);
        let mut streamed = Vec::new();
        loc.open().unwrap().read_to_end(&mut streamed).unwrap();
        assert!(streamed == data);
        let (size, modified) = loc.stat().unwrap();
        assert_eq!(size, data.len() as u64);
        assert!(modified.is_some());
    }

    #[test]
    fn missing_file_and_unknown_scheme_are_clear_errors() {
        let err = Loc::local("/nonexistent/grist/x").read().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/grist/x") && err.contains("not found"), "{err}");
        #[cfg(not(feature = "cloud"))]
        {
            let err = Loc::parse("s3://bucket/key").unwrap_err().to_string();
            assert!(err.contains("s3://bucket/key") && err.contains("--features cloud"), "{err}");
        }
        let err = Loc::parse("ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("unknown scheme"), "{err}");
    }
}
