//! A slow SD card on any Linux machine, for benchmarks: mounts the power-cut test's file system
//! (`tests/powercut/fs.rs`) with a delay on every `fsync`/`fdatasync`.
//!
//! ```sh
//! cargo build --example slow_disk
//! target/debug/examples/slow_disk MOUNTPOINT 20ms &   # stderr says when it is mounted
//! ringhook serve --log-file MOUNTPOINT/events.jsonl
//! fusermount3 -u MOUNTPOINT                           # or SIGTERM; then it prints the syncs
//! ```
//!
//! The mount point must be an empty directory; the disk starts empty and its contents go away
//! with it (its data sits in a temporary directory, never synced for real: a sync costs the FUSE
//! round trip plus DELAY, nothing of the host's disk).
#![forbid(unsafe_code)]

#[path = "../tests/powercut/fs.rs"]
mod fs;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(mountpoint), delay, None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: slow_disk MOUNTPOINT [DELAY per sync, e.g. 5ms or 20ms; default 0]");
        std::process::exit(2);
    };
    let delay = match delay
        .as_ref()
        .map(|d| d.to_str().map(humantime::parse_duration))
    {
        None => Duration::ZERO,
        Some(Some(Ok(d))) if d <= Duration::from_secs(10) => d,
        Some(_) => {
            eprintln!("slow_disk: DELAY {delay:?}: want a duration up to 10s, like 5ms or 20ms");
            std::process::exit(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).expect("signal handler");
    }
    let mountpoint = PathBuf::from(mountpoint);
    let disk = match fs::Disk::mount_at(&mountpoint) {
        Ok(disk) => disk,
        Err(e) => {
            eprintln!("slow_disk: cannot mount on {}: {e:?}", mountpoint.display());
            std::process::exit(1);
        }
    };
    disk.set_sync_delay(delay);
    eprintln!(
        "slow_disk: mounted on {} ({delay:?} per sync)",
        disk.path().display()
    );
    while !stop.load(Ordering::Relaxed) && fs::is_mounted(disk.path()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let syncs = disk.syncs();
    drop(disk);
    eprintln!("slow_disk: unmounted; {syncs} syncs served");
}
