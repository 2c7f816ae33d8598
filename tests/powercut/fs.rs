//! A FUSE file system that forgets, on command, everything that was not synced: the power cut of
//! `tests/powercut.rs`, and (with a delay per sync) a slow SD card for benchmarks.
//!
//! What it promises is what a crash-consistent disk promises, and no more:
//! - a file's data and size are durable once `fsync`/`fdatasync` of that file returns;
//! - a directory's entries (create, mkdir, rename, unlink) are durable once `fsync` of that
//!   directory returns; syncing a file does not make its name durable.
//!
//! [`Disk::cut`] is the power cut. Every file reverts to its last synced bytes; what was appended
//! past them is dropped ([`Cut::DropUnsynced`]) or kept for a random number of whole pages
//! ([`Cut::KeepSomePages`]: the kernel had written some pages back, so a line can be torn at a
//! page boundary). Every directory reverts to its last synced entries; what no synced entry
//! reaches is gone. From the cut on every operation fails (EIO) until [`Disk::restart`], which
//! unmounts and mounts afresh, so no kernel cache from before the cut survives.
//!
//! File data lives in a backing directory, one file per inode, written through at once (as into
//! the page cache); names and what is synced live in memory. Nothing is synced for real: a sync
//! takes a FUSE round trip plus the delay set with [`Disk::set_sync_delay`]. One thread serves
//! every request, so a delayed sync holds up the writer as a busy SD card does.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
};

/// The unit the kernel writes back in, and in which a cut may keep unsynced bytes.
pub const PAGE: u64 = 4096;
const ROOT: u64 = 1;

/// What a power cut does to bytes written past a file's last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// All of them are lost.
    DropUnsynced,
    /// A random number of whole pages of them survive (seeded): torn tails.
    KeepSomePages(u64),
}

enum Kind {
    Dir {
        entries: BTreeMap<OsString, u64>,
        synced: BTreeMap<OsString, u64>,
    },
    File {
        data: File,
        len: u64,
        synced_len: u64,
        /// The synced bytes of pages below `synced_len` changed since: put back by a cut.
        undo: BTreeMap<u64, Vec<u8>>,
    },
}

struct Node {
    kind: Kind,
    perm: u16,
    mtime: SystemTime,
}

struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    backing: PathBuf,
    uid: u32,
    gid: u32,
    powered: bool,
    sync_delay: Duration,
    syncs: u64,
    /// A cut to make from inside the next write (that crosses a page boundary, if asked).
    armed: Option<(Cut, bool)>,
    last_cut: Option<CutReport>,
    /// Injected faults (tests/attack_disk.rs): every write fails with this, while set.
    fail_writes: Option<Errno>,
    /// Injected faults: this many next file syncs fail with the errno (after their delay).
    fail_syncs: (u32, Errno),
}

/// What a cut did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose surviving bytes end without a newline: a torn last line.
    pub ends_mid_line: usize,
    /// Files that no synced directory entry reaches any more.
    pub files_lost: usize,
}

type Res<T> = Result<T, Errno>;

fn eio(_: io::Error) -> Errno {
    Errno::EIO
}

impl State {
    fn node(&mut self, ino: u64) -> Res<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn entries(&mut self, dir: u64) -> Res<&mut BTreeMap<OsString, u64>> {
        match &mut self.node(dir)?.kind {
            Kind::Dir { entries, .. } => Ok(entries),
            Kind::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn attr(&self, ino: u64) -> Res<FileAttr> {
        let node = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        let (kind, size, nlink) = match &node.kind {
            Kind::Dir { .. } => (FileType::Directory, 0, 2),
            Kind::File { len, .. } => (FileType::RegularFile, *len, 1),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm: node.perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    fn add(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Res<u64> {
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let mtime = SystemTime::now();
        self.nodes.insert(ino, Node { kind, perm, mtime });
        self.entries(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    fn new_file(&mut self, parent: u64, name: &OsStr, perm: u16) -> Res<u64> {
        self.entries(parent)?;
        let path = self.backing.join(self.next_ino.to_string());
        let data = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(eio)?;
        let kind = Kind::File {
            data,
            len: 0,
            synced_len: 0,
            undo: BTreeMap::new(),
        };
        self.add(parent, name, kind, perm)
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Res<()> {
        if let Some(e) = self.fail_writes {
            return Err(e);
        }
        let node = self.node(ino)?;
        node.mtime = SystemTime::now();
        let Kind::File {
            data,
            len,
            synced_len,
            undo,
        } = &mut node.kind
        else {
            return Err(Errno::EISDIR);
        };
        if !bytes.is_empty() {
            let last = offset + bytes.len() as u64 - 1;
            save_pages(data, *synced_len, undo, offset / PAGE..=last / PAGE)?;
        }
        data.write_all_at(bytes, offset).map_err(eio)?;
        *len = (*len).max(offset + bytes.len() as u64);
        let end = offset + bytes.len() as u64;
        if let Some((how, straddling)) = self.armed {
            if !straddling || (end > 0 && offset / PAGE != (end - 1) / PAGE) {
                // The write is done but not synced: the worst moment to lose power.
                self.cut(how)?;
            }
        }
        Ok(())
    }

    fn truncate(&mut self, ino: u64, size: u64) -> Res<()> {
        let node = self.node(ino)?;
        node.mtime = SystemTime::now();
        let Kind::File {
            data,
            len,
            synced_len,
            undo,
        } = &mut node.kind
        else {
            return Err(Errno::EISDIR);
        };
        if size < *synced_len {
            save_pages(
                data,
                *synced_len,
                undo,
                size / PAGE..=(*synced_len - 1) / PAGE,
            )?;
        }
        data.set_len(size).map_err(eio)?;
        *len = size;
        Ok(())
    }

    fn sync(&mut self, ino: u64) -> Res<()> {
        self.syncs += 1;
        let failing = self.fail_syncs.0 > 0;
        match &mut self.node(ino)?.kind {
            Kind::File { .. } if failing => {
                // A failed sync: nothing more is durable than before.
                self.fail_syncs.0 -= 1;
                return Err(self.fail_syncs.1);
            }
            Kind::File {
                len,
                synced_len,
                undo,
                ..
            } => {
                *synced_len = *len;
                undo.clear();
            }
            Kind::Dir { entries, synced } => *synced = entries.clone(),
        }
        Ok(())
    }

    fn cut(&mut self, how: Cut) -> Res<()> {
        self.powered = false;
        self.armed = None;
        let mut report = CutReport::default();
        let mut rng = match how {
            Cut::DropUnsynced => None,
            Cut::KeepSomePages(seed) => Some(Rng(seed | 1)),
        };
        let mut inos: Vec<u64> = self.nodes.keys().copied().collect();
        inos.sort_unstable(); // the same seed keeps the same pages
        for ino in inos {
            match &mut self.nodes.get_mut(&ino).expect("listed").kind {
                Kind::Dir { entries, synced } => *entries = synced.clone(),
                Kind::File {
                    data,
                    len,
                    synced_len,
                    undo,
                } => {
                    for (page, bytes) in std::mem::take(undo) {
                        data.write_all_at(&bytes, page * PAGE).map_err(eio)?;
                    }
                    let keep = match &mut rng {
                        Some(rng) => keep_pages(rng, *synced_len, *len),
                        None => *synced_len,
                    };
                    data.set_len(keep).map_err(eio)?;
                    *len = keep;
                    *synced_len = keep;
                }
            }
        }
        // What no synced entry reaches from the root is gone.
        let mut reached = vec![ROOT];
        let mut todo = vec![ROOT];
        while let Some(dir) = todo.pop() {
            if let Some(Node {
                kind: Kind::Dir { entries, .. },
                ..
            }) = self.nodes.get(&dir)
            {
                for &child in entries.values() {
                    if !reached.contains(&child) {
                        reached.push(child);
                        todo.push(child);
                    }
                }
            }
        }
        let gone: Vec<u64> = self
            .nodes
            .keys()
            .copied()
            .filter(|i| !reached.contains(i))
            .collect();
        for ino in gone {
            if let Some(Node {
                kind: Kind::File { .. },
                ..
            }) = self.nodes.remove(&ino)
            {
                std::fs::remove_file(self.backing.join(ino.to_string())).map_err(eio)?;
                report.files_lost += 1;
            }
        }
        for node in self.nodes.values() {
            if let Kind::File { data, len, .. } = &node.kind {
                let mut last = [b'\n'];
                if *len > 0 {
                    data.read_exact_at(&mut last, len - 1).map_err(eio)?;
                }
                report.ends_mid_line += usize::from(last[0] != b'\n');
            }
        }
        self.last_cut = Some(report);
        Ok(())
    }
}

/// Where a [`Cut::KeepSomePages`] cuts a file of `len` bytes synced up to `synced_len`: at a
/// random page boundary inside the unsynced bytes if there is one (a torn tail), else at either
/// end of them.
fn keep_pages(rng: &mut Rng, synced_len: u64, len: u64) -> u64 {
    if len <= synced_len {
        return synced_len;
    }
    let first = synced_len / PAGE + 1;
    let inner = (len - 1) / PAGE + 1 - first; // boundaries b*PAGE with synced_len < b*PAGE < len
    if inner > 0 {
        (first + rng.below(inner)) * PAGE
    } else if rng.below(2) == 0 {
        synced_len
    } else {
        len
    }
}

/// Keeps the synced bytes of `pages` (those below `synced_len` not kept already) in `undo`.
fn save_pages(
    data: &File,
    synced_len: u64,
    undo: &mut BTreeMap<u64, Vec<u8>>,
    pages: std::ops::RangeInclusive<u64>,
) -> Res<()> {
    for page in pages {
        let start = page * PAGE;
        if start >= synced_len {
            break;
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = undo.entry(page) {
            let mut bytes = vec![0; (synced_len - start).min(PAGE) as usize];
            data.read_exact_at(&mut bytes, start).map_err(eio)?;
            slot.insert(bytes);
        }
    }
    Ok(())
}

/// xorshift64*: reproducible from a printed seed, no crate needed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Syncs held until released (tests/attack_disk.rs): whether to hold, and how many wait.
#[derive(Default)]
struct Gate {
    hold: bool,
    waiting: u32,
}

type SharedGate = Arc<(Mutex<Gate>, std::sync::Condvar)>;

/// The FUSE side: every request takes the shared state's lock.
struct Volatile(Arc<Mutex<State>>, SharedGate);

const TTL: Duration = Duration::ZERO; // the kernel caches nothing: every stat sees the truth

impl Volatile {
    fn state(&self) -> Res<MutexGuard<'_, State>> {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if st.powered { Ok(st) } else { Err(Errno::EIO) }
    }

    fn entry(&self, reply: ReplyEntry, r: Res<(u64, MutexGuard<'_, State>)>) {
        match r.and_then(|(ino, st)| st.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn empty(reply: ReplyEmpty, r: Res<()>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn sync(&self, ino: INodeNo, reply: ReplyEmpty) {
        {
            let (gate, cv) = &*self.1;
            let mut g = gate.lock().unwrap_or_else(|p| p.into_inner());
            if g.hold {
                g.waiting += 1;
                cv.notify_all();
                while g.hold {
                    g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
                }
                g.waiting -= 1;
            }
        }
        // The delay comes first: a cut during it means the sync never completed.
        let delay = self.state().map(|st| st.sync_delay);
        if let Ok(d) = delay {
            if !d.is_zero() {
                std::thread::sleep(d);
            }
        }
        Self::empty(reply, self.state().and_then(|mut st| st.sync(ino.0)));
    }
}

impl Filesystem for Volatile {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.state().and_then(|mut st| {
            let ino = *st.entries(parent.0)?.get(name).ok_or(Errno::ENOENT)?;
            Ok((ino, st))
        });
        self.entry(reply, r);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().and_then(|st| st.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.state().and_then(|mut st| {
            if let Some(size) = size {
                st.truncate(ino.0, size)?;
            }
            if let Some(mode) = mode {
                st.node(ino.0)?.perm = (mode & 0o7777) as u16;
            }
            st.attr(ino.0)
        });
        match r {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.state().and_then(|mut st| {
            let dir = Kind::Dir {
                entries: BTreeMap::new(),
                synced: BTreeMap::new(),
            };
            let ino = st.add(parent.0, name, dir, (mode & !umask & 0o7777) as u16)?;
            Ok((ino, st))
        });
        self.entry(reply, r);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.state().and_then(|mut st| {
            let ino = st.new_file(parent.0, name, (mode & !umask & 0o7777) as u16)?;
            st.attr(ino)
        });
        match r {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.state().and_then(|mut st| {
            let ino = *st.entries(parent.0)?.get(name).ok_or(Errno::ENOENT)?;
            if let Kind::Dir { .. } = st.node(ino)?.kind {
                return Err(Errno::EISDIR);
            }
            // The node stays: a synced entry elsewhere may still bring it back at a cut.
            st.entries(parent.0)?.remove(name);
            Ok(())
        });
        Self::empty(reply, r);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.state().and_then(|mut st| {
            let ino = *st.entries(parent.0)?.get(name).ok_or(Errno::ENOENT)?;
            if !st.entries(ino)?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            st.entries(parent.0)?.remove(name);
            Ok(())
        });
        Self::empty(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.state().and_then(|mut st| {
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                return Err(Errno::EINVAL);
            }
            let ino = *st.entries(parent.0)?.get(name).ok_or(Errno::ENOENT)?;
            let target = st.entries(newparent.0)?.get(newname).copied();
            if let Some(t) = target {
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                let is_dir = |st: &mut State, i| matches!(st.nodes[&i].kind, Kind::Dir { .. });
                match (is_dir(&mut st, ino), is_dir(&mut st, t)) {
                    (false, true) => return Err(Errno::EISDIR),
                    (true, false) => return Err(Errno::ENOTDIR),
                    (true, true) if !st.entries(t)?.is_empty() => return Err(Errno::ENOTEMPTY),
                    _ => {}
                }
            }
            st.entries(parent.0)?.remove(name);
            st.entries(newparent.0)?.insert(newname.to_owned(), ino);
            Ok(())
        });
        Self::empty(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().and_then(|st| st.attr(ino.0)) {
            // Direct I/O: every read and write reaches this file system, none is cached.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let r = self.state().and_then(|mut st| match &st.node(ino.0)?.kind {
            Kind::File { data, len, .. } => {
                let n = len.saturating_sub(offset).min(u64::from(size)) as usize;
                let mut buf = vec![0; n];
                data.read_exact_at(&mut buf, offset).map_err(eio)?;
                Ok(buf)
            }
            Kind::Dir { .. } => Err(Errno::EISDIR),
        });
        match r {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self
            .state()
            .and_then(|mut st| st.write(ino.0, offset, data))
        {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() is no sync.
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        self.sync(ino, reply);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _ds: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let r = self.state().and_then(|mut st| {
            let entries: Vec<(OsString, u64)> = st
                .entries(ino.0)?
                .iter()
                .map(|(n, i)| (n.clone(), *i))
                .collect();
            let mut list = vec![
                (ino.0, FileType::Directory, OsString::from(".")),
                (ino.0, FileType::Directory, OsString::from("..")),
            ];
            for (name, child) in entries {
                let kind = match st.nodes[&child].kind {
                    Kind::Dir { .. } => FileType::Directory,
                    Kind::File { .. } => FileType::RegularFile,
                };
                list.push((child, kind, name));
            }
            Ok(list)
        });
        match r {
            Ok(list) => {
                for (i, (child, kind, name)) in list.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(
            1 << 20,
            1 << 19,
            1 << 19,
            1 << 20,
            1 << 19,
            PAGE as u32,
            255,
            PAGE as u32,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// A mounted volatile disk. Dropping it unmounts it (also when a test fails).
pub struct Disk {
    state: Arc<Mutex<State>>,
    gate: SharedGate,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    _backing: tempfile::TempDir,
    _mount_dir: Option<tempfile::TempDir>,
}

/// Why there is no disk: `Unavailable` means this machine has no usable `/dev/fuse`.
#[derive(Debug)]
pub enum MountError {
    Unavailable(io::Error),
    Failed(io::Error),
}

impl Disk {
    /// Mounts an empty disk on a fresh temporary directory.
    pub fn mount() -> Result<Disk, MountError> {
        let dir = tempfile::tempdir().map_err(MountError::Failed)?;
        let mountpoint = dir.path().join("disk");
        std::fs::create_dir(&mountpoint).map_err(MountError::Failed)?;
        let mut disk = Disk::mount_at(&mountpoint)?;
        disk._mount_dir = Some(dir);
        Ok(disk)
    }

    /// Mounts an empty disk on `mountpoint` (an existing, empty directory).
    pub fn mount_at(mountpoint: &Path) -> Result<Disk, MountError> {
        let mountpoint = mountpoint.canonicalize().map_err(MountError::Failed)?;
        // Only a missing or unusable device is a reason to skip; anything else is a failure.
        File::options()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map_err(MountError::Unavailable)?;
        let backing = tempfile::tempdir().map_err(MountError::Failed)?;
        let meta = std::fs::metadata(backing.path()).map_err(MountError::Failed)?;
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                kind: Kind::Dir {
                    entries: BTreeMap::new(),
                    synced: BTreeMap::new(),
                },
                perm: 0o755,
                mtime: SystemTime::now(),
            },
        );
        let state = State {
            nodes,
            next_ino: ROOT + 1,
            backing: backing.path().to_path_buf(),
            uid: meta.uid(),
            gid: meta.gid(),
            powered: true,
            sync_delay: Duration::ZERO,
            syncs: 0,
            armed: None,
            last_cut: None,
            fail_writes: None,
            fail_syncs: (0, Errno::EIO),
        };
        let mut disk = Disk {
            state: Arc::new(Mutex::new(state)),
            gate: SharedGate::default(),
            session: None,
            mountpoint,
            _backing: backing,
            _mount_dir: None,
        };
        disk.start_session().map_err(MountError::Failed)?;
        Ok(disk)
    }

    fn start_session(&mut self) -> io::Result<()> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("ringhook-powercut".into()),
            MountOption::Subtype("powercut".into()),
        ];
        let fs = Volatile(self.state.clone(), self.gate.clone());
        self.session = Some(fuser::spawn_mount(fs, &self.mountpoint, &config)?);
        Ok(())
    }

    /// Where the disk is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// How long every fsync, fdatasync and directory fsync takes from now on (default none).
    pub fn set_sync_delay(&self, delay: Duration) {
        self.lock().sync_delay = delay;
    }

    /// Every write fails with `errno` from now on (`None`: writes work again).
    pub fn fail_writes(&self, errno: Option<Errno>) {
        self.lock().fail_writes = errno;
    }

    /// The next `n` file syncs fail with `errno` (nothing they would have made durable is).
    pub fn fail_syncs(&self, n: u32, errno: Errno) {
        self.lock().fail_syncs = (n, errno);
    }

    /// From now on every sync waits until [`Disk::release_syncs`]: a sync that does not return.
    /// (One thread serves the disk: everything else on it waits behind a held sync too.)
    pub fn hold_syncs(&self) {
        self.gate.0.lock().unwrap().hold = true;
    }

    /// Lets held syncs go on.
    pub fn release_syncs(&self) {
        let (gate, cv) = &*self.gate;
        gate.lock().unwrap().hold = false;
        cv.notify_all();
    }

    /// Waits (up to `patience`) until a sync is held; false if none came.
    pub fn wait_held_sync(&self, patience: Duration) -> bool {
        let (gate, cv) = &*self.gate;
        let g = gate.lock().unwrap();
        let (g, _) = cv
            .wait_timeout_while(g, patience, |g| g.waiting == 0)
            .unwrap();
        g.waiting > 0
    }

    /// Syncs served so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power cut, now: forgets everything unsynced; every operation fails until `restart`.
    pub fn cut(&self, how: Cut) -> CutReport {
        let mut st = self.lock();
        st.cut(how).expect("the backing directory takes the cut");
        st.last_cut.expect("just cut")
    }

    /// The power cut, at the worst moment: right after the next write (with `straddling`, the
    /// next that crosses a page boundary), before it can be synced. See [`Disk::wait_cut`].
    pub fn cut_on_write(&self, how: Cut, straddling: bool) {
        self.lock().armed = Some((how, straddling));
    }

    /// Waits (up to `patience`) for the armed cut; `None` if it did not come.
    pub fn wait_cut(&self, patience: Duration) -> Option<CutReport> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let st = self.lock();
            if let (false, Some(report)) = (st.powered, st.last_cut) {
                return Some(report);
            }
            drop(st);
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Power back on: unmounts (dropping every kernel cache) and mounts the state the cut left.
    /// Whoever had files open on it must be gone.
    pub fn restart(&mut self) {
        self.unmount();
        let mut st = self.lock();
        st.powered = true;
        st.last_cut = None;
        drop(st);
        self.start_session().expect("mount again after the cut");
    }

    fn unmount(&mut self) {
        // A held sync would keep the unmount waiting for ever.
        self.release_syncs();
        if let Some(session) = self.session.take() {
            // Someone may have unmounted it already (`fusermount3 -u`): then only the thread ends.
            if is_mounted(&self.mountpoint) {
                if let Err(e) = session.umount_and_join() {
                    eprintln!("powercut: unmounting {}: {e}", self.mountpoint.display());
                }
            }
        }
        // Belt and braces: nothing may stay mounted after a test, failed or not.
        if is_mounted(&self.mountpoint) {
            let _ = std::process::Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mountpoint)
                .status();
        }
        if is_mounted(&self.mountpoint) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// True when `path` is a mount point in this mount namespace.
/// (`path` canonical: a dead FUSE mount cannot be resolved any more.)
pub fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines()
            .filter_map(|l| l.split(' ').nth(1))
            .any(|p| Path::new(&p.replace("\\040", " ")) == path)
    })
}
